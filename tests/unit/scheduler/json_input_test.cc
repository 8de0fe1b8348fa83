#include "scheduler/json_input.h"

#include <gtest/gtest.h>

#include <string>

namespace nightshift {
namespace {

using json = nlohmann::json;

TEST(JsonInputTest, ParsesJson) {
  Result<json> value = ParseJsonInput(R"({"a": [1, "caf\u00e9", "b\u00e9"]})");
  ASSERT_TRUE(value.ok()) << value.status().message();
  EXPECT_EQ((*value)["a"][1], "caf\xc3\xa9");
}

TEST(JsonInputTest, RefusalsSayWhy) {
  Result<json> bad = ParseJsonInput("{\"a\": ");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsInvalidArgument());
  EXPECT_TRUE(bad.status().message().starts_with("not valid JSON: parse error at line 1"))
      << bad.status().message();
  Result<json> latin1 = ParseJsonInput("[\"caf\xe9\"]");
  ASSERT_FALSE(latin1.ok());
  EXPECT_EQ(latin1.status().message(), "not valid UTF-8 (byte 0xE9) at byte 5");
  Result<json> deep = ParseJsonInput(std::string(400000, '[') + std::string(400000, ']'));
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.status().message(), "nested deeper than 64 levels (at byte 64)");
}

TEST(JsonInputTest, DumpNeverThrows) {
  json value = {{"log", "caf\xe9"}};
  EXPECT_EQ(DumpJson(value), "{\"log\":\"caf\xef\xbf\xbd\"}");
}

// The file a task writes to NIGHTSHIFT_OUTPUT: a 64 KiB file can nest 32,000 deep.
TEST(JsonInputTest, TryOutputs) {
  Result<std::optional<std::string>> empty = ParseTryOutput(" \n\t");
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->has_value());
  Result<std::optional<std::string>> compact = ParseTryOutput("{ \"rows\" : [1, 2] }\n");
  ASSERT_TRUE(compact.ok());
  EXPECT_EQ(compact->value(), R"({"rows":[1,2]})");
  Result<std::optional<std::string>> deep = ParseTryOutput(std::string(32000, '[') + std::string(32000, ']'));
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.status().message(), "output is nested deeper than 64 levels (at byte 64)");
  Result<std::optional<std::string>> not_json = ParseTryOutput("{not json");
  ASSERT_FALSE(not_json.ok());
  EXPECT_TRUE(not_json.status().message().starts_with("output is not valid JSON")) << not_json.status().message();
}

}  // namespace
}  // namespace nightshift

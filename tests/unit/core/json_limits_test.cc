#include "core/json_limits.h"

#include <gtest/gtest.h>

#include <string>

namespace nightshift {
namespace {

std::string Nested(int depth, char open = '[', char close = ']') {
  return std::string(static_cast<size_t>(depth), open) + std::string(static_cast<size_t>(depth), close);
}

TEST(JsonLimitsTest, UpToTheLimitIsAccepted) {
  EXPECT_TRUE(CheckJsonNesting("").ok());
  EXPECT_TRUE(CheckJsonNesting(R"({"a": [1, {"b": null}], "c": "x"})").ok());
  EXPECT_TRUE(CheckJsonNesting(Nested(kMaxNestingDepth)).ok());
  // Siblings do not add up: depth is how far values sit inside each other.
  std::string wide;
  for (int i = 0; i < 1000; ++i) wide += "[[]],";
  EXPECT_TRUE(CheckJsonNesting("[" + wide + "1]").ok());
}

TEST(JsonLimitsTest, DeeperIsRefusedWithTheLimitInTheMessage) {
  Status s = CheckJsonNesting(Nested(kMaxNestingDepth + 1));
  ASSERT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(s.message(), "nested deeper than 64 levels (at byte 64)");
  EXPECT_FALSE(CheckJsonNesting(R"({"a":)" + Nested(400000) + "}").ok());
  EXPECT_FALSE(CheckJsonNesting(std::string(400000, '{')).ok());  // unclosed: still too deep
}

TEST(JsonLimitsTest, BracketsInsideStringsDoNotCount) {
  const std::string in_string = "[\"" + std::string(1000, '[') + "\\\"" + std::string(1000, '{') + "\"]";
  EXPECT_TRUE(CheckJsonNesting(in_string).ok());
  // An escaped backslash ends the escape: the quote after it closes the string.
  EXPECT_FALSE(CheckJsonNesting("[\"\\\\\"" + Nested(kMaxNestingDepth) + "]").ok());
}

}  // namespace
}  // namespace nightshift

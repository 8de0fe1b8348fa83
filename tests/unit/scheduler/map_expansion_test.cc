#include "scheduler/map_expansion.h"

#include <gtest/gtest.h>

namespace nightshift {
namespace {

std::pair<int64_t, int64_t> Bounds(int64_t start, int64_t end) { return {start, end}; }

TEST(MapExpansionTest, ChunkArithmetic) {
  EXPECT_EQ(ChunkCount(10, 3), 4);
  EXPECT_EQ(ChunkBounds(10, 3, 0), Bounds(0, 3));
  EXPECT_EQ(ChunkBounds(10, 3, 3), Bounds(9, 10));  // the last is shorter
  EXPECT_EQ(ChunkCount(9, 3), 3);
  EXPECT_EQ(ChunkBounds(9, 3, 2), Bounds(6, 9));
  EXPECT_EQ(ChunkCount(5, 100), 1);  // chunk larger than the range
  EXPECT_EQ(ChunkBounds(5, 100, 0), Bounds(0, 5));
  EXPECT_EQ(ChunkCount(0, 10), 0);
  EXPECT_EQ(ChunkCount(100000000, 12500000), 8);
}

TEST(MapExpansionTest, StaticCounts) {
  Task t;
  EXPECT_EQ(StaticMapCount(t), std::nullopt);
  t.map.kind = MapSpec::Kind::kItems;
  t.map.items = {"a", "b", "c"};
  EXPECT_EQ(StaticMapCount(t), 3);
  t.map.kind = MapSpec::Kind::kRange;
  t.map.range = 1000001;
  t.map.chunk = 100000;
  EXPECT_EQ(StaticMapCount(t), 11);
  t.map.kind = MapSpec::Kind::kFrom;
  EXPECT_EQ(StaticMapCount(t), std::nullopt);
}

TEST(MapExpansionTest, ItemsFromOutput) {
  EXPECT_EQ(ItemsFromOutput("up", "[]")->size(), 0u);
  EXPECT_EQ(*ItemsFromOutput("up", R"(["a.csv"])"), std::vector<std::string>{"a.csv"});
  EXPECT_EQ(*ItemsFromOutput("up", R"(["x", 2, {"k": [1]}, null])"),
            (std::vector<std::string>{"x", "2", R"({"k":[1]})", "null"}));
  auto bad = ItemsFromOutput("list_files", R"({"files": []})");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "map from list_files: its output must be a JSON array, got object");
  EXPECT_FALSE(ItemsFromOutput("up", "[1,").ok());
  EXPECT_EQ(JsonToEnvValue(R"("text")"), "text");
  EXPECT_EQ(JsonToEnvValue("[1,2]"), "[1,2]");
}

}  // namespace
}  // namespace nightshift

#include "dags/yaml_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nightshift {
namespace {

std::vector<std::string> Messages(const YamlDiagnostics& diagnostics) {
  std::vector<std::string> out;
  for (const YamlProblem& p : diagnostics.Sorted()) {
    out.push_back(std::to_string(p.position.line) + ":" + std::to_string(p.position.column) + ": " +
                  p.message);
  }
  return out;
}

YAML::Node Parse(std::string_view text) {
  YamlDiagnostics diagnostics;
  std::optional<YAML::Node> node = ParseYamlDocument(text, diagnostics);
  EXPECT_TRUE(node.has_value()) << ::testing::PrintToString(Messages(diagnostics));
  return node.value_or(YAML::Node());
}

// The field `name` of the mapping in `text`.
YamlField Field(std::string_view text, std::string_view name) {
  YamlDiagnostics diagnostics;
  YamlMap map = YamlMap::ReadFree(Parse(text), "test", "", diagnostics);
  const YamlField* field = map.Find(name);
  EXPECT_NE(field, nullptr);
  return field ? *field : YamlField{};
}

TEST(YamlReaderTest, PositionsAreOneBased) {
  YAML::Node root = Parse("a: 1\nb:\n  c: x\n");
  EXPECT_EQ(PositionOf(root["a"]).line, 1);
  EXPECT_EQ(PositionOf(root["a"]).column, 4);
  EXPECT_EQ(PositionOf(root["b"]["c"]).line, 3);
  EXPECT_EQ(PositionOf(root["b"]["c"]).column, 6);
}

TEST(YamlReaderTest, PositionOfANodeWithoutMarkIsTheFallback) {
  YAML::Node made;
  made = "x";
  YamlPosition at = PositionOf(made, YamlPosition{7, 9});
  EXPECT_EQ(at.line, 7);
  EXPECT_EQ(at.column, 9);
}

TEST(YamlReaderTest, SyntaxErrorsAreRecordedNotThrown) {
  YamlDiagnostics diagnostics;
  EXPECT_FALSE(ParseYamlDocument("a: [1, 2\nb: 3\n", diagnostics).has_value());
  EXPECT_EQ(Messages(diagnostics),
            std::vector<std::string>{"2:2: YAML syntax error: end of sequence flow not found"});
}

// A file is parsed once when it is one block mapping from column 0; these are the shapes where
// yaml-cpp finds a second document all the same, and each must still be reported.
TEST(YamlReaderTest, SecondDocumentsAreFoundAfterAnyRoot) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"a: 1\n---\nb: 2\n", "2:1: only one YAML document per file is allowed, found a second one"},
      {"a: |\n  x\n---\n", "3:1: only one YAML document per file is allowed, found a second one"},
      {"  a: 1\nb: 2\n", "2:1: only one YAML document per file is allowed, found a second one"},
      {"{a: 1}\n, b: 2\n", "2:1: YAML syntax error: unexpected \",\""},
      {"[a], b\n", "1:4: YAML syntax error: unexpected \",\""},
  };
  for (const auto& [text, message] : cases) {
    YamlDiagnostics diagnostics;
    EXPECT_FALSE(ParseYamlDocument(text, diagnostics).has_value()) << text;
    EXPECT_EQ(Messages(diagnostics), std::vector<std::string>{std::string(message)}) << text;
  }
}

TEST(YamlReaderTest, OneBlockMappingIsOneDocument) {
  // A leading "---", a "..." at the end and a "---" inside a quoted scalar are not a second
  // document.
  for (std::string_view text : {"---\na: 1\nb: [x, y]\n", "a: 1\n...\n", "a: \"x\n  --- y\"\n"}) {
    YamlDiagnostics diagnostics;
    std::optional<YAML::Node> node = ParseYamlDocument(text, diagnostics);
    ASSERT_TRUE(node.has_value()) << text << ::testing::PrintToString(Messages(diagnostics));
    EXPECT_TRUE(node->IsMap()) << text;
    EXPECT_TRUE(diagnostics.empty()) << text;
  }
}

TEST(YamlReaderTest, EmptyTextIsNull) {
  YamlDiagnostics diagnostics;
  std::optional<YAML::Node> node = ParseYamlDocument("", diagnostics);
  ASSERT_TRUE(node.has_value());
  EXPECT_TRUE(node->IsNull());
  EXPECT_TRUE(diagnostics.empty());
}

TEST(YamlReaderTest, ClosestMatch) {
  const std::vector<std::string> names = {"retries", "retry_delay", "pool", "command"};
  EXPECT_EQ(ClosestMatch("retires", names), "retries");  // a swap counts once
  EXPECT_EQ(ClosestMatch("pol", names), "pool");
  EXPECT_EQ(ClosestMatch("comand", names), "command");
  EXPECT_EQ(ClosestMatch("retry_dela", names), "retry_delay");
  EXPECT_EQ(ClosestMatch("xyz", names), std::nullopt);
  EXPECT_EQ(ClosestMatch("x", std::vector<std::string>{"db"}), std::nullopt);  // short words need exact
  EXPECT_EQ(ClosestMatch("abc", std::vector<std::string>{"xyc"}),
            std::nullopt);                               // 2 of 3 letters is too much
  EXPECT_EQ(ClosestMatch("pool", names), std::nullopt);  // exact: nothing to suggest
  EXPECT_EQ(DidYouMean("retires", names), " (did you mean \"retries\"?)");
  EXPECT_EQ(DidYouMean("zzz", names), "");
}

TEST(YamlReaderTest, DescribeNode) {
  YAML::Node root = Parse("s: three\nl: [1]\nm: {a: 1}\nn: ~\n");
  EXPECT_EQ(DescribeNode(root["s"]), "\"three\"");
  EXPECT_EQ(DescribeNode(root["l"]), "a list");
  EXPECT_EQ(DescribeNode(root["m"]), "a mapping");
  EXPECT_EQ(DescribeNode(root["n"]), "null");
  EXPECT_EQ(DescribeNode(Parse(std::string("s: ") + std::string(100, 'x'))["s"]),
            "\"" + std::string(60, 'x') + "...\"");
}

TEST(YamlReaderTest, MapReportsUnknownAndDuplicateFields) {
  constexpr std::string_view kKnown[] = {"retries", "pool"};
  YamlDiagnostics diagnostics;
  YamlMap map = YamlMap::Read(Parse("retries: 1\npoll: x\nretries: 2\n"), "task", kKnown, "", diagnostics);
  EXPECT_TRUE(map.is_map());
  ASSERT_EQ(map.fields().size(), 1u);
  EXPECT_EQ(map.Find("retries")->value.Scalar(), "1");  // the first one counts
  EXPECT_EQ(Messages(diagnostics), (std::vector<std::string>{
                                       "2:1: unknown field \"poll\" (did you mean \"pool\"?)",
                                       "3:1: duplicate field \"retries\" (first defined at line 1)",
                                   }));
}

TEST(YamlReaderTest, MapAliasesPointAtOurName) {
  constexpr std::string_view kKnown[] = {"depends_on"};
  constexpr YamlAlias kAliases[] = {{"upstream", "depends_on"}};
  YamlDiagnostics diagnostics;
  YamlMap::Read(Parse("upstream: [a]\n"), "task", kKnown, "", diagnostics, kAliases);
  EXPECT_EQ(Messages(diagnostics),
            std::vector<std::string>{"1:1: unknown field \"upstream\" (did you mean \"depends_on\"?)"});
}

TEST(YamlReaderTest, MapNotAMapping) {
  YamlDiagnostics diagnostics;
  YamlMap map = YamlMap::ReadFree(Parse("x: [1]\n")["x"], "env", "env.", diagnostics);
  EXPECT_FALSE(map.is_map());
  EXPECT_EQ(Messages(diagnostics), std::vector<std::string>{"1:4: env: expected a mapping, got a list"});
}

TEST(YamlReaderTest, MapNonScalarKey) {
  YamlDiagnostics diagnostics;
  YamlMap::ReadFree(Parse("? [a]\n: 1\n"), "env", "", diagnostics);
  EXPECT_EQ(Messages(diagnostics),
            std::vector<std::string>{"1:3: env: field names must be plain text, got a list"});
}

TEST(YamlReaderTest, MergeKeysFillInWhatIsNotWritten) {
  constexpr std::string_view kKnown[] = {"a", "b", "c"};
  YamlDiagnostics diagnostics;
  YAML::Node root = Parse("base: &base {a: 1, b: 2}\nthing:\n  <<: *base\n  b: 3\n  c: 4\n");
  YamlMap map = YamlMap::Read(root["thing"], "thing", kKnown, "", diagnostics);
  EXPECT_TRUE(diagnostics.empty()) << ::testing::PrintToString(Messages(diagnostics));
  EXPECT_EQ(map.Find("a")->value.Scalar(), "1");
  EXPECT_EQ(map.Find("b")->value.Scalar(), "3");
  EXPECT_EQ(map.Find("c")->value.Scalar(), "4");
}

TEST(YamlReaderTest, LabelsCarryThePrefix) {
  YamlDiagnostics diagnostics;
  YamlMap map = YamlMap::ReadFree(Parse("chunk: x\n"), "map", "map.", diagnostics);
  EXPECT_FALSE(ReadInt(*map.Find("chunk"), diagnostics).has_value());
  EXPECT_EQ(Messages(diagnostics),
            std::vector<std::string>{"1:8: map.chunk: expected an integer, got \"x\""});
}

TEST(YamlReaderTest, NullValuePointsAtItsKey) {
  YamlField field = Field("a:\nb: 1\n", "a");
  EXPECT_EQ(field.value_position.line, 1);
  EXPECT_EQ(field.value_position.column, 1);
  YamlField tilde = Field("a: ~\n", "a");
  EXPECT_EQ(tilde.value_position.column, 4);
}

TEST(YamlReaderTest, ReadInt) {
  YamlDiagnostics diagnostics;
  EXPECT_EQ(ReadInt(Field("n: 42", "n"), diagnostics), 42);
  EXPECT_EQ(ReadInt(Field("n: -7", "n"), diagnostics), -7);
  EXPECT_EQ(ReadInt(Field("n: +7", "n"), diagnostics), 7);
  EXPECT_EQ(ReadInt(Field("n: \"12\"", "n"), diagnostics), 12);
  EXPECT_TRUE(diagnostics.empty());
  EXPECT_FALSE(ReadInt(Field("n: 1.5", "n"), diagnostics).has_value());
  EXPECT_FALSE(ReadInt(Field("n: 99999999999999999999", "n"), diagnostics).has_value());
  EXPECT_FALSE(ReadInt(Field("n: 5", "n"), diagnostics, 10, 20).has_value());
  EXPECT_FALSE(ReadInt(Field("n: [1]", "n"), diagnostics).has_value());
  EXPECT_EQ(Messages(diagnostics),
            (std::vector<std::string>{
                "1:4: n: expected an integer, got \"1.5\"",
                "1:4: n: must be at most 9223372036854775807, got 99999999999999999999",
                "1:4: n: must be at least 10, got 5",
                "1:4: n: expected an integer, got a list",
            }));
}

TEST(YamlReaderTest, ReadBool) {
  YamlDiagnostics diagnostics;
  EXPECT_EQ(ReadBool(Field("b: true", "b"), diagnostics), true);
  EXPECT_EQ(ReadBool(Field("b: FALSE", "b"), diagnostics), false);
  EXPECT_EQ(ReadBool(Field("b: yes", "b"), diagnostics), true);
  EXPECT_EQ(ReadBool(Field("b: off", "b"), diagnostics), false);
  EXPECT_TRUE(diagnostics.empty());
  EXPECT_FALSE(ReadBool(Field("b: 1", "b"), diagnostics).has_value());
  EXPECT_EQ(Messages(diagnostics), std::vector<std::string>{"1:4: b: expected true or false, got \"1\""});
}

TEST(YamlReaderTest, ReadDuration) {
  YamlDiagnostics diagnostics;
  EXPECT_EQ(ReadDuration(Field("d: 90", "d"), diagnostics), std::chrono::seconds(90));
  EXPECT_EQ(ReadDuration(Field("d: 1h30m", "d"), diagnostics), std::chrono::minutes(90));
  EXPECT_EQ(ReadDuration(Field("d: 0s", "d"), diagnostics), Duration(0));
  EXPECT_TRUE(diagnostics.empty());
  EXPECT_FALSE(ReadDuration(Field("d: 0s", "d"), diagnostics, /*positive=*/true).has_value());
  EXPECT_FALSE(ReadDuration(Field("d: {a: 1}", "d"), diagnostics).has_value());
  EXPECT_EQ(Messages(diagnostics), (std::vector<std::string>{
                                       "1:4: d: must be longer than 0s",
                                       "1:4: d: expected a duration such as 90s, 5m or 1h30m, got a mapping",
                                   }));
}

TEST(YamlReaderTest, ReadStringListPointsAtTheBadEntry) {
  YamlDiagnostics diagnostics;
  std::vector<YamlPosition> positions;
  EXPECT_EQ(ReadStringList(Field("l: [a, b]", "l"), diagnostics, &positions),
            (std::vector<std::string>{"a", "b"}));
  ASSERT_EQ(positions.size(), 2u);
  EXPECT_EQ(positions[1].column, 8);
  EXPECT_FALSE(ReadStringList(Field("l:\n  - a\n  - [b]\n", "l"), diagnostics).has_value());
  EXPECT_EQ(Messages(diagnostics), std::vector<std::string>{"3:5: l[1]: expected a string, got a list"});
}

TEST(YamlReaderTest, ScalarOrJson) {
  YamlDiagnostics diagnostics;
  EXPECT_EQ(ReadScalarOrJson(Field("v: hello world", "v"), diagnostics), "hello world");
  EXPECT_EQ(ReadScalarOrJson(Field("v: 007", "v"), diagnostics), "007");  // scalars as written
  EXPECT_EQ(ReadScalarOrJson(Field("v: [1, -2, 2.5, 1e3, true, ~, \"3\", x, .inf]", "v"), diagnostics),
            R"([1,-2,2.5,1000.0,true,null,"3","x",".inf"])");
  EXPECT_EQ(ReadScalarOrJson(Field("v: {b: {c: [1]}, a: \"x\"}", "v"), diagnostics),
            R"({"a":"x","b":{"c":[1]}})");
  EXPECT_EQ(ReadScalarOrJson(Field("v:", "v"), diagnostics), "");
  EXPECT_TRUE(diagnostics.empty());
}

TEST(YamlReaderTest, ScalarOrJsonStopsAtExponentialAliases) {
  std::string text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  char previous = 'a';
  for (char name = 'b'; name <= 'h'; ++name) {
    std::string anchor(1, previous);
    text += std::string(1, name) + ": &" + name + " [*" + anchor + ", *" + anchor + ", *" + anchor + ", *" +
            anchor + ", *" + anchor + ", *" + anchor + ", *" + anchor + ", *" + anchor + ", *" + anchor +
            ", *" + anchor + "]\n";
    previous = name;
  }
  YamlDiagnostics diagnostics;
  EXPECT_FALSE(ReadScalarOrJson(Field(text, "h"), diagnostics).has_value());
  EXPECT_EQ(diagnostics.size(), 1u);
}

TEST(YamlReaderTest, TimeZoneHint) {
  EXPECT_EQ(TimeZoneHint("Europe/Berln"), " (did you mean \"Europe/Berlin\"?)");
  EXPECT_EQ(TimeZoneHint("Nowhere"), " (use an IANA name such as Europe/Berlin or UTC)");
}

TEST(YamlReaderTest, FindTopLevelValue) {
  std::optional<YamlPosition> at = FindTopLevelValue("# c\ndag_id:   shared\ntasks: []\n", "dag_id");
  ASSERT_TRUE(at.has_value());
  EXPECT_EQ(at->line, 2);
  EXPECT_EQ(at->column, 11);
  EXPECT_FALSE(FindTopLevelValue("tasks: []\n", "dag_id").has_value());
  EXPECT_FALSE(FindTopLevelValue("a: [", "dag_id").has_value());
}

TEST(YamlReaderTest, ReadWholeFile) {
  std::string text;
  Status missing = ReadWholeFile("/nonexistent/file", text);
  EXPECT_FALSE(missing.ok());
  EXPECT_EQ(missing.message(), "No such file or directory");
}

}  // namespace
}  // namespace nightshift

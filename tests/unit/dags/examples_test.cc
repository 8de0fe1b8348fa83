// The DAG files shipped with the source: the examples must load, and the folder of broken DAGs
// must give exactly the errors its EXPECTED.txt lists (which `nightshift dags validate` prints).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "dags/dag_folder.h"
#include "dags/dag_loader.h"
#include "dags/yaml_reader.h"

namespace nightshift {
namespace {

namespace fs = std::filesystem;

const std::string kSource = NIGHTSHIFT_SOURCE_DIR;

// The window and pool names examples/nightshift.yaml defines. This module may not use the
// config loader (app/), so the names are picked out here; app's config test checks the same
// examples against the fully loaded config.
DagLoadContext ExampleContext() {
  DagLoadContext context;
  std::string text;
  EXPECT_TRUE(ReadWholeFile(kSource + "/examples/nightshift.yaml", text).ok());
  YamlDiagnostics diagnostics;
  std::optional<YAML::Node> root = ParseYamlDocument(text, diagnostics);
  if (!root) {
    ADD_FAILURE() << "examples/nightshift.yaml does not parse";
    return context;
  }
  YamlMap top = YamlMap::ReadFree(*root, "config", "", diagnostics);
  if (const YamlField* pools = top.Find("pools")) {
    const YamlMap map = YamlMap::ReadFree(pools->value, "pools", "", diagnostics);
    for (const YamlField& pool : map.fields()) context.pools.insert(pool.name);
  }
  if (const YamlField* windows = top.Find("windows")) {
    const YamlMap map = YamlMap::ReadFree(windows->value, "windows", "", diagnostics);
    for (const YamlField& window : map.fields()) context.windows.insert(window.name);
  }
  return context;
}

TEST(ExamplesTest, EveryExampleDagLoads) {
  const DagLoadContext context = ExampleContext();
  EXPECT_EQ(context.windows, std::set<std::string>{"nightly"});
  EXPECT_EQ(context.pools, (std::set<std::string>{"db", "default"}));
  DagFolder folder(kSource + "/examples/dags", context);
  folder.Refresh();
  for (const ImportError& error : folder.import_errors()) ADD_FAILURE() << FormatImportError(error);
  std::vector<std::string> ids;
  for (const auto& [id, dag] : folder.dags()) ids.push_back(id);
  EXPECT_EQ(ids, (std::vector<std::string>{"fanout_report", "nightly_etl", "pi_estimate", "reduce_files",
                                            "trigger_rules"}));
}

TEST(ExamplesTest, ExamplesUseWhatTheyShowcase) {
  DagFolder folder(kSource + "/examples/dags", ExampleContext());
  folder.Refresh();
  ASSERT_EQ(folder.dags().size(), 5u);

  const Dag& etl = folder.dags().at("nightly_etl");
  EXPECT_EQ(etl.window, "nightly");
  ASSERT_NE(etl.FindTask("load"), nullptr);
  EXPECT_EQ(etl.FindTask("load")->pool, "db");
  EXPECT_EQ(etl.FindTask("extract")->retries, 2);

  const Dag& pi = folder.dags().at("pi_estimate");
  const Task* count = pi.FindTask("count_points");
  ASSERT_NE(count, nullptr);
  EXPECT_EQ(count->map.kind, MapSpec::Kind::kRange);
  EXPECT_EQ(count->map.range, 100000000);
  EXPECT_EQ(count->map.chunk, 10000000);

  const Task* each = folder.dags().at("reduce_files").FindTask("count_lines");
  ASSERT_NE(each, nullptr);
  EXPECT_EQ(each->map.kind, MapSpec::Kind::kFrom);
  EXPECT_EQ(each->map.from, "list_files");

  const Dag& fanout = folder.dags().at("fanout_report");
  EXPECT_EQ(fanout.FindTask("report")->depends_on.size(), 3u);

  // Every trigger rule appears once in trigger_rules.yaml.
  std::set<TriggerRule> rules;
  for (const Task& task : folder.dags().at("trigger_rules").tasks) {
    if (task.task_id.starts_with("rule_")) rules.insert(task.trigger_rule);
  }
  EXPECT_EQ(rules.size(), TriggerRuleNames().size());
}

TEST(BadDagsTest, ErrorsMatchExpectedTxt) {
  const std::string folder_path = kSource + "/tests/testdata/bad_dags";
  std::ifstream expected_file(folder_path + "/EXPECTED.txt");
  ASSERT_TRUE(expected_file) << "missing EXPECTED.txt";
  std::vector<std::string> expected;
  for (std::string line; std::getline(expected_file, line);) {
    if (!line.empty()) expected.push_back(line);
  }

  // validate runs from the repository root without a config: no windows, only the default pool.
  DagFolder folder(folder_path, DagLoadContext{});
  folder.Refresh();
  std::vector<std::string> actual;
  for (ImportError error : folder.import_errors()) {
    // Names as seen from the repository root, like `nightshift dags validate tests/testdata/bad_dags`.
    const std::string prefix = kSource + "/";
    if (error.filename.starts_with(prefix)) error.filename = error.filename.substr(prefix.size());
    size_t at;
    while ((at = error.message.find(prefix)) != std::string::npos) error.message.erase(at, prefix.size());
    actual.push_back(FormatImportError(error));
  }
  EXPECT_EQ(actual, expected);
  EXPECT_EQ(folder.dags().size(), 1u);
  EXPECT_EQ(folder.dags().count("good"), 1u);
}

TEST(BadDagsTest, EveryYamlFileButTheGoodOneHasAnError) {
  const std::string folder_path = kSource + "/tests/testdata/bad_dags";
  DagFolder folder(folder_path, DagLoadContext{});
  folder.Refresh();
  std::set<std::string> with_errors;
  for (const ImportError& error : folder.import_errors()) with_errors.insert(error.filename);
  for (const auto& entry : fs::directory_iterator(folder_path)) {
    if (entry.path().extension() != ".yaml") continue;
    const bool good = entry.path().filename() == "good.yaml";
    EXPECT_EQ(with_errors.count(entry.path().string()), good ? 0u : 1u) << entry.path();
  }
}

}  // namespace
}  // namespace nightshift

#include "dags/dag_folder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace nightshift {
namespace {

namespace fs = std::filesystem;

std::string Dag(const std::string& dag_id, const std::string& task = "a") {
  std::string text;
  if (!dag_id.empty()) text += "dag_id: " + dag_id + "\n";
  return text + "tasks:\n  - task_id: " + task + "\n    command: echo " + task + "\n";
}

class DagFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "nightshift_dag_folder_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::string Write(const std::string& relative, const std::string& text) {
    const fs::path path = fs::path(root_) / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path.string();
  }

  // Moves a file's modification time so that a rewrite of equal size is seen as a change even
  // on file systems with coarse timestamps.
  void Touch(const std::string& relative, int seconds_later) {
    const fs::path path = fs::path(root_) / relative;
    fs::last_write_time(path, fs::last_write_time(path) + std::chrono::seconds(seconds_later));
  }

  std::vector<std::string> Errors(const DagFolder& folder) const {
    std::vector<std::string> out;
    for (const ImportError& e : folder.import_errors()) {
      std::string name =
          e.filename.starts_with(root_ + "/") ? e.filename.substr(root_.size() + 1) : e.filename;
      out.push_back(name + ":" + std::to_string(e.line) + ":" + std::to_string(e.column) + ": " + e.message);
    }
    return out;
  }

  std::vector<std::string> Ids(const DagFolder& folder) const {
    std::vector<std::string> out;
    for (const auto& [id, dag] : folder.dags()) out.push_back(id);
    return out;
  }

  std::string root_;
};

TEST_F(DagFolderTest, LoadsYamlAndYmlInSubfoldersAndSkipsTheRest) {
  Write("one.yaml", Dag(""));
  Write("sub/deeper/two.yml", Dag(""));
  Write("notes.txt", "not a dag");
  Write("one.yaml.bak", "not a dag");
  Write(".hidden.yaml", "broken: [");
  Write(".git/config.yaml", "broken: [");
  Write("sub/.cache/x.yaml", "broken: [");
  DagFolder folder(root_, DagLoadContext{});
  EXPECT_TRUE(folder.Refresh());
  EXPECT_EQ(Ids(folder), (std::vector<std::string>{"one", "two"}));
  EXPECT_TRUE(folder.import_errors().empty()) << ::testing::PrintToString(Errors(folder));
  EXPECT_EQ(folder.dags().at("two").file_path, root_ + "/sub/deeper/two.yml");
}

TEST_F(DagFolderTest, BrokenFileDoesNotStopTheOthers) {
  Write("a_good.yaml", Dag(""));
  Write("b_broken.yaml", "tasks:\n  - task_id: x\n    retires: 1\n    command: y\n");
  Write("c_good.yaml", Dag(""));
  DagFolder folder(root_, DagLoadContext{});
  folder.Refresh();
  EXPECT_EQ(Ids(folder), (std::vector<std::string>{"a_good", "c_good"}));
  EXPECT_EQ(Errors(folder), std::vector<std::string>{
                                "b_broken.yaml:3:5: unknown field \"retires\" (did you mean \"retries\"?)"});
}

TEST_F(DagFolderTest, TwoFilesWithTheSameDagIdAreBothErrors) {
  Write("first.yaml", "# the first\ndag_id: shared\ntasks:\n  - {task_id: a, command: x}\n");
  Write("second.yaml", Dag("shared"));
  Write("other.yaml", Dag("other"));
  DagFolder folder(root_, DagLoadContext{});
  folder.Refresh();
  EXPECT_EQ(Ids(folder), std::vector<std::string>{"other"});
  EXPECT_EQ(Errors(folder),
            (std::vector<std::string>{
                "first.yaml:2:9: dag_id \"shared\" is also defined in " + root_ + "/second.yaml",
                "second.yaml:1:9: dag_id \"shared\" is also defined in " + root_ + "/first.yaml",
            }));
}

TEST_F(DagFolderTest, DagIdFromTheStemCanCollideToo) {
  Write("etl.yaml", Dag(""));
  Write("sub/etl.yml", Dag(""));
  DagFolder folder(root_, DagLoadContext{});
  folder.Refresh();
  EXPECT_TRUE(folder.dags().empty());
  EXPECT_EQ(Errors(folder), (std::vector<std::string>{
                                "etl.yaml:1:1: dag_id \"etl\" is also defined in " + root_ + "/sub/etl.yml",
                                "sub/etl.yml:1:1: dag_id \"etl\" is also defined in " + root_ + "/etl.yaml",
                            }));
}

TEST_F(DagFolderTest, ErrorsAreSortedByFileThenLine) {
  Write("b.yaml", "tasks:\n  - {task_id: x, command: y, pool: nope}\n  - {task_id: x, command: y}\n");
  Write("a.yaml", "tasks:\n  - {task_id: x, command: y, retries: -1}\n");
  DagFolder folder(root_, DagLoadContext{});
  folder.Refresh();
  EXPECT_EQ(Errors(folder), (std::vector<std::string>{
                                "a.yaml:2:39: retries: must be at least 0, got -1",
                                "b.yaml:2:36: pool: unknown pool \"nope\" (one of: default)",
                                "b.yaml:3:15: duplicate task_id \"x\" (first defined at line 2)",
                            }));
}

TEST_F(DagFolderTest, ReloadsChangedFilesOnly) {
  Write("etl.yaml", Dag("", "first"));
  DagFolder folder(root_, DagLoadContext{});
  EXPECT_TRUE(folder.Refresh());
  EXPECT_FALSE(folder.Refresh());  // nothing changed on disk
  EXPECT_EQ(folder.dags().at("etl").tasks.at(0).task_id, "first");

  Write("etl.yaml", Dag("", "other"));  // same size: only the mtime tells
  Touch("etl.yaml", 5);
  EXPECT_TRUE(folder.Refresh());
  EXPECT_EQ(folder.dags().at("etl").tasks.at(0).task_id, "other");

  Write("etl.yaml", "tasks: [");  // broken now: the error comes, the last good DAG stays
  EXPECT_TRUE(folder.Refresh());
  EXPECT_EQ(folder.dags().at("etl").tasks.at(0).task_id, "other");
  EXPECT_EQ(folder.import_errors().size(), 1u);

  Write("etl.yaml", Dag("", "fixed"));
  EXPECT_TRUE(folder.Refresh());
  EXPECT_EQ(folder.dags().at("etl").tasks.at(0).task_id, "fixed");
  EXPECT_TRUE(folder.import_errors().empty());
}

TEST_F(DagFolderTest, AFileBrokenFromTheStartServesNothing) {
  Write("etl.yaml", "tasks: [");
  DagFolder folder(root_, DagLoadContext{});
  EXPECT_TRUE(folder.Refresh());
  EXPECT_TRUE(folder.dags().empty());
  Write("etl.yaml", Dag("", "first"));
  EXPECT_TRUE(folder.Refresh());
  Write("etl.yaml", "tasks: [1");
  Touch("etl.yaml", 5);
  EXPECT_TRUE(folder.Refresh());
  fs::remove(fs::path(root_) / "etl.yaml");  // deleting it forgets the last good DAG too
  EXPECT_TRUE(folder.Refresh());
  EXPECT_TRUE(folder.dags().empty());
}

TEST_F(DagFolderTest, DeletedFilesAreForgotten) {
  Write("a.yaml", Dag(""));
  Write("b.yaml", "tasks: [");
  DagFolder folder(root_, DagLoadContext{});
  folder.Refresh();
  EXPECT_EQ(Ids(folder), std::vector<std::string>{"a"});
  EXPECT_EQ(folder.import_errors().size(), 1u);
  fs::remove(fs::path(root_) / "a.yaml");
  fs::remove(fs::path(root_) / "b.yaml");
  EXPECT_TRUE(folder.Refresh());
  EXPECT_TRUE(folder.dags().empty());
  EXPECT_TRUE(folder.import_errors().empty());
}

TEST_F(DagFolderTest, RemovingADuplicateServesTheOther) {
  Write("a.yaml", Dag("shared"));
  Write("b.yaml", Dag("shared"));
  DagFolder folder(root_, DagLoadContext{});
  folder.Refresh();
  EXPECT_TRUE(folder.dags().empty());
  fs::remove(fs::path(root_) / "b.yaml");
  EXPECT_TRUE(folder.Refresh());
  EXPECT_EQ(Ids(folder), std::vector<std::string>{"shared"});
  EXPECT_TRUE(folder.import_errors().empty());
}

TEST_F(DagFolderTest, NewFilesInNewSubfoldersAppear) {
  DagFolder folder(root_, DagLoadContext{});
  EXPECT_FALSE(folder.Refresh());
  EXPECT_TRUE(folder.dags().empty());
  Write("team/x/new.yaml", Dag(""));
  EXPECT_TRUE(folder.Refresh());
  EXPECT_EQ(Ids(folder), std::vector<std::string>{"new"});
}

TEST_F(DagFolderTest, UsesTheContextForWindowsAndPools) {
  Write("etl.yaml", "window: nightly\ntasks:\n  - {task_id: a, command: x, pool: db}\n");
  DagLoadContext context;
  context.windows = {"nightly"};
  context.pools = {"default", "db"};
  DagFolder folder(root_, context);
  folder.Refresh();
  EXPECT_EQ(Ids(folder), std::vector<std::string>{"etl"});
}

TEST_F(DagFolderTest, MissingFolderIsAnErrorUntilItExists) {
  const std::string missing = root_ + "/not_yet";
  DagFolder folder(missing, DagLoadContext{});
  EXPECT_TRUE(folder.Refresh());
  EXPECT_EQ(Errors(folder),
            std::vector<std::string>{"not_yet:1:1: cannot read the DAGs folder: No such file or directory"});
  EXPECT_FALSE(folder.Refresh());  // same error: no change
  Write("not_yet/a.yaml", Dag(""));
  EXPECT_TRUE(folder.Refresh());
  EXPECT_TRUE(folder.import_errors().empty());
  EXPECT_EQ(Ids(folder), std::vector<std::string>{"a"});
}

}  // namespace
}  // namespace nightshift

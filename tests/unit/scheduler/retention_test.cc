#include "scheduler/retention.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace nightshift {
namespace {

TimePoint T(const char* text) { return *ParseTimestamp(text, "UTC"); }

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nightshift-retention-XXXXXX";
    dir_ = mkdtemp(tmpl);
    store_ = OpenSqliteStore(dir_ + "/state.db").value();
    ASSERT_TRUE(store_->Migrate().ok());
    ASSERT_TRUE(store_->UpsertDag(DagRecord{"d", false, "d.yaml", std::nullopt}).ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void AddRun(const std::string& id, const char* date, RunState state) {
    DagRun run;
    run.dag_id = "d";
    run.run_id = id;
    run.run_type = "manual";
    run.state = state;
    run.logical_date = T(date);
    if (IsFinished(state)) run.end_date = T(date);
    run.start_date = T(date);
    std::vector<TaskInstance> tis(1);
    tis[0].task_id = "t";
    if (IsFinished(state)) tis[0].state = TaskState::kSuccess;
    ASSERT_TRUE(store_->CreateRun(&run, &tis).ok());
    std::filesystem::create_directories(dir_ + "/logs/d/" + id + "/t");
    std::ofstream(dir_ + "/logs/d/" + id + "/t/1.log") << "x";
  }
  std::vector<std::string> Remaining() {
    std::vector<std::string> ids;
    auto page = store_->ListRuns(RunQuery{});
    for (const DagRun& r : page->runs) ids.push_back(r.run_id);
    return ids;
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(RetentionTest, KeepsTheNewestFinishedRunsAndNeverActiveOnes) {
  AddRun("r1", "2026-11-01T00:00:00Z", RunState::kSuccess);
  AddRun("r2", "2026-11-02T00:00:00Z", RunState::kFailed);
  AddRun("r3", "2026-11-03T00:00:00Z", RunState::kSuccess);
  AddRun("old_running", "2026-01-01T00:00:00Z", RunState::kRunning);
  RetentionPolicy policy;
  policy.max_runs_per_dag = 2;
  auto deleted = PruneFinishedRuns(*store_, dir_ + "/logs", policy, T("2026-11-04T00:00:00Z"));
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1);
  EXPECT_EQ(Remaining(), (std::vector<std::string>{"r3", "r2", "old_running"}));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/logs/d/r1"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/logs/d/r2/t/1.log"));
}

TEST_F(RetentionTest, DropsRunsOlderThanMaxAge) {
  AddRun("old", "2026-10-01T00:00:00Z", RunState::kSuccess);
  AddRun("new", "2026-11-20T00:00:00Z", RunState::kSuccess);
  RetentionPolicy policy;
  policy.max_age = std::chrono::hours(24 * 30);
  auto deleted = PruneFinishedRuns(*store_, dir_ + "/logs", policy, T("2026-11-28T00:00:00Z"));
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1);
  EXPECT_EQ(Remaining(), (std::vector<std::string>{"new"}));
  std::vector<std::string> problems;
  ASSERT_TRUE(store_->Check(&problems).ok());
  EXPECT_TRUE(problems.empty());
}

}  // namespace
}  // namespace nightshift

// What scheduler_test.cc and standby_test.cc share: the real Scheduler over a real SQLite file
// in a temporary folder, with a fake executor and a fake clock, driven one pass at a time.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "scheduler/scheduler.h"
#include "store/sqlite_store.h"
#include "tests/unit/scheduler/fakes.h"

namespace nightshift::testing_fakes {

inline Task MakeTask(const std::string& id, std::vector<std::string> deps = {}) {
  Task t;
  t.task_id = id;
  t.command = "echo " + id;
  t.depends_on = std::move(deps);
  return t;
}

class SchedulerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nightshift-sched-XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto store = OpenSqliteStore(dir_ + "/state.db");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    ASSERT_TRUE(store_->Migrate().ok());
    options_.logs_dir = dir_ + "/logs";
    options_.create_scheduled_runs = false;
  }
  void TearDown() override {
    // Every move the scheduler made went through the transition table.
    if (scheduler_) {
      EXPECT_EQ(scheduler_->metrics().illegal_transitions, 0u);
    }
    std::filesystem::remove_all(dir_);
  }

  void AddDag(Dag dag) {
    dag.file_path = dir_ + "/dags/" + dag.dag_id + ".yaml";
    DagRecord record;
    record.dag_id = dag.dag_id;
    ASSERT_TRUE(store_->UpsertDag(record).ok());
    dags_[dag.dag_id] = std::move(dag);
  }
  Scheduler& Make() {
    scheduler_ = std::make_unique<Scheduler>(options_, *store_, executor_, clock_, dags_);
    EXPECT_TRUE(scheduler_->Recover().ok());
    return *scheduler_;
  }
  std::optional<TimePoint> Pass() {
    auto next = scheduler_->RunPass();
    EXPECT_TRUE(next.ok()) << next.status().ToString();
    return next.ok() ? *next : std::nullopt;
  }
  TaskInstance Ti(int64_t run_pk, const std::string& task_id) {
    auto tis = store_->ListTaskInstances(run_pk);
    for (const TaskInstance& ti : *tis) {
      if (ti.task_id == task_id) return ti;
    }
    ADD_FAILURE() << "no task " << task_id;
    return {};
  }
  RunState RunStateOf(int64_t run_pk) { return (*store_->GetRunById(run_pk))->state; }

  std::string dir_;
  std::unique_ptr<Store> store_;
  FakeClock clock_;
  FakeExecutor executor_;
  SchedulerOptions options_;
  std::map<std::string, Dag> dags_;
  std::unique_ptr<Scheduler> scheduler_;
};

}  // namespace nightshift::testing_fakes

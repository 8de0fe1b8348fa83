// The scheduler against a fake executor, a fake clock and a real SQLite file.
#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/unit/scheduler/scheduler_fixture.h"

namespace nightshift {
namespace {

using std::chrono::seconds;

using testing_fakes::FakeClock;
using testing_fakes::FakeExecutor;
using testing_fakes::MakeTask;
using testing_fakes::T;

class SchedulerTest : public testing_fakes::SchedulerFixture {
 protected:
  // Starts and finishes (with `exit_code`) every try submitted since the last call.
  void CompleteSubmitted(int exit_code = 0) {
    for (size_t i = completed_; i < executor_.submitted.size(); ++i) {
      executor_.Start(executor_.submitted[i]);
      executor_.Finish(executor_.submitted[i].key, exit_code);
    }
    completed_ = executor_.submitted.size();
  }

  size_t completed_ = 0;
};

TEST_F(SchedulerTest, DiamondRunsInDependencyOrder) {
  Dag dag;
  dag.dag_id = "diamond";
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"}), MakeTask("c", {"a"}), MakeTask("d", {"b", "c"})};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("diamond", std::nullopt, std::nullopt, "{}");
  ASSERT_TRUE(run.ok());
  Pass();
  EXPECT_EQ(executor_.TaskIds(), (std::vector<std::string>{"a"}));
  CompleteSubmitted();
  Pass();
  EXPECT_EQ(executor_.TaskIds(), (std::vector<std::string>{"a", "b", "c"}));
  CompleteSubmitted();
  Pass();
  EXPECT_EQ(executor_.TaskIds(), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(RunStateOf(run->id), RunState::kRunning);
  CompleteSubmitted();
  Pass();
  EXPECT_EQ(RunStateOf(run->id), RunState::kSuccess);
  EXPECT_EQ(Ti(run->id, "d").state, TaskState::kSuccess);
  EXPECT_EQ(Ti(run->id, "d").try_number, 1);
}

// A try's dates are the executor's: it may hear of an end well after it happened (events
// sent in a batch, or read from the journal after a restart).
TEST_F(SchedulerTest, ATrysDatesAreWhenTheExecutorSawThemWithinItsStartAndNow) {
  Dag dag;
  dag.dag_id = "dates";
  dag.tasks = {MakeTask("a"), MakeTask("b"), MakeTask("c")};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("dates", std::nullopt, std::nullopt, "{}");
  ASSERT_TRUE(run.ok());
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 3u);
  const TimePoint start = clock_.now;
  for (const TaskSpec& spec : executor_.submitted) executor_.Start(spec);
  Pass();
  auto finish_at = [&](const TaskSpec& spec, TimePoint at) {
    executor_.Finish(spec.key, 0);
    executor_.events.back().at = at;
  };
  finish_at(executor_.submitted[0], start + std::chrono::seconds(3));    // heard of a minute late
  finish_at(executor_.submitted[1], start + std::chrono::seconds(3600));  // a clock ahead of ours
  finish_at(executor_.submitted[2], start - std::chrono::seconds(5));     // a clock behind
  clock_.now = start + std::chrono::seconds(60);
  Pass();
  auto end_of = [&](const std::string& task) {
    const TaskInstance ti = Ti(run->id, task);
    auto tries = store_->ListTries(ti.id);
    EXPECT_TRUE(tries.ok() && tries->size() == 1u);
    EXPECT_EQ(tries->front().end_date, ti.end_date);
    return ti.end_date.value_or(TimePoint{});
  };
  EXPECT_EQ(end_of("a"), start + std::chrono::seconds(3));
  EXPECT_EQ(end_of("b"), clock_.now);
  EXPECT_EQ(end_of("c"), start);
  EXPECT_EQ(RunStateOf(run->id), RunState::kSuccess);
}

// `nightshift run --task`: only the named tasks, with the edges between them.
TEST_F(SchedulerTest, ARunOfSomeTasksKeepsOnlyTheirEdges) {
  Dag dag;
  dag.dag_id = "some";
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"}), MakeTask("c", {"b"}), MakeTask("d", {"c"})};
  AddDag(dag);
  Scheduler& s = Make();
  auto missing = s.TriggerRun("some", std::nullopt, std::nullopt, "{}", {"b", "x"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "DAG some has no task \"x\"");
  auto run = s.TriggerRun("some", std::nullopt, std::nullopt, "{}", {"c", "b"});
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  auto tis = store_->ListTaskInstances(run->id);
  ASSERT_EQ(tis->size(), 2u);
  Pass();
  EXPECT_EQ(executor_.TaskIds(), (std::vector<std::string>{"b"}));  // a is not waited for
  CompleteSubmitted();
  Pass();
  EXPECT_EQ(executor_.TaskIds(), (std::vector<std::string>{"b", "c"}));  // b -> c is kept
  CompleteSubmitted();
  Pass();
  EXPECT_EQ(RunStateOf(run->id), RunState::kSuccess);
}

TEST_F(SchedulerTest, QueuedIsCommittedBeforeTheProcessStarts) {
  Dag dag;
  dag.dag_id = "one";
  dag.tasks = {MakeTask("a")};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("one", std::nullopt, std::nullopt, "{}");
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 1u);
  // The store already says queued, with a try row and its log path, when Submit is called.
  TaskInstance ti = Ti(run->id, "a");
  EXPECT_EQ(ti.state, TaskState::kQueued);
  auto tries = store_->ListTries(ti.id);
  ASSERT_EQ(tries->size(), 1u);
  EXPECT_EQ((*tries)[0].log_path, executor_.submitted[0].log_path);
  executor_.Start(executor_.submitted[0], 4242);
  Pass();
  ti = Ti(run->id, "a");
  EXPECT_EQ(ti.state, TaskState::kRunning);
  EXPECT_EQ(ti.pid, 4242);
}

TEST_F(SchedulerTest, AnExecutorsWaitingReasonShowsUntilTheTryStarts) {
  Dag dag;
  dag.dag_id = "pending";
  dag.tasks = {MakeTask("a")};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("pending", std::nullopt, std::nullopt, "{}");
  Pass();
  ExecutorEvent waiting;
  waiting.kind = ExecutorEvent::Kind::kWaiting;
  waiting.key = executor_.submitted[0].key;
  waiting.reason = "slurm: PENDING (Resources)";
  executor_.events.push_back(waiting);
  Pass();
  EXPECT_EQ(Ti(run->id, "a").state, TaskState::kQueued);
  EXPECT_EQ(Ti(run->id, "a").waiting_reason, "slurm: PENDING (Resources)");
  executor_.Start(executor_.submitted[0]);
  Pass();
  EXPECT_EQ(Ti(run->id, "a").state, TaskState::kRunning);
  EXPECT_EQ(Ti(run->id, "a").waiting_reason, std::nullopt);
}

TEST_F(SchedulerTest, RetriesWithBackoffThenSucceed) {
  Dag dag;
  dag.dag_id = "retry";
  Task t = MakeTask("flaky");
  t.retries = 2;
  t.retry_delay = seconds(10);
  t.retry_exponential_backoff = true;
  dag.tasks = {t};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("retry", std::nullopt, std::nullopt, "{}");
  Pass();
  CompleteSubmitted(1);
  auto next = Pass();
  EXPECT_EQ(Ti(run->id, "flaky").state, TaskState::kUpForRetry);
  EXPECT_EQ(next, clock_.now + seconds(10));
  clock_.now += seconds(9);
  Pass();
  EXPECT_EQ(executor_.submitted.size(), 1u);
  clock_.now += seconds(1);
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 2u);
  EXPECT_EQ(executor_.submitted[1].key.try_number, 2);
  EXPECT_EQ(executor_.submitted[1].env.at("NIGHTSHIFT_TRY_NUMBER"), "2");
  CompleteSubmitted(1);
  next = Pass();
  EXPECT_EQ(next, clock_.now + seconds(20));  // doubled
  clock_.now += seconds(20);
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 3u);
  CompleteSubmitted(0);
  Pass();
  EXPECT_EQ(Ti(run->id, "flaky").state, TaskState::kSuccess);
  EXPECT_EQ(Ti(run->id, "flaky").try_number, 3);
  EXPECT_EQ(RunStateOf(run->id), RunState::kSuccess);
}

// A run that fails while a task waits for its next try skips that task like any task that
// still waits (docs/scheduling.md, dagrun_timeout), through a move the transition table allows.
TEST_F(SchedulerTest, ARunThatTimesOutWhileATaskWaitsForItsRetrySkipsIt) {
  Dag dag;
  dag.dag_id = "retry_timeout";
  dag.dagrun_timeout = seconds(60);
  Task t = MakeTask("flaky");
  t.retries = 1;
  t.retry_delay = seconds(300);
  dag.tasks = {t};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("retry_timeout", std::nullopt, std::nullopt, "{}");
  Pass();
  CompleteSubmitted(1);
  Pass();
  ASSERT_EQ(Ti(run->id, "flaky").state, TaskState::kUpForRetry);
  clock_.now += seconds(60);
  Pass();
  EXPECT_EQ(Ti(run->id, "flaky").state, TaskState::kSkipped);
  EXPECT_EQ(RunStateOf(run->id), RunState::kFailed);
  EXPECT_EQ(s.metrics().illegal_transitions, 0u);
}

TEST_F(SchedulerTest, FailurePropagatesAsUpstreamFailedAndFailsTheRun) {
  Dag dag;
  dag.dag_id = "fail";
  Task cleanup = MakeTask("cleanup", {"a"});
  cleanup.trigger_rule = TriggerRule::kAllDone;
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"}), MakeTask("c", {"b"}), cleanup};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("fail", std::nullopt, std::nullopt, "{}");
  Pass();
  CompleteSubmitted(3);
  Pass();
  EXPECT_EQ(Ti(run->id, "a").state, TaskState::kFailed);
  EXPECT_EQ(Ti(run->id, "b").state, TaskState::kUpstreamFailed);
  EXPECT_EQ(Ti(run->id, "c").state, TaskState::kUpstreamFailed);
  EXPECT_EQ(executor_.TaskIds(), (std::vector<std::string>{"a", "cleanup"}));
  CompleteSubmitted(0);
  Pass();
  // A leaf (c) ended upstream_failed: the run failed even though cleanup succeeded.
  EXPECT_EQ(RunStateOf(run->id), RunState::kFailed);
}

TEST_F(SchedulerTest, ParallelismAndPoolsLimitStartsAndSayWhy) {
  options_.parallelism = 3;
  options_.pools = {{"default", 128}, {"db", 1}};
  Dag dag;
  dag.dag_id = "wide";
  for (int i = 0; i < 5; ++i) dag.tasks.push_back(MakeTask("t" + std::to_string(i)));
  dag.tasks[0].pool = "db";
  dag.tasks[1].pool = "db";
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("wide", std::nullopt, std::nullopt, "{}");
  Pass();
  EXPECT_EQ(executor_.TaskIds(), (std::vector<std::string>{"t0", "t2", "t3"}));
  EXPECT_EQ(Ti(run->id, "t1").waiting_reason, "pool db full (1/1)");
  EXPECT_EQ(Ti(run->id, "t4").waiting_reason, "parallelism reached (3/3)");
  CompleteSubmitted();
  Pass();
  EXPECT_EQ(executor_.TaskIds(), (std::vector<std::string>{"t0", "t2", "t3", "t1", "t4"}));
  EXPECT_EQ(Ti(run->id, "t1").waiting_reason, std::nullopt);
}

TEST_F(SchedulerTest, MaxActiveTasksLimitsOneDag) {
  Dag dag;
  dag.dag_id = "limited";
  dag.max_active_tasks = 1;
  dag.tasks = {MakeTask("a"), MakeTask("b")};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("limited", std::nullopt, std::nullopt, "{}");
  Pass();
  EXPECT_EQ(executor_.submitted.size(), 1u);
  EXPECT_EQ(Ti(run->id, "b").waiting_reason, "max_active_tasks reached (1/1)");
}

TEST_F(SchedulerTest, HigherPriorityStartsFirst) {
  options_.parallelism = 1;
  Dag dag;
  dag.dag_id = "prio";
  dag.tasks = {MakeTask("low"), MakeTask("high"), MakeTask("mid")};
  dag.tasks[0].priority_weight = 1;
  dag.tasks[1].priority_weight = 10;
  dag.tasks[2].priority_weight = 5;
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("prio", std::nullopt, std::nullopt, "{}");
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  for (int i = 0; i < 3; ++i) {
    Pass();
    CompleteSubmitted();
  }
  EXPECT_EQ(executor_.TaskIds(), (std::vector<std::string>{"high", "mid", "low"}));
}

TEST_F(SchedulerTest, ClosedWindowHoldsTasksUntilItOpens) {
  auto window = Window::Parse("nightly", "UTC", {"22:00-06:00"}, OnClose::kDrain);
  ASSERT_TRUE(window.ok());
  options_.windows.emplace("nightly", *window);
  Dag dag;
  dag.dag_id = "win";
  dag.window = "nightly";
  dag.tasks = {MakeTask("a")};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("win", std::nullopt, std::nullopt, "{}");
  auto next = Pass();
  EXPECT_TRUE(executor_.submitted.empty());
  EXPECT_EQ(Ti(run->id, "a").waiting_reason, "window nightly closed until 2026-11-28T22:00:00+00:00");
  EXPECT_EQ(next, T("2026-11-28T22:00:00Z"));
  clock_.now = *next;
  Pass();
  EXPECT_EQ(executor_.submitted.size(), 1u);
}

TEST_F(SchedulerTest, AClosedWindowIsTheReasonEvenWhenSlotsAreFull) {
  options_.parallelism = 1;
  auto window = Window::Parse("nightly", "UTC", {"22:00-06:00"}, OnClose::kDrain);
  options_.windows.emplace("nightly", *window);
  Dag dag;
  dag.dag_id = "full";
  Task later = MakeTask("later");
  later.window = "nightly";
  dag.tasks = {MakeTask("now1"), MakeTask("now2"), later};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("full", std::nullopt, std::nullopt, "{}");
  Pass();
  Pass();  // saturated now: the shortcut path
  EXPECT_EQ(Ti(run->id, "now2").waiting_reason, "parallelism reached (1/1)");
  EXPECT_EQ(Ti(run->id, "later").waiting_reason, "window nightly closed until 2026-11-28T22:00:00+00:00");
}

TEST_F(SchedulerTest, WindowKillStopsAndRequeuesWithoutUsingARetry) {
  auto window = Window::Parse("nightly", "UTC", {"10:00-12:30"}, OnClose::kKill);
  ASSERT_TRUE(window.ok());
  options_.windows.emplace("nightly", *window);
  Dag dag;
  dag.dag_id = "killme";
  dag.window = "nightly";
  dag.tasks = {MakeTask("long")};  // retries = 0
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("killme", std::nullopt, std::nullopt, "{}");
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 1u);
  executor_.Start(executor_.submitted[0]);
  Pass();
  clock_.now = T("2026-11-28T12:30:00Z");
  Pass();
  ASSERT_EQ(executor_.cancelled.size(), 1u);
  executor_.Finish(executor_.submitted[0].key, 143);
  Pass();
  TaskInstance ti = Ti(run->id, "long");
  EXPECT_EQ(ti.state, TaskState::kScheduled);
  // Counted apart from the retry budget, which stays what the task asked for.
  EXPECT_EQ(ti.max_tries, 1);
  EXPECT_EQ(ti.window_kills, 1);
  EXPECT_EQ(ti.TriesAllowed(), 2);
  EXPECT_EQ(ti.waiting_reason, "window nightly closed until 2026-11-29T10:00:00+00:00");
  clock_.now = T("2026-11-29T10:00:00Z");
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 2u);
  EXPECT_EQ(executor_.submitted[1].key.try_number, 2);
  // The try the window stopped was the only extra one: a failure now ends it (no retries).
  executor_.Start(executor_.submitted[1]);
  executor_.Finish(executor_.submitted[1].key, 1);
  Pass();
  EXPECT_EQ(Ti(run->id, "long").state, TaskState::kFailed);
}

// A retry after a window kill waits the first retry's delay: the stopped try was no retry.
TEST_F(SchedulerTest, AWindowKillDoesNotAdvanceTheRetryBackoff) {
  auto window = Window::Parse("nightly", "UTC", {"10:00-12:30"}, OnClose::kKill);
  ASSERT_TRUE(window.ok());
  options_.windows.emplace("nightly", *window);
  Dag dag;
  dag.dag_id = "killme";
  dag.window = "nightly";
  Task t = MakeTask("long");
  t.retries = 1;
  t.retry_delay = seconds(10);
  t.retry_exponential_backoff = true;
  dag.tasks = {t};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("killme", std::nullopt, std::nullopt, "{}");
  Pass();
  executor_.Start(executor_.submitted[0]);
  Pass();
  clock_.now = T("2026-11-28T12:30:00Z");
  Pass();
  executor_.Finish(executor_.submitted[0].key, 143);
  Pass();
  clock_.now = T("2026-11-29T10:00:00Z");
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 2u);
  executor_.Start(executor_.submitted[1]);
  executor_.Finish(executor_.submitted[1].key, 1);
  Pass();
  TaskInstance ti = Ti(run->id, "long");
  EXPECT_EQ(ti.state, TaskState::kUpForRetry);
  EXPECT_EQ(ti.next_retry_at, clock_.now + seconds(10));
  EXPECT_EQ(ti.TriesAllowed(), 3);
}

TEST_F(SchedulerTest, ExecutionTimeoutCancelsAndFailsTheTry) {
  Dag dag;
  dag.dag_id = "slow";
  Task t = MakeTask("sleepy");
  t.execution_timeout = seconds(30);
  dag.tasks = {t};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("slow", std::nullopt, std::nullopt, "{}");
  Pass();
  executor_.Start(executor_.submitted[0]);
  auto next = Pass();
  EXPECT_EQ(next, clock_.now + seconds(30));
  clock_.now += seconds(30);
  next = Pass();
  ASSERT_EQ(executor_.cancelled.size(), 1u);
  // Asked to stop: its timeout needs no further pass (none is due while it winds down).
  EXPECT_EQ(next, std::nullopt);
  executor_.Finish(executor_.submitted[0].key, 143);
  Pass();
  TaskInstance ti = Ti(run->id, "sleepy");
  EXPECT_EQ(ti.state, TaskState::kFailed);
  auto tries = store_->ListTries(ti.id);
  EXPECT_EQ((*tries)[0].reason, "execution_timeout 30s exceeded");
  EXPECT_EQ(RunStateOf(run->id), RunState::kFailed);
}

// A stop the executor refuses (its supervisor busy, say) is asked again a second later, for as
// long as the try is still queued or running, instead of leaving it to run on.
TEST_F(SchedulerTest, AStopTheExecutorRefusedIsAskedAgain) {
  Dag dag;
  dag.dag_id = "slow";
  Task t = MakeTask("sleepy");
  t.execution_timeout = seconds(30);
  dag.tasks = {t};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("slow", std::nullopt, std::nullopt, "{}");
  Pass();
  executor_.Start(executor_.submitted[0]);
  Pass();
  clock_.now += seconds(30);
  executor_.cancel_status = Status::IOError("supervisor not answering");
  auto next = Pass();
  ASSERT_EQ(executor_.cancelled.size(), 1u);
  EXPECT_EQ(next, clock_.now + seconds(1));
  executor_.cancel_status = Status::OK();
  clock_.now += seconds(1);
  Pass();
  ASSERT_EQ(executor_.cancelled.size(), 2u);
  EXPECT_EQ(executor_.cancelled[1], executor_.submitted[0].key);
  executor_.Finish(executor_.submitted[0].key, 143);
  Pass();
  TaskInstance ti = Ti(run->id, "sleepy");
  EXPECT_EQ(ti.state, TaskState::kFailed);
  EXPECT_EQ((*store_->ListTries(ti.id))[0].reason, "execution_timeout 30s exceeded");
  // Asked for no more once the try is over.
  clock_.now += seconds(5);
  Pass();
  EXPECT_EQ(executor_.cancelled.size(), 2u);
}

// A try the executor will not start fails with the reason, and its retries apply.
TEST_F(SchedulerTest, ATryTheExecutorRefusesFailsAndIsRetried) {
  Dag dag;
  dag.dag_id = "refused";
  Task t = MakeTask("a");
  t.retries = 1;
  t.retry_delay = seconds(5);
  dag.tasks = {t};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("refused", std::nullopt, std::nullopt, "{}");
  executor_.submit_status = Status::IOError("no space left");
  Pass();
  EXPECT_TRUE(executor_.submitted.empty());
  executor_.submit_status = Status::OK();
  Pass();
  TaskInstance ti = Ti(run->id, "a");
  EXPECT_EQ(ti.state, TaskState::kUpForRetry);
  EXPECT_EQ((*store_->ListTries(ti.id))[0].reason, "cannot start: no space left");
  clock_.now += seconds(5);
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 1u);
  EXPECT_EQ(executor_.submitted[0].key.try_number, 2);
}

// An upstream output too big for one environment variable reaches the task as a file, written
// before the try is handed to the executor.
TEST_F(SchedulerTest, ABigUpstreamOutputIsWrittenToAFileBeforeTheTryStarts) {
  Dag dag;
  dag.dag_id = "big";
  Task up = MakeTask("up");
  up.map.kind = MapSpec::Kind::kItems;
  up.map.items = {"a", "b", "c"};
  Task down_task = MakeTask("down", {"up"});
  down_task.cache.enabled = true;  // its key covers the file's content
  dag.tasks = {up, down_task};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("big", std::nullopt, std::nullopt, "{}");
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 3u);
  // Each output is under the 64 KiB limit; the three together are over 120 KiB.
  const std::string item = "\"" + std::string(50 * 1024, 'x') + "\"";
  for (const TaskSpec& spec : std::vector<TaskSpec>(executor_.submitted)) {
    std::filesystem::create_directories(std::filesystem::path(spec.output_path).parent_path());
    std::ofstream(spec.output_path) << item;
    executor_.Start(spec);
    executor_.Finish(spec.key, 0);
  }
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 4u);
  const TaskSpec& down = executor_.submitted[3];
  EXPECT_EQ(down.env.count("NIGHTSHIFT_INPUT_UP"), 0u);
  const std::string path = down.env.at("NIGHTSHIFT_INPUT_UP_FILE");
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "[" + item + "," + item + "," + item + "]");
  // The key was computed in the pass that queued the try, before the file was written.
  auto tries = store_->ListTries(Ti(run->id, "down").id);
  ASSERT_EQ(tries->size(), 1u);
  EXPECT_TRUE((*tries)[0].cache_key.has_value());
  EXPECT_EQ(RunStateOf(run->id), RunState::kRunning);
}

TEST_F(SchedulerTest, RestartAdoptsRunningTriesAndNeverRerunsSuccess) {
  Dag dag;
  dag.dag_id = "crash";
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"})};
  AddDag(dag);
  Make();
  auto run = scheduler_->TriggerRun("crash", std::nullopt, std::nullopt, "{}");
  Pass();
  CompleteSubmitted();
  Pass();  // a succeeded, b queued and submitted
  ASSERT_EQ(executor_.submitted.size(), 2u);
  executor_.Start(executor_.submitted[1], 777);
  Pass();  // b running
  // The daemon dies; a new one starts on the same database.
  scheduler_.reset();
  FakeExecutor fresh;
  Scheduler restarted(options_, *store_, fresh, clock_, dags_);
  ASSERT_TRUE(restarted.Recover().ok());
  ASSERT_EQ(fresh.adopted.size(), 1u);
  EXPECT_EQ(fresh.adopted[0].key.task_id, "b");
  EXPECT_EQ(fresh.adopted[0].pid, 777);
  ASSERT_TRUE(restarted.RunPass().ok());
  EXPECT_TRUE(fresh.submitted.empty());  // a is not run again, b is followed, not restarted
  fresh.Finish(fresh.adopted[0].key, 0);
  ASSERT_TRUE(restarted.RunPass().ok());
  EXPECT_EQ(RunStateOf(run->id), RunState::kSuccess);
  EXPECT_EQ(Ti(run->id, "a").try_number, 1);
  EXPECT_EQ(Ti(run->id, "b").try_number, 1);
}

TEST_F(SchedulerTest, RestartDispatchesATryThatNeverStartedAgainAsTheSameTry) {
  Dag dag;
  dag.dag_id = "crash";
  dag.tasks = {MakeTask("a"), MakeTask("b")};
  AddDag(dag);
  Make();
  auto run = scheduler_->TriggerRun("crash", std::nullopt, std::nullopt, "{}");
  Pass();  // a and b queued and committed; the daemon dies before either process starts
  ASSERT_EQ(executor_.submitted.size(), 2u);
  scheduler_.reset();
  FakeExecutor fresh;
  Scheduler restarted(options_, *store_, fresh, clock_, dags_);
  ASSERT_TRUE(restarted.Recover().ok());
  ASSERT_EQ(fresh.adopted.size(), 2u);
  // The journal has no start for a: nothing ran. b's outcome is unknown: it failed.
  fresh.Lose(executor_.submitted[0].key, "never started");
  fresh.Lose(executor_.submitted[1].key, "the supervisor died; the try's outcome is unknown");
  ASSERT_TRUE(restarted.RunPass().ok());
  // a waits again and is dispatched by the usual rules, as try 1 again: it used nothing up.
  ASSERT_EQ(fresh.submitted.size(), 1u);
  EXPECT_EQ(fresh.submitted[0].key, executor_.submitted[0].key);
  EXPECT_EQ(fresh.submitted[0].log_path, executor_.submitted[0].log_path);
  TaskInstance a = Ti(run->id, "a");
  EXPECT_EQ(a.state, TaskState::kQueued);
  EXPECT_EQ(a.try_number, 1);
  EXPECT_EQ(a.max_tries, 1);
  auto tries = store_->ListTries(a.id);
  ASSERT_EQ(tries->size(), 1u);
  EXPECT_EQ((*tries)[0].try_number, 1);
  EXPECT_EQ((*tries)[0].state, TaskState::kQueued);
  EXPECT_EQ(Ti(run->id, "b").state, TaskState::kFailed);
  EXPECT_EQ(restarted.metrics().pool_used.at("default"), 1);
  fresh.Start(fresh.submitted[0]);
  fresh.Finish(fresh.submitted[0].key, 0);
  ASSERT_TRUE(restarted.RunPass().ok());
  EXPECT_EQ(Ti(run->id, "a").state, TaskState::kSuccess);
  EXPECT_EQ(Ti(run->id, "a").try_number, 1);
  EXPECT_EQ(store_->ListTries(a.id)->size(), 1u);
  EXPECT_EQ(RunStateOf(run->id), RunState::kFailed);
  EXPECT_EQ(restarted.ActiveTries(), 0u);
}

TEST_F(SchedulerTest, ATryThatNeverStartedWaitsWhileTheDaemonStops) {
  Dag dag;
  dag.dag_id = "crash";
  dag.tasks = {MakeTask("a")};
  AddDag(dag);
  Make();
  auto run = scheduler_->TriggerRun("crash", std::nullopt, std::nullopt, "{}");
  Pass();
  scheduler_.reset();
  FakeExecutor fresh;
  Scheduler restarted(options_, *store_, fresh, clock_, dags_);
  ASSERT_TRUE(restarted.Recover().ok());
  restarted.StopDispatching();
  fresh.Lose(executor_.submitted[0].key, "never started");
  ASSERT_TRUE(restarted.RunPass().ok());
  EXPECT_TRUE(fresh.submitted.empty());
  // Left for the next daemon to dispatch, as try 1.
  TaskInstance a = Ti(run->id, "a");
  EXPECT_EQ(a.state, TaskState::kScheduled);
  EXPECT_EQ(a.try_number, 0);
  EXPECT_TRUE(store_->ListTries(a.id)->empty());
  EXPECT_EQ(restarted.ActiveTries(), 0u);
}

TEST_F(SchedulerTest, EnvironmentCarriesParamsConfAndRunFacts) {
  Dag dag;
  dag.dag_id = "env";
  dag.timezone = "Europe/Berlin";
  dag.params = {{"region", "eu"}, {"limit", "100"}};
  dag.env = {{"LANG", "C.UTF-8"}};
  dag.tasks = {MakeTask("a")};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("env", "r1", T("2026-11-27T23:30:00Z"), R"({"region":"us","n":[1,2]})");
  ASSERT_TRUE(run.ok());
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 1u);
  const auto& env = executor_.submitted[0].env;
  EXPECT_EQ(env.at("NIGHTSHIFT_PARAM_REGION"), "us");
  EXPECT_EQ(env.at("NIGHTSHIFT_PARAM_LIMIT"), "100");
  EXPECT_EQ(env.at("NIGHTSHIFT_PARAM_N"), "[1,2]");
  EXPECT_EQ(env.at("NIGHTSHIFT_RUN_ID"), "r1");
  EXPECT_EQ(env.at("NIGHTSHIFT_DAG_ID"), "env");
  EXPECT_EQ(env.at("NIGHTSHIFT_TASK_ID"), "a");
  EXPECT_EQ(env.at("NIGHTSHIFT_TRY_NUMBER"), "1");
  EXPECT_EQ(env.at("NIGHTSHIFT_LOGICAL_DATE"), "2026-11-27T23:30:00Z");
  EXPECT_EQ(env.at("NIGHTSHIFT_DS"), "2026-11-28");  // the date in the DAG's time zone
  EXPECT_EQ(env.at("LANG"), "C.UTF-8");
  // conf never reaches the command string.
  EXPECT_EQ(executor_.submitted[0].command, "echo a");
  EXPECT_FALSE(s.TriggerRun("env", "r1", std::nullopt, "{}").ok());
  EXPECT_TRUE(s.TriggerRun("env", "r1", std::nullopt, "{}").status().IsAlreadyExists());
  EXPECT_TRUE(s.TriggerRun("env", "r2", std::nullopt, "[1]").status().IsInvalidArgument());
}

TEST_F(SchedulerTest, SchedulesCreateCatchupRunsAndRespectMaxActiveRuns) {
  options_.create_scheduled_runs = true;
  Dag dag;
  dag.dag_id = "daily";
  dag.schedule = "0 2 * * *";
  dag.start_date = T("2026-11-25T00:00:00Z");
  dag.catchup = true;
  dag.max_active_runs = 1;
  dag.tasks = {MakeTask("a")};
  AddDag(dag);
  Make();
  auto next = Pass();
  auto page = store_->ListRuns(RunQuery{});
  ASSERT_EQ(page->runs.size(), 3u);  // 25th, 26th, 27th; the 28th's interval ends tomorrow
  EXPECT_EQ(page->runs.back().run_id, "scheduled__2026-11-25T02:00:00Z");
  EXPECT_EQ(page->runs.back().state, RunState::kRunning);
  EXPECT_EQ(page->runs.front().state, RunState::kQueued);
  EXPECT_EQ(next, T("2026-11-29T02:00:00Z"));
  EXPECT_EQ(executor_.submitted.size(), 1u);
  EXPECT_EQ(executor_.submitted[0].env.at("NIGHTSHIFT_DS"), "2026-11-25");
}

TEST_F(SchedulerTest, ARunThatEndsMakesTheNextPassDueForItsQueuedSuccessor) {
  Dag dag;
  dag.dag_id = "one_at_a_time";
  dag.max_active_runs = 1;
  dag.tasks = {MakeTask("a")};
  AddDag(dag);
  Scheduler& s = Make();
  auto first = s.TriggerRun("one_at_a_time", "first", std::nullopt, "{}");
  auto second = s.TriggerRun("one_at_a_time", "second", std::nullopt, "{}");
  ASSERT_TRUE(first.ok() && second.ok());
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 1u);
  CompleteSubmitted();
  // The first run ends in this pass, after queued runs were looked at; no executor event will
  // come for the second, so the pass itself must say the next one is due at once.
  auto next = Pass();
  EXPECT_EQ(RunStateOf(first->id), RunState::kSuccess);
  EXPECT_EQ(RunStateOf(second->id), RunState::kQueued);
  EXPECT_EQ(next, clock_.Now());
  Pass();
  EXPECT_EQ(RunStateOf(second->id), RunState::kRunning);
  EXPECT_EQ(executor_.submitted.size(), 2u);
}

TEST_F(SchedulerTest, PausedDagsCreateNoRuns) {
  options_.create_scheduled_runs = true;
  Dag dag;
  dag.dag_id = "paused";
  dag.schedule = "@hourly";
  dag.start_date = T("2026-11-28T00:00:00Z");
  dag.tasks = {MakeTask("a")};
  AddDag(dag);
  ASSERT_TRUE(store_->SetPaused("paused", true).ok());
  Make();
  Pass();
  EXPECT_EQ(store_->ListRuns(RunQuery{})->total_entries, 0);
  ASSERT_TRUE(store_->SetPaused("paused", false).ok());
  Pass();
  EXPECT_EQ(store_->ListRuns(RunQuery{})->total_entries, 1);  // catchup off: the latest hour only
}

TEST_F(SchedulerTest, ClearedDownstreamWaitsForItsClearedUpstream) {
  Dag dag;
  dag.dag_id = "clear";
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"}), MakeTask("c", {"b"})};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("clear", "r", std::nullopt, "{}");
  for (int i = 0; i < 3; ++i) {
    Pass();
    CompleteSubmitted();
  }
  Pass();
  ASSERT_EQ(RunStateOf(run->id), RunState::kSuccess);
  ASSERT_TRUE(s.ClearTask("clear", "r", "a", /*downstream=*/true).ok());
  Pass();
  EXPECT_EQ(executor_.TaskIds(), (std::vector<std::string>{"a", "b", "c", "a"}));
  EXPECT_EQ(Ti(run->id, "b").state, TaskState::kScheduled);
  CompleteSubmitted();
  Pass();
  EXPECT_EQ(executor_.TaskIds(), (std::vector<std::string>{"a", "b", "c", "a", "b"}));
  CompleteSubmitted();
  Pass();
  CompleteSubmitted();
  Pass();
  EXPECT_EQ(RunStateOf(run->id), RunState::kSuccess);
  EXPECT_EQ(Ti(run->id, "c").try_number, 2);
}

// Writes what a try "wrote" to $NIGHTSHIFT_OUTPUT, as the real task would.
void WriteOutput(const TaskSpec& spec, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(spec.output_path).parent_path());
  std::ofstream(spec.output_path) << text;
}

TEST_F(SchedulerTest, ItemsAndRangesMakeOneInstanceEach) {
  Dag dag;
  dag.dag_id = "mapped";
  Task items = MakeTask("items");
  items.map.kind = MapSpec::Kind::kItems;
  items.map.items = {"eu", "us"};
  Task chunks = MakeTask("chunks");
  chunks.map.kind = MapSpec::Kind::kRange;
  chunks.map.range = 10;
  chunks.map.chunk = 4;
  Task sum = MakeTask("sum", {"chunks"});
  dag.tasks = {items, chunks, sum};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("mapped", std::nullopt, std::nullopt, "{}");
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 5u);
  EXPECT_EQ(executor_.submitted[0].env.at("NIGHTSHIFT_MAP_ITEM"), "eu");
  EXPECT_EQ(executor_.submitted[1].env.at("NIGHTSHIFT_MAP_ITEM"), "us");
  EXPECT_EQ(executor_.submitted[1].env.at("NIGHTSHIFT_MAP_INDEX"), "1");
  EXPECT_EQ(executor_.submitted[4].env.at("NIGHTSHIFT_CHUNK_START"), "8");
  EXPECT_EQ(executor_.submitted[4].env.at("NIGHTSHIFT_CHUNK_END"), "10");
  EXPECT_NE(executor_.submitted[2].log_path, executor_.submitted[3].log_path);
  for (int i = 2; i < 5; ++i) WriteOutput(executor_.submitted[i], std::to_string(i * 10));
  CompleteSubmitted();
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 6u);
  // The downstream sees the mapped upstream's outputs as one array in map order.
  EXPECT_EQ(executor_.submitted[5].env.at("NIGHTSHIFT_INPUT_CHUNKS"), "[20,30,40]");
}

TEST_F(SchedulerTest, TriggerRulesApplyOverAllMappedInstances) {
  Dag dag;
  dag.dag_id = "mapfail";
  Task items = MakeTask("m");
  items.map.kind = MapSpec::Kind::kItems;
  items.map.items = {"a", "b", "c"};
  Task after = MakeTask("after", {"m"});
  Task anyway = MakeTask("anyway", {"m"});
  anyway.trigger_rule = TriggerRule::kAllDone;
  dag.tasks = {items, after, anyway};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("mapfail", std::nullopt, std::nullopt, "{}");
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 3u);
  executor_.Start(executor_.submitted[0]);
  executor_.Finish(executor_.submitted[0].key, 0);
  executor_.Start(executor_.submitted[1]);
  executor_.Finish(executor_.submitted[1].key, 0);
  Pass();
  EXPECT_EQ(executor_.submitted.size(), 3u);  // one instance still running: both wait
  executor_.Start(executor_.submitted[2]);
  executor_.Finish(executor_.submitted[2].key, 1);
  Pass();
  EXPECT_EQ(Ti(run->id, "after").state, TaskState::kUpstreamFailed);
  ASSERT_EQ(executor_.submitted.size(), 4u);
  EXPECT_EQ(executor_.submitted[3].key.task_id, "anyway");
}

class FromMapTest : public SchedulerTest {
 protected:
  // list -> each (map from list) -> reduce (none_failed)
  int64_t StartWithListOutput(const std::string& output) {
    Dag dag;
    dag.dag_id = "from";
    Task each = MakeTask("each", {"list"});
    each.map.kind = MapSpec::Kind::kFrom;
    each.map.from = "list";
    Task reduce = MakeTask("reduce", {"each"});
    reduce.trigger_rule = TriggerRule::kNoneFailed;
    dag.tasks = {MakeTask("list"), each, reduce};
    AddDag(dag);
    Scheduler& s = Make();
    auto run = s.TriggerRun("from", std::nullopt, std::nullopt, "{}");
    Pass();
    EXPECT_EQ(executor_.submitted.size(), 1u);
    if (!output.empty()) WriteOutput(executor_.submitted[0], output);
    CompleteSubmitted();
    Pass();
    return run->id;
  }
  std::vector<TaskInstance> Instances(int64_t run_pk, const std::string& task_id) {
    std::vector<TaskInstance> out;
    auto all = store_->ListTaskInstances(run_pk);  // kept alive for the loop below
    for (const TaskInstance& ti : *all) {
      if (ti.task_id == task_id) out.push_back(ti);
    }
    return out;
  }
};

TEST_F(FromMapTest, ExpandsOverTheUpstreamsArray) {
  int64_t run = StartWithListOutput(R"(["a.csv", "b.csv", "c.csv"])");
  ASSERT_EQ(executor_.submitted.size(), 4u);
  EXPECT_EQ(executor_.submitted[1].env.at("NIGHTSHIFT_MAP_ITEM"), "a.csv");
  EXPECT_EQ(executor_.submitted[3].env.at("NIGHTSHIFT_MAP_ITEM"), "c.csv");
  EXPECT_EQ(executor_.submitted[3].env.at("NIGHTSHIFT_INPUT_LIST"), R"(["a.csv","b.csv","c.csv"])");
  auto each = Instances(run, "each");
  ASSERT_EQ(each.size(), 3u);
  EXPECT_EQ(each[0].map_index, 0);
  EXPECT_EQ(each[2].map_index, 2);
  CompleteSubmitted();
  Pass();
  ASSERT_EQ(executor_.submitted.size(), 5u);
  CompleteSubmitted();
  Pass();
  EXPECT_EQ(RunStateOf(run), RunState::kSuccess);
}

TEST_F(FromMapTest, OneItem) {
  int64_t run = StartWithListOutput(R"([42])");
  ASSERT_EQ(executor_.submitted.size(), 2u);
  EXPECT_EQ(executor_.submitted[1].env.at("NIGHTSHIFT_MAP_ITEM"), "42");
  EXPECT_EQ(Instances(run, "each").size(), 1u);
}

TEST_F(FromMapTest, AnEmptyListSkipsTheMappedTaskAndNoneFailedStillRuns) {
  int64_t run = StartWithListOutput("[]");
  auto each = Instances(run, "each");
  ASSERT_EQ(each.size(), 1u);
  EXPECT_EQ(each[0].state, TaskState::kSkipped);
  ASSERT_EQ(executor_.submitted.size(), 2u);
  EXPECT_EQ(executor_.submitted[1].key.task_id, "reduce");
}

TEST_F(FromMapTest, ANonArrayOutputFailsTheMappedTaskWithAReason) {
  int64_t run = StartWithListOutput(R"({"files": 3})");
  auto each = Instances(run, "each");
  ASSERT_EQ(each.size(), 1u);
  EXPECT_EQ(each[0].state, TaskState::kFailed);
  EXPECT_EQ(each[0].waiting_reason, "map from list: its output must be a JSON array, got object");
  Pass();
  EXPECT_EQ(Ti(run, "reduce").state, TaskState::kUpstreamFailed);
}

TEST_F(FromMapTest, NoOutputAtAllFailsTheMappedTask) {
  int64_t run = StartWithListOutput("");
  EXPECT_EQ(Instances(run, "each")[0].waiting_reason, "map from list: it wrote no output");
}

TEST_F(SchedulerTest, OutputsMustBeJsonAndAtMost64KiB) {
  Dag dag;
  dag.dag_id = "out";
  Task t = MakeTask("t");
  t.retries = 2;
  t.retry_delay = std::chrono::seconds(0);
  dag.tasks = {t};
  AddDag(dag);
  Scheduler& s = Make();
  auto run = s.TriggerRun("out", std::nullopt, std::nullopt, "{}");
  Pass();
  WriteOutput(executor_.submitted[0], "{not json");
  CompleteSubmitted();
  Pass();
  auto tries = *store_->ListTries(Ti(run->id, "t").id);
  EXPECT_EQ(tries[0].state, TaskState::kFailed);
  EXPECT_TRUE(tries[0].reason->starts_with("output is not valid JSON")) << *tries[0].reason;
  ASSERT_EQ(executor_.submitted.size(), 2u);
  WriteOutput(executor_.submitted[1], "\"" + std::string(64 * 1024, 'x') + "\"");
  CompleteSubmitted();
  Pass();
  tries = *store_->ListTries(Ti(run->id, "t").id);
  EXPECT_EQ(tries[1].reason, "output is 65538 bytes; the limit is 64 KiB");
  ASSERT_EQ(executor_.submitted.size(), 3u);
  WriteOutput(executor_.submitted[2], R"({"rows": 12})");
  CompleteSubmitted();
  Pass();
  EXPECT_EQ(Ti(run->id, "t").output, R"({"rows":12})");
  EXPECT_EQ(Ti(run->id, "t").state, TaskState::kSuccess);
}

}  // namespace
}  // namespace nightshift

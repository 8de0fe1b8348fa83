// Standbys (scheduler/standbys.cc, docs/adr/0006): the scheduler hands the executor a try ahead
// of time that waits in the slot of a running one and starts the moment that one ends. Driven
// like scheduler_test.cc (scheduler_fixture.h): the real Scheduler, a real SQLite file, a fake
// executor and clock.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>

#include "scheduler/scheduler.h"
#include "tests/unit/scheduler/scheduler_fixture.h"

namespace nightshift {
namespace {

using std::chrono::seconds;

using testing_fakes::FakeClock;
using testing_fakes::FakeExecutor;
using testing_fakes::MakeTask;

// The waiting reason of a standby, as the scheduler words it.
std::string InSlotOf(const TaskInstanceKey& holder, bool needs_success) {
  return "starts in the slot of " + holder.ToString() +
         (needs_success ? " as soon as that succeeds" : " as soon as that ends");
}

bool IsStandbyReason(const std::optional<std::string>& reason) {
  return reason && reason->starts_with("starts in the slot of ");
}

// The executor as the supervisor runs it (executor/supervisor.cc), over a FakeExecutor: a try
// without `after` starts at once; a standby waits on its holder (running, or itself a standby)
// and starts in its slot as that one ends, or is declined, with whatever waits on it, before
// the holder's end is reported.
class SupervisorModel {
 public:
  explicit SupervisorModel(FakeExecutor& executor) : executor_(executor) {}

  // Each try takes this long on `clock` (advanced as it ends). How long tries take decides how
  // deep standbys may queue (Scheduler::MaxStandbyDepth); by default they take no time.
  void TriesTake(FakeClock& clock, std::chrono::milliseconds duration) {
    clock_ = &clock;
    try_duration_ = duration;
  }

  // Takes what was submitted since the last call.
  void Take() {
    for (; taken_ < executor_.submitted.size(); ++taken_) {
      const TaskSpec& spec = executor_.submitted[taken_];
      if (!spec.after) {
        executor_.Start(spec);
        running_.push_back(spec.key);
        continue;
      }
      // The supervisor declines a standby whose holder is gone; the scheduler should send none.
      EXPECT_TRUE(Running(*spec.after) || Waiting(*spec.after))
          << spec.key.ToString() << " waits on " << spec.after->ToString() << ", which is gone";
      EXPECT_FALSE(waiting_.count(*spec.after)) << "a second standby for " << spec.after->ToString();
      waiting_[*spec.after] = spec;
    }
  }
  // The running try `key` ends: its standby starts in its slot, or is declined first.
  void End(const TaskInstanceKey& key, int exit_code = 0) {
    auto it = std::find(running_.begin(), running_.end(), key);
    ASSERT_NE(it, running_.end()) << key.ToString() << " does not run";
    running_.erase(it);
    if (clock_) clock_->now += try_duration_;
    auto standby = waiting_.find(key);
    if (standby == waiting_.end()) {
      executor_.Finish(key, exit_code);
      return;
    }
    if (standby->second.after_success && exit_code != 0) {
      Decline(standby->second.key, "the try it waited on did not succeed");
      executor_.Finish(key, exit_code);
      return;
    }
    const TaskSpec next = standby->second;
    waiting_.erase(standby);
    executor_.HandOff(key, next, exit_code);
    running_.push_back(next.key);
  }
  // Declines the standby `key`, then what waited on it. (By value: it may name a map entry.)
  void Decline(const TaskInstanceKey key, const std::string& reason) {
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
      if (it->second.key != key) continue;
      waiting_.erase(it);
      executor_.Decline(key, reason);
      if (auto next = waiting_.find(key); next != waiting_.end()) {
        Decline(next->second.key, "the standby it waited on did not start");
      }
      return;
    }
    ADD_FAILURE() << key.ToString() << " is no waiting standby";
  }
  bool Running(const TaskInstanceKey& key) const {
    return std::find(running_.begin(), running_.end(), key) != running_.end();
  }
  bool Waiting(const TaskInstanceKey& key) const {
    return std::any_of(waiting_.begin(), waiting_.end(), [&](const auto& w) { return w.second.key == key; });
  }
  bool WaitingTask(const std::string& task_id) const {
    return std::any_of(waiting_.begin(), waiting_.end(), [&](const auto& w) { return w.second.key.task_id == task_id; });
  }
  // How many tries wait, one behind the other, in the slot of a running try, at most.
  int MaxDepth() const {
    int max = 0;
    for (const TaskInstanceKey& key : running_) {
      int depth = 0;
      for (auto it = waiting_.find(key); it != waiting_.end(); it = waiting_.find(it->second.key)) ++depth;
      max = std::max(max, depth);
    }
    return max;
  }
  const std::deque<TaskInstanceKey>& running() const { return running_; }
  bool idle() const { return running_.empty() && waiting_.empty(); }

 private:
  FakeExecutor& executor_;
  FakeClock* clock_ = nullptr;
  std::chrono::milliseconds try_duration_{0};
  size_t taken_ = 0;
  std::deque<TaskInstanceKey> running_;           // in start order
  std::map<TaskInstanceKey, TaskSpec> waiting_;   // standbys by the key they wait on
};

class StandbyTest : public testing_fakes::SchedulerFixture {
 protected:
  void SetUp() override {
    SchedulerFixture::SetUp();
    executor_.takes_standbys = true;
  }

  int64_t Trigger(const std::string& dag_id) {
    auto run = scheduler_->TriggerRun(dag_id, "r", std::nullopt, "{}");
    EXPECT_TRUE(run.ok()) << run.status().ToString();
    return run.ok() ? run->id : 0;
  }
  std::vector<TaskTry> Tries(int64_t run_pk, const std::string& task_id) {
    auto tries = store_->ListTries(Ti(run_pk, task_id).id);
    EXPECT_TRUE(tries.ok());
    return tries.ok() ? *tries : std::vector<TaskTry>{};
  }
  std::vector<TaskInstance> Instances(int64_t run_pk) {
    auto tis = store_->ListTaskInstances(run_pk);
    EXPECT_TRUE(tis.ok());
    return tis.ok() ? *tis : std::vector<TaskInstance>{};
  }
  // Queued and running tries in the default pool, as the scheduler counts them after a pass.
  int PoolUsed() const {
    auto it = scheduler_->metrics().pool_used.find("default");
    return it == scheduler_->metrics().pool_used.end() ? 0 : it->second;
  }
  // The specs submitted since the last call, "task" or "task after holder-task".
  std::vector<std::string> NewSubmissions() {
    std::vector<std::string> out;
    for (; seen_ < executor_.submitted.size(); ++seen_) {
      const TaskSpec& s = executor_.submitted[seen_];
      out.push_back(s.key.task_id + (s.after ? " after " + s.after->task_id : ""));
    }
    return out;
  }
  const TaskSpec& Submitted(const std::string& task_id, int try_number = 1) {
    for (auto it = executor_.submitted.rbegin(); it != executor_.submitted.rend(); ++it) {
      if (it->key.task_id == task_id && it->key.try_number == try_number) return *it;
    }
    ADD_FAILURE() << task_id << "#" << try_number << " was not submitted";
    static const TaskSpec kNone;
    return kNone;
  }

  // The scheduler's count of tries holding a slot is what really runs, and never deeper than
  // `max_depth` standbys per slot.
  void CheckAgainst(const SupervisorModel& model, int64_t run_pk, int parallelism, int max_depth = 2) {
    EXPECT_LE(PoolUsed(), parallelism);
    EXPECT_EQ(static_cast<size_t>(PoolUsed()), model.running().size());
    EXPECT_LE(model.MaxDepth(), max_depth);
    int holding = 0;
    for (const TaskInstance& ti : Instances(run_pk)) {
      const bool active = ti.state == TaskState::kQueued || ti.state == TaskState::kRunning;
      if (active && !IsStandbyReason(ti.waiting_reason)) ++holding;
      if (ti.state == TaskState::kQueued && IsStandbyReason(ti.waiting_reason)) {
        EXPECT_TRUE(model.WaitingTask(ti.task_id))
            << ti.task_id << " says it waits in a slot, but the executor has no such standby";
      }
    }
    EXPECT_EQ(holding, PoolUsed());
  }

  // root -> m1..mN, and a sink after them all if `sink`.
  static Dag WideDag(int n, bool sink) {
    Dag dag;
    dag.dag_id = "wide";
    dag.tasks.push_back(MakeTask("root"));
    std::vector<std::string> middle;
    for (int i = 1; i <= n; ++i) {
      middle.push_back("m" + std::to_string(i));
      dag.tasks.push_back(MakeTask(middle.back(), {"root"}));
    }
    if (sink) dag.tasks.push_back(MakeTask("sink", middle));
    return dag;
  }

  // Ends the oldest running try, then the next, until the run is over, checking the scheduler
  // against the model after each; returns the most tries that ran at once.
  size_t EndEachInTurn(SupervisorModel& model, int64_t run, int parallelism, int max_depth = 2) {
    size_t max_running = 0;
    for (int step = 0; step < 40 && scheduler_->IsActive(run); ++step) {
      Pass();  // the starts just reported
      if (model.running().empty()) break;
      const TaskInstanceKey ending = model.running().front();
      model.End(ending);
      Pass();
      model.Take();
      max_running = std::max(max_running, model.running().size());
      SCOPED_TRACE("after " + ending.ToString() + " ended");
      CheckAgainst(model, run, parallelism, max_depth);
    }
    Pass();
    return max_running;
  }

  // Short tries get a third standby per slot, very short ones a fourth: the supervisor then
  // reports three or four tries at once. A run whose tries take longer keeps two
  // (StandbysDoNotCountAgainstParallelismUntilTheyTakeASlot), so a task that becomes ready
  // later with a higher priority_weight waits behind no more than before.
  // Runs root -> m1..m12 at parallelism 2 with tries that take `took`, and returns what the
  // pass after root's end (which tells the run how long its tries take) submitted; then ends
  // each try in turn, never finding more than `depth` standbys in a slot.
  std::vector<std::string> SubmittedOnceTriesTake(std::chrono::milliseconds took, int depth) {
    options_.parallelism = 2;
    AddDag(WideDag(12, /*sink=*/false));
    Make();
    const int64_t run = Trigger("wide");
    SupervisorModel model(executor_);
    model.TriesTake(clock_, took);

    Pass();  // no try has ended yet: two deep at most
    EXPECT_EQ(NewSubmissions(), (std::vector<std::string>{"root", "m1 after root"}));
    model.Take();
    Pass();
    model.End(Submitted("root").key);
    Pass();
    const std::vector<std::string> submitted = NewSubmissions();
    model.Take();
    EXPECT_EQ(model.MaxDepth(), depth);
    CheckAgainst(model, run, 2, depth);

    EndEachInTurn(model, run, 2, depth);
    EXPECT_EQ(RunStateOf(run), RunState::kSuccess);
    EXPECT_EQ(scheduler_->metrics().standbys_started, scheduler_->metrics().standbys_queued);
    return submitted;
  }

  size_t seen_ = 0;
};

using Strings = std::vector<std::string>;

TEST_F(StandbyTest, AChainWaitsTwoDeepInTheSlotOfItsFirstTry) {
  Dag dag;
  dag.dag_id = "chain";
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"}), MakeTask("c", {"b"}), MakeTask("d", {"c"})};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("chain");
  Pass();
  // a, then b in its slot, then c in b's: two deep, so d waits for the scheduler.
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a", "c after b"}));
  const TaskSpec a = Submitted("a");
  const TaskSpec b = Submitted("b");
  const TaskSpec c = Submitted("c");
  EXPECT_FALSE(a.after.has_value());
  EXPECT_EQ(b.after, a.key);
  EXPECT_TRUE(b.after_success);
  EXPECT_EQ(c.after, b.key);
  EXPECT_TRUE(c.after_success);
  EXPECT_EQ(b.key.try_number, 1);
  // The executor was asked about the holders, with their keys.
  EXPECT_NE(std::find(executor_.standby_asked.begin(), executor_.standby_asked.end(), a.key),
            executor_.standby_asked.end());
  EXPECT_NE(std::find(executor_.standby_asked.begin(), executor_.standby_asked.end(), b.key),
            executor_.standby_asked.end());
  // A standby is queued with its try recorded before it is sent, like any try, and says why it
  // has not started.
  EXPECT_EQ(Ti(run, "b").state, TaskState::kQueued);
  EXPECT_EQ(Ti(run, "b").waiting_reason, InSlotOf(a.key, true));
  EXPECT_EQ(Ti(run, "c").state, TaskState::kQueued);
  EXPECT_EQ(Ti(run, "c").waiting_reason, InSlotOf(b.key, true));
  EXPECT_EQ(Tries(run, "b").size(), 1u);
  EXPECT_EQ(Ti(run, "d").state, TaskState::kScheduled);
  EXPECT_EQ(PoolUsed(), 1);  // a alone holds a slot
  EXPECT_EQ(scheduler_->metrics().standbys_queued, 2u);

  executor_.Start(a);
  Pass();
  EXPECT_TRUE(NewSubmissions().empty());
  executor_.HandOff(a.key, b);
  Pass();
  EXPECT_EQ(Ti(run, "a").state, TaskState::kSuccess);
  EXPECT_EQ(Ti(run, "b").state, TaskState::kRunning);
  EXPECT_EQ(Ti(run, "b").waiting_reason, std::nullopt);
  // c moved up one place; d may wait behind it now.
  ASSERT_EQ(NewSubmissions(), (Strings{"d after c"}));
  const TaskSpec d = Submitted("d");
  EXPECT_TRUE(d.after_success);
  EXPECT_EQ(Ti(run, "d").waiting_reason, InSlotOf(c.key, true));
  EXPECT_EQ(PoolUsed(), 1);
  EXPECT_EQ(scheduler_->metrics().standbys_started, 1u);

  executor_.HandOff(b.key, c);
  Pass();
  executor_.HandOff(c.key, d);
  Pass();
  executor_.Finish(d.key, 0);
  Pass();
  EXPECT_TRUE(NewSubmissions().empty());
  EXPECT_EQ(RunStateOf(run), RunState::kSuccess);
  for (const char* task : {"a", "b", "c", "d"}) {
    EXPECT_EQ(Ti(run, task).state, TaskState::kSuccess) << task;
    EXPECT_EQ(Ti(run, task).try_number, 1) << task;
    auto tries = Tries(run, task);
    ASSERT_EQ(tries.size(), 1u) << task;
    EXPECT_EQ(tries[0].state, TaskState::kSuccess) << task;
  }
  EXPECT_EQ(scheduler_->metrics().standbys_queued, 3u);
  EXPECT_EQ(scheduler_->metrics().standbys_started, 3u);
  EXPECT_EQ(scheduler_->metrics().standbys_declined, 0u);
  EXPECT_EQ(scheduler_->ActiveTries(), 0u);
  EXPECT_EQ(PoolUsed(), 0);
}

TEST_F(StandbyTest, AHandedOverStandbyHoldsTheSlotBeforeItsStartIsReported) {
  options_.parallelism = 1;
  options_.pools = {{"default", 128}, {"other", 128}};
  Dag dag;
  dag.dag_id = "handover";
  Task x = MakeTask("x");
  x.pool = "other";  // may not wait in a's slot, but counts against parallelism
  x.priority_weight = 0;
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"}), x};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("handover");
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a"}));
  EXPECT_EQ(Ti(run, "x").waiting_reason, "parallelism reached (1/1)");
  executor_.Start(Submitted("a"));
  // a ends and b takes its slot; b's own start is reported later.
  executor_.Finish(Submitted("a").key, 0, /*handed_off=*/true);
  Pass();
  EXPECT_EQ(Ti(run, "a").state, TaskState::kSuccess);
  EXPECT_EQ(Ti(run, "b").state, TaskState::kQueued);
  EXPECT_TRUE(NewSubmissions().empty()) << "x must not start: b holds the only slot";
  EXPECT_EQ(PoolUsed(), 1);
  executor_.Start(Submitted("b"));
  Pass();
  EXPECT_EQ(Ti(run, "b").state, TaskState::kRunning);
  EXPECT_EQ(Ti(run, "b").waiting_reason, std::nullopt);
  EXPECT_TRUE(NewSubmissions().empty());
  executor_.Finish(Submitted("b").key, 0);
  Pass();
  EXPECT_EQ(NewSubmissions(), (Strings{"x"}));
}

TEST_F(StandbyTest, AFailedHolderLeavesItsDeclinedStandbyUpstreamFailedWithoutATry) {
  Dag dag;
  dag.dag_id = "fails";
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"})};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("fails");
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a"}));
  executor_.Start(Submitted("a"));
  Pass();
  // The supervisor declines b as it sees a fail, and says so before it reports a's end.
  executor_.Decline(Submitted("b").key);
  executor_.Finish(Submitted("a").key, 1);
  Pass();
  EXPECT_TRUE(NewSubmissions().empty());
  EXPECT_EQ(Ti(run, "a").state, TaskState::kFailed);
  TaskInstance b = Ti(run, "b");
  EXPECT_EQ(b.state, TaskState::kUpstreamFailed);
  EXPECT_EQ(b.try_number, 0);
  EXPECT_EQ(b.waiting_reason, std::nullopt);
  EXPECT_TRUE(Tries(run, "b").empty());  // it never started: its try row is gone
  EXPECT_EQ(RunStateOf(run), RunState::kFailed);
  EXPECT_EQ(scheduler_->metrics().standbys_declined, 1u);
  EXPECT_EQ(scheduler_->metrics().standbys_started, 0u);
  EXPECT_EQ(scheduler_->ActiveTries(), 0u);
  EXPECT_EQ(PoolUsed(), 0);
}

TEST_F(StandbyTest, ADeclineReportedBeforeItsHoldersEndLeavesTheHolderCountedAlone) {
  // The supervisor declines b as a fails and says so before it reports a's end: the two may
  // reach the scheduler in different passes.
  options_.parallelism = 1;
  options_.pools = {{"default", 128}, {"other", 128}};
  Dag dag;
  dag.dag_id = "split";
  Task x = MakeTask("x");
  x.pool = "other";
  x.priority_weight = 0;
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"}), x};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("split");
  SupervisorModel model(executor_);
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a"}));
  model.Take();
  Pass();
  model.Decline(Submitted("b").key, "the try it waited on did not succeed");
  Pass();
  model.Take();  // b may be sent again to wait on a; a's end will decline it again
  // b waits for a again; a still holds the only slot.
  EXPECT_NE(Ti(run, "b").state, TaskState::kRunning);
  EXPECT_TRUE(Tries(run, "b").empty() || model.Waiting(Submitted("b").key));
  EXPECT_EQ(PoolUsed(), 1);
  model.End(Submitted("a").key, 1);
  Pass();
  model.Take();
  EXPECT_EQ(Ti(run, "a").state, TaskState::kFailed);
  EXPECT_EQ(Ti(run, "b").state, TaskState::kUpstreamFailed);
  EXPECT_TRUE(Tries(run, "b").empty());
  EXPECT_EQ(Submitted("x").key.try_number, 1);  // a's slot is free, and only a's
  EXPECT_EQ(PoolUsed(), 0);
  EXPECT_EQ(scheduler_->metrics().pool_used.at("other"), 1);
}

TEST_F(StandbyTest, ADeclinedStandbyWaitsForItsUpstreamsRetryAndKeepsItsTryNumber) {
  Dag dag;
  dag.dag_id = "retry";
  Task a = MakeTask("a");
  a.retries = 1;
  a.retry_delay = seconds(10);
  dag.tasks = {a, MakeTask("b", {"a"})};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("retry");
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a"}));
  const TaskSpec a1 = Submitted("a", 1);
  executor_.Start(a1);
  executor_.Decline(Submitted("b").key);
  executor_.Finish(a1.key, 1);
  Pass();
  EXPECT_EQ(Ti(run, "a").state, TaskState::kUpForRetry);
  EXPECT_EQ(Ti(run, "b").state, TaskState::kScheduled);
  EXPECT_EQ(Ti(run, "b").try_number, 0);
  EXPECT_FALSE(IsStandbyReason(Ti(run, "b").waiting_reason));
  EXPECT_TRUE(Tries(run, "b").empty());
  EXPECT_TRUE(NewSubmissions().empty());
  EXPECT_EQ(PoolUsed(), 0);

  clock_.now += seconds(10);
  Pass();
  // a's second try, and b in its slot again, as try 1 again.
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a"}));
  const TaskSpec a2 = Submitted("a", 2);
  const TaskSpec b1 = Submitted("b", 1);
  EXPECT_EQ(b1.after, a2.key);
  EXPECT_EQ(b1.env.at("NIGHTSHIFT_TRY_NUMBER"), "1");
  auto tries = Tries(run, "b");
  ASSERT_EQ(tries.size(), 1u);
  EXPECT_EQ(tries[0].try_number, 1);
  EXPECT_EQ(tries[0].state, TaskState::kQueued);
  EXPECT_EQ(Ti(run, "b").waiting_reason, InSlotOf(a2.key, true));

  executor_.Start(a2);
  executor_.HandOff(a2.key, b1);
  Pass();
  executor_.Finish(b1.key, 0);
  Pass();
  EXPECT_EQ(RunStateOf(run), RunState::kSuccess);
  EXPECT_EQ(Ti(run, "a").try_number, 2);
  EXPECT_EQ(Ti(run, "b").try_number, 1);
  EXPECT_EQ(Tries(run, "b").size(), 1u);
  EXPECT_EQ(scheduler_->metrics().standbys_queued, 2u);
  EXPECT_EQ(scheduler_->metrics().standbys_declined, 1u);
  EXPECT_EQ(scheduler_->metrics().standbys_started, 1u);
}

TEST_F(StandbyTest, ADownstreamDeclinedForAnOutputIsDispatchedAtOnceWithThatOutput) {
  // The supervisor does not start a downstream standby when its holder wrote an output: the
  // scheduler reads it first, and the downstream then starts the usual way, as the same try.
  Dag dag;
  dag.dag_id = "output";
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"})};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("output");
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a"}));
  const TaskSpec a = Submitted("a");
  EXPECT_EQ(Submitted("b").env.count("NIGHTSHIFT_INPUT_A"), 0u);
  std::filesystem::create_directories(std::filesystem::path(a.output_path).parent_path());
  std::ofstream(a.output_path) << R"({"rows": 3})";
  executor_.Start(a);
  executor_.Decline(Submitted("b").key, "the try it waited on wrote an output, which the scheduler reads first");
  executor_.Finish(a.key, 0);
  Pass();
  EXPECT_EQ(Ti(run, "a").state, TaskState::kSuccess);
  ASSERT_EQ(NewSubmissions(), (Strings{"b"}));
  const TaskSpec b = Submitted("b");
  EXPECT_EQ(b.key.try_number, 1);
  EXPECT_EQ(b.env.at("NIGHTSHIFT_INPUT_A"), R"({"rows":3})");
  EXPECT_EQ(Ti(run, "b").state, TaskState::kQueued);
  EXPECT_EQ(Ti(run, "b").waiting_reason, std::nullopt);
  auto tries = Tries(run, "b");
  ASSERT_EQ(tries.size(), 1u);
  EXPECT_EQ(tries[0].try_number, 1);
  executor_.Start(b);
  executor_.Finish(b.key, 0);
  Pass();
  EXPECT_EQ(RunStateOf(run), RunState::kSuccess);
  EXPECT_EQ(Ti(run, "b").try_number, 1);
}

// root -> m1..m8 -> sink with parallelism 2, the executor modelled as the supervisor runs it.
// At every step the scheduler's count must be what really runs, and never more than 2.
TEST_F(StandbyTest, StandbysDoNotCountAgainstParallelismUntilTheyTakeASlot) {
  options_.parallelism = 2;
  AddDag(WideDag(8, /*sink=*/true));
  Make();
  const int64_t run = Trigger("wide");
  SupervisorModel model(executor_);
  model.TriesTake(clock_, std::chrono::minutes(1));

  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"root", "m1 after root"}));
  EXPECT_TRUE(Submitted("m1").after_success);
  model.Take();
  CheckAgainst(model, run, 2);
  Pass();  // root's start

  // root ends and m1 takes its slot: one more try may start (m2); m3..m6 wait two deep in the
  // two slots, in queue order; m7 and m8 wait for the scheduler.
  model.End(Submitted("root").key);
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"m2", "m3 after m1", "m4 after m2", "m5 after m3", "m6 after m4"}));
  EXPECT_FALSE(Submitted("m3").after_success);  // the queue's head starts however its holder ends
  EXPECT_EQ(Ti(run, "m3").waiting_reason, InSlotOf(Submitted("m1").key, false));
  EXPECT_EQ(Ti(run, "m6").waiting_reason, InSlotOf(Submitted("m4").key, false));
  EXPECT_EQ(Ti(run, "m7").state, TaskState::kScheduled);
  EXPECT_EQ(Ti(run, "m7").waiting_reason, "parallelism reached (2/2)");
  model.Take();
  CheckAgainst(model, run, 2);
  EXPECT_EQ(PoolUsed(), 2);

  // From here on the oldest running try ends; it hands its slot over when it has a standby.
  EXPECT_EQ(EndEachInTurn(model, run, 2), 2u);
  EXPECT_TRUE(model.idle());
  EXPECT_EQ(RunStateOf(run), RunState::kSuccess);
  for (const TaskInstance& ti : Instances(run)) {
    EXPECT_EQ(ti.state, TaskState::kSuccess) << ti.task_id;
    EXPECT_EQ(ti.try_number, 1) << ti.task_id;
    EXPECT_EQ(store_->ListTries(ti.id)->size(), 1u) << ti.task_id;
  }
  EXPECT_GT(scheduler_->metrics().standbys_queued, 0u);
  EXPECT_EQ(scheduler_->metrics().standbys_started, scheduler_->metrics().standbys_queued);
  EXPECT_EQ(scheduler_->metrics().standbys_declined, 0u);
  EXPECT_EQ(scheduler_->ActiveTries(), 0u);
  EXPECT_EQ(PoolUsed(), 0);
}

TEST_F(StandbyTest, AThirdStandbyWaitsInASlotOnlyWhileTheRunsTriesAreShort) {
  EXPECT_EQ(SubmittedOnceTriesTake(std::chrono::milliseconds(10), 3),
            (Strings{"m2", "m3 after m1", "m4 after m2", "m5 after m3", "m6 after m4", "m7 after m5", "m8 after m6"}));
}

TEST_F(StandbyTest, AFourthStandbyWaitsInASlotWhileTheRunsTriesTakeUnderFiveMilliseconds) {
  EXPECT_EQ(SubmittedOnceTriesTake(std::chrono::milliseconds(2), 4),
            (Strings{"m2", "m3 after m1", "m4 after m2", "m5 after m3", "m6 after m4", "m7 after m5", "m8 after m6",
                     "m9 after m7", "m10 after m8"}));
}

TEST_F(StandbyTest, AHolderThatHandedOffToItsDownstreamSucceedsDespiteItsTimeout) {
  Dag dag;
  dag.dag_id = "timeout";
  Task a = MakeTask("a");
  a.execution_timeout = seconds(30);
  dag.tasks = {a, MakeTask("b", {"a"})};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("timeout");
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a"}));
  executor_.Start(Submitted("a"));
  Pass();
  clock_.now += seconds(30);
  Pass();
  ASSERT_EQ(executor_.cancelled, (std::vector<TaskInstanceKey>{Submitted("a").key}));
  // The supervisor saw a exit 0 and started b before the stop reached it.
  executor_.HandOff(Submitted("a").key, Submitted("b"));
  Pass();
  EXPECT_EQ(Ti(run, "a").state, TaskState::kSuccess);
  auto tries = Tries(run, "a");
  ASSERT_EQ(tries.size(), 1u);
  EXPECT_EQ(tries[0].state, TaskState::kSuccess);
  EXPECT_EQ(tries[0].reason, std::nullopt);
  EXPECT_EQ(Ti(run, "b").state, TaskState::kRunning);
  executor_.Finish(Submitted("b").key, 0);
  Pass();
  EXPECT_EQ(RunStateOf(run), RunState::kSuccess);
}

TEST_F(StandbyTest, ATimedOutHolderStillFailsWhenItsStandbyDidNotNeedItsSuccess) {
  // The queue's head starts in a slot however its holder ends: that it started says nothing
  // about the holder, which was stopped for its timeout and fails whatever it returned.
  options_.parallelism = 1;
  Dag dag;
  dag.dag_id = "timeout";
  Task a = MakeTask("a");
  a.execution_timeout = seconds(30);
  a.priority_weight = 2;
  dag.tasks = {a, MakeTask("x")};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("timeout");
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "x after a"}));
  EXPECT_FALSE(Submitted("x").after_success);
  executor_.Start(Submitted("a"));
  Pass();
  clock_.now += seconds(30);
  Pass();
  ASSERT_EQ(executor_.cancelled.size(), 1u);
  executor_.HandOff(Submitted("a").key, Submitted("x"), /*exit_code=*/0);
  Pass();
  EXPECT_EQ(Ti(run, "a").state, TaskState::kFailed);
  EXPECT_EQ(Tries(run, "a")[0].reason, "execution_timeout 30s exceeded");
  EXPECT_EQ(Ti(run, "x").state, TaskState::kRunning);
  EXPECT_EQ(PoolUsed(), 1);
}

TEST_F(StandbyTest, StopDispatchingWithdrawsTheStandbysStillWaiting) {
  Dag dag;
  dag.dag_id = "stop";
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"}), MakeTask("c", {"b"}), MakeTask("d", {"c"})};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("stop");
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a", "c after b"}));
  executor_.Start(Submitted("a"));
  executor_.HandOff(Submitted("a").key, Submitted("b"));
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"d after c"}));
  EXPECT_TRUE(executor_.withdrawn.empty());
  scheduler_->StopDispatching();
  // b holds a slot (it runs); c and d only wait for one.
  EXPECT_EQ(executor_.withdrawn, (std::vector<TaskInstanceKey>{Submitted("c").key, Submitted("d").key}));
  executor_.Decline(Submitted("c").key, "withdrawn before it started");
  executor_.Decline(Submitted("d").key, "the standby it waited on did not start");
  Pass();
  EXPECT_TRUE(NewSubmissions().empty());
  EXPECT_EQ(Ti(run, "c").state, TaskState::kScheduled);
  EXPECT_EQ(Ti(run, "d").state, TaskState::kScheduled);
  EXPECT_TRUE(Tries(run, "c").empty());
  EXPECT_TRUE(Tries(run, "d").empty());
  EXPECT_EQ(Ti(run, "c").try_number, 0);
  EXPECT_EQ(PoolUsed(), 1);
  executor_.Finish(Submitted("b").key, 0);
  Pass();
  EXPECT_TRUE(NewSubmissions().empty());  // nothing starts while shutting down
  EXPECT_EQ(Ti(run, "b").state, TaskState::kSuccess);
  EXPECT_EQ(Ti(run, "c").state, TaskState::kScheduled);
  EXPECT_EQ(RunStateOf(run), RunState::kRunning);
  EXPECT_EQ(scheduler_->ActiveTries(), 0u);
  EXPECT_EQ(PoolUsed(), 0);
  EXPECT_EQ(scheduler_->metrics().standbys_declined, 2u);
}

TEST_F(StandbyTest, AStandbyWaitingOnADeclinedOneIsNotCountedAsHoldingASlot) {
  // The supervisor declines c because b, which it waited on, was declined; the two events may
  // reach the scheduler in different passes. Between them c holds no slot: b never had one.
  Dag dag;
  dag.dag_id = "stop";
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"}), MakeTask("c", {"b"})};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("stop");
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a", "c after b"}));
  executor_.Start(Submitted("a"));
  Pass();
  scheduler_->StopDispatching();
  ASSERT_EQ(executor_.withdrawn, (std::vector<TaskInstanceKey>{Submitted("b").key, Submitted("c").key}));
  executor_.Decline(Submitted("b").key, "withdrawn before it started");
  Pass();
  EXPECT_EQ(Ti(run, "b").state, TaskState::kScheduled);
  EXPECT_EQ(Ti(run, "c").state, TaskState::kQueued);
  EXPECT_EQ(PoolUsed(), 1) << "only a runs";
  executor_.Decline(Submitted("c").key, "the standby it waited on did not start");
  Pass();
  EXPECT_EQ(Ti(run, "c").state, TaskState::kScheduled);
  EXPECT_EQ(PoolUsed(), 1);
  executor_.Finish(Submitted("a").key, 0);
  Pass();
  EXPECT_EQ(PoolUsed(), 0);
  EXPECT_EQ(scheduler_->ActiveTries(), 0u);
}

TEST_F(StandbyTest, AStandbyThatNeverStartedBeforeARestartWaitsAgainAsTheSameTry) {
  Dag dag;
  dag.dag_id = "crash";
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"})};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("crash");
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a"}));
  executor_.Start(Submitted("a"), 777);
  Pass();
  // The daemon dies: a runs on, b never started. A new daemon on the same database:
  scheduler_.reset();
  FakeExecutor fresh;
  Scheduler restarted(options_, *store_, fresh, clock_, dags_);
  ASSERT_TRUE(restarted.Recover().ok());
  ASSERT_EQ(fresh.adopted.size(), 2u);
  fresh.Lose(Submitted("b").key, "never started");
  ASSERT_TRUE(restarted.RunPass().ok());
  EXPECT_TRUE(fresh.submitted.empty());  // b's upstream still runs
  TaskInstance b = Ti(run, "b");
  EXPECT_EQ(b.state, TaskState::kScheduled);
  EXPECT_EQ(b.try_number, 0);
  EXPECT_EQ(b.waiting_reason, std::nullopt);
  EXPECT_TRUE(Tries(run, "b").empty());
  fresh.Finish(Submitted("a").key, 0);
  ASSERT_TRUE(restarted.RunPass().ok());
  ASSERT_EQ(fresh.submitted.size(), 1u);
  EXPECT_EQ(fresh.submitted[0].key, Submitted("b").key);  // try 1 again
  EXPECT_FALSE(fresh.submitted[0].after.has_value());
  auto tries = Tries(run, "b");
  ASSERT_EQ(tries.size(), 1u);
  EXPECT_EQ(tries[0].try_number, 1);
  EXPECT_EQ(restarted.metrics().pool_used.at("default"), 1);
  fresh.Start(fresh.submitted[0]);
  fresh.Finish(fresh.submitted[0].key, 0);
  ASSERT_TRUE(restarted.RunPass().ok());
  EXPECT_EQ(RunStateOf(run), RunState::kSuccess);
  EXPECT_EQ(Ti(run, "b").try_number, 1);
  EXPECT_EQ(restarted.ActiveTries(), 0u);
  EXPECT_EQ(restarted.metrics().pool_used.at("default"), 0);
}

TEST_F(StandbyTest, ARunThatTimesOutSkipsItsWaitingStandbys) {
  Dag dag;
  dag.dag_id = "late";
  dag.dagrun_timeout = seconds(60);
  dag.tasks = {MakeTask("a"), MakeTask("b", {"a"})};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("late");
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"a", "b after a"}));
  executor_.Start(Submitted("a"));
  Pass();
  clock_.now += seconds(60);
  Pass();
  EXPECT_EQ(RunStateOf(run), RunState::kFailed);
  EXPECT_EQ(Ti(run, "a").state, TaskState::kFailed);
  EXPECT_EQ(Ti(run, "b").state, TaskState::kSkipped);  // it never started
  EXPECT_NE(std::find(executor_.cancelled.begin(), executor_.cancelled.end(), Submitted("b").key),
            executor_.cancelled.end());
  EXPECT_EQ(PoolUsed(), 0);
  executor_.Finish(Submitted("a").key, 143);
  executor_.Decline(Submitted("b").key, "stopped before it started");
  Pass();
  EXPECT_EQ(Ti(run, "b").state, TaskState::kSkipped);
  EXPECT_EQ(scheduler_->ActiveTries(), 0u);
  EXPECT_EQ(PoolUsed(), 0);
}

// The executor may decline a standby while its holder still runs (Withdraw, or any reason of
// its own). The instance waits again as the same try, so the same key may soon be another
// holder's standby: the holder it was declined from must not take that for its own.
TEST_F(StandbyTest, AStandbyDeclinedWhileItsHolderRunsIsNoLongerItsHoldersStandby) {
  options_.parallelism = 2;
  Dag dag;
  dag.dag_id = "flat";
  for (int i = 1; i <= 8; ++i) dag.tasks.push_back(MakeTask("t" + std::to_string(i)));
  AddDag(dag);
  Make();
  const int64_t run = Trigger("flat");
  SupervisorModel model(executor_);
  model.TriesTake(clock_, std::chrono::minutes(1));
  Pass();
  ASSERT_EQ(NewSubmissions(), (Strings{"t1", "t2", "t3 after t1", "t4 after t2", "t5 after t3", "t6 after t4"}));
  model.Take();
  Pass();
  // t3 (and t5, which waited on it) are declined while t1 runs on; t2 hands over to t4.
  model.Decline(Submitted("t3").key, "withdrawn before it started");
  model.End(Submitted("t2").key);
  Pass();
  model.Take();
  CheckAgainst(model, run, 2);
  EXPECT_EQ(Submitted("t3").key.try_number, 1);  // whenever it is sent again, as try 1
  // t1 ends: its slot is free, or goes to whatever now waits in it.
  model.End(Submitted("t1").key);
  Pass();
  model.Take();
  {
    SCOPED_TRACE("after t1 ended");
    CheckAgainst(model, run, 2);
    EXPECT_EQ(PoolUsed(), 2) << "t1's slot must be used again";
  }
  EndEachInTurn(model, run, 2);
  EXPECT_EQ(RunStateOf(run), RunState::kSuccess);
  for (const TaskInstance& ti : Instances(run)) {
    EXPECT_EQ(ti.try_number, 1) << ti.task_id;
    EXPECT_EQ(store_->ListTries(ti.id)->size(), 1u) << ti.task_id;
  }
  EXPECT_EQ(PoolUsed(), 0);
  EXPECT_EQ(scheduler_->ActiveTries(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Which tries may wait in a slot

class StandbyChoiceTest : public StandbyTest {
 protected:
  // a -> b, b as `shape` makes it: what the first pass submits.
  Strings FirstPass(const Task& b) {
    Dag dag;
    dag.dag_id = "choice";
    dag.tasks = {MakeTask("a"), b};
    AddDag(dag);
    Make();
    run_ = Trigger("choice");
    Pass();
    return NewSubmissions();
  }
  int64_t run_ = 0;
};

TEST_F(StandbyChoiceTest, APlainDownstreamWaits) {
  EXPECT_EQ(FirstPass(MakeTask("b", {"a"})), (Strings{"a", "b after a"}));
}

TEST_F(StandbyChoiceTest, NotWhenTheExecutorSaysNo) {
  executor_.takes_standbys = false;
  EXPECT_EQ(FirstPass(MakeTask("b", {"a"})), (Strings{"a"}));
  EXPECT_FALSE(executor_.standby_asked.empty());
  EXPECT_EQ(Ti(run_, "b").state, TaskState::kScheduled);
  EXPECT_EQ(scheduler_->metrics().standbys_queued, 0u);
}

TEST_F(StandbyChoiceTest, NotWithABatchWindowWhenWindowsAreRespected) {
  auto window = Window::Parse("always", "UTC", {"00:00-23:59"}, OnClose::kDrain);
  ASSERT_TRUE(window.ok());
  options_.windows.emplace("always", *window);
  Task b = MakeTask("b", {"a"});
  b.window = "always";  // open now, but judged when the try starts
  EXPECT_EQ(FirstPass(b), (Strings{"a"}));
  EXPECT_EQ(Ti(run_, "b").state, TaskState::kScheduled);
}

TEST_F(StandbyChoiceTest, AWindowDoesNotMatterWhenWindowsAreIgnored) {
  auto window = Window::Parse("always", "UTC", {"00:00-23:59"}, OnClose::kDrain);
  ASSERT_TRUE(window.ok());
  options_.windows.emplace("always", *window);
  options_.respect_windows = false;
  Task b = MakeTask("b", {"a"});
  b.window = "always";
  EXPECT_EQ(FirstPass(b), (Strings{"a", "b after a"}));
}

TEST_F(StandbyChoiceTest, NotWithACache) {
  Task b = MakeTask("b", {"a"});
  b.cache.enabled = true;
  b.cache.outputs = {"out.txt"};
  EXPECT_EQ(FirstPass(b), (Strings{"a"}));
}

TEST_F(StandbyChoiceTest, NotInAnotherPool) {
  options_.pools = {{"default", 128}, {"db", 4}};
  Task b = MakeTask("b", {"a"});
  b.pool = "db";
  EXPECT_EQ(FirstPass(b), (Strings{"a"}));
  EXPECT_EQ(Ti(run_, "b").state, TaskState::kScheduled);
}

TEST_F(StandbyChoiceTest, NotWithAnotherTriggerRule) {
  Task b = MakeTask("b", {"a"});
  b.trigger_rule = TriggerRule::kAllDone;
  EXPECT_EQ(FirstPass(b), (Strings{"a"}));
}

TEST_F(StandbyChoiceTest, NotWhenMapped) {
  Task b = MakeTask("b", {"a"});
  b.map.kind = MapSpec::Kind::kItems;
  b.map.items = {"x"};
  EXPECT_EQ(FirstPass(b), (Strings{"a"}));
}

TEST_F(StandbyChoiceTest, ADownstreamWaitsOnlyOnItsLastUnfinishedUpstream) {
  Dag dag;
  dag.dag_id = "join";
  dag.tasks = {MakeTask("a"), MakeTask("z"), MakeTask("b", {"a", "z"})};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("join");
  Pass();
  EXPECT_EQ(NewSubmissions(), (Strings{"a", "z"}));
  executor_.Start(Submitted("a"));
  executor_.Start(Submitted("z"));
  executor_.Finish(Submitted("z").key, 0);
  Pass();
  // z is done: a is all b waits for now.
  EXPECT_EQ(NewSubmissions(), (Strings{"b after a"}));
  EXPECT_TRUE(Submitted("b").after_success);
  EXPECT_EQ(Ti(run, "b").waiting_reason, InSlotOf(Submitted("a").key, true));
}

TEST_F(StandbyChoiceTest, TheQueuesHeadWaitsOnlyInTheSlotOfItsOwnDagAndPool) {
  options_.parallelism = 1;
  options_.pools = {{"default", 128}, {"db", 4}};
  Dag first;
  first.dag_id = "first";
  Task a = MakeTask("a");
  a.priority_weight = 9;
  first.tasks = {a};
  Dag second;
  second.dag_id = "second";
  second.tasks = {MakeTask("x")};
  Dag pooled;
  pooled.dag_id = "pooled";
  Task p = MakeTask("p");
  p.priority_weight = 9;
  Task y = MakeTask("y");
  y.pool = "db";
  pooled.tasks = {p, y};
  AddDag(first);
  AddDag(second);
  Make();
  Trigger("first");
  Trigger("second");
  Pass();
  // x is next in line, but of another DAG: it waits for the scheduler.
  EXPECT_EQ(NewSubmissions(), (Strings{"a"}));
  executor_.Start(Submitted("a"));
  executor_.Finish(Submitted("a").key, 0);
  Pass();
  EXPECT_EQ(NewSubmissions(), (Strings{"x"}));
  executor_.Start(Submitted("x"));
  executor_.Finish(Submitted("x").key, 0);
  Pass();

  AddDag(pooled);
  Trigger("pooled");
  Pass();
  // y is next in line in p's DAG, but in another pool.
  EXPECT_EQ(NewSubmissions(), (Strings{"p"}));
}

TEST_F(StandbyChoiceTest, TheQueuesHeadOfTheSameDagAndPoolWaitsWhateverItsHolderDoes) {
  options_.parallelism = 1;
  Dag dag;
  dag.dag_id = "flat";
  Task a = MakeTask("a");
  a.priority_weight = 3;
  Task x = MakeTask("x");
  x.priority_weight = 2;
  dag.tasks = {a, x, MakeTask("y")};
  AddDag(dag);
  Make();
  const int64_t run = Trigger("flat");
  Pass();
  EXPECT_EQ(NewSubmissions(), (Strings{"a", "x after a", "y after x"}));
  EXPECT_FALSE(Submitted("x").after_success);
  EXPECT_EQ(Ti(run, "x").waiting_reason, InSlotOf(Submitted("a").key, false));
  // a fails; x starts in its slot anyway.
  executor_.Start(Submitted("a"));
  executor_.HandOff(Submitted("a").key, Submitted("x"), /*exit_code=*/1);
  Pass();
  EXPECT_EQ(Ti(run, "a").state, TaskState::kFailed);
  EXPECT_EQ(Ti(run, "x").state, TaskState::kRunning);
  EXPECT_EQ(PoolUsed(), 1);
}

}  // namespace
}  // namespace nightshift

// ActiveRun's indexes: the upstream counters a trigger rule reads are kept as states change,
// and always equal a recount over the upstream tasks' instances.
#include "scheduler/active_run.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace nightshift {
namespace {

Task MakeTask(const std::string& id, std::vector<std::string> deps = {}) {
  Task t;
  t.task_id = id;
  t.command = "true";
  t.depends_on = std::move(deps);
  return t;
}

TaskInstance Instance(const std::string& task_id, int map_index = -1) {
  TaskInstance ti;
  ti.task_id = task_id;
  ti.map_index = map_index;
  return ti;
}

// What Scheduler::Decide summed before the counters were kept: every upstream task's counts.
UpstreamCounts Recounted(const ActiveRun& active, const std::string& task_id) {
  UpstreamCounts c;
  const Task* task = active.FindTask(task_id);
  if (!task) return c;
  for (const std::string& up : task->depends_on) {
    for (size_t i : active.InstancesOf(up)) {
      const TaskState s = active.tis[i].state;
      c.total += 1;
      c.success += s == TaskState::kSuccess;
      c.skipped += s == TaskState::kSkipped;
      c.failed += s == TaskState::kFailed;
      c.upstream_failed += s == TaskState::kUpstreamFailed;
    }
  }
  return c;
}

void ExpectSame(const UpstreamCounts& a, const UpstreamCounts& b, const std::string& what) {
  EXPECT_EQ(a.total, b.total) << what;
  EXPECT_EQ(a.success, b.success) << what;
  EXPECT_EQ(a.skipped, b.skipped) << what;
  EXPECT_EQ(a.failed, b.failed) << what;
  EXPECT_EQ(a.upstream_failed, b.upstream_failed) << what;
}

TEST(ActiveRunTest, UpstreamCountersFollowEveryStateChange) {
  ActiveRun active;
  // a (mapped, 3) and b feed c; c and b feed d; "gone" is outside a partial run.
  active.dag.tasks = {MakeTask("a"), MakeTask("b"), MakeTask("c", {"a", "b"}), MakeTask("d", {"c", "b", "gone"})};
  active.tis = {Instance("a", 0), Instance("a", 1), Instance("a", 2), Instance("b"), Instance("c"), Instance("d")};
  active.tis[3].state = TaskState::kSuccess;  // as loaded after a restart
  active.Index();
  for (const char* id : {"a", "b", "c", "d"}) ExpectSame(active.UpstreamOf(id), Recounted(active, id), id);
  EXPECT_EQ(active.UpstreamOf("c").total, 4);
  EXPECT_EQ(active.UpstreamOf("c").success, 1);

  const std::vector<TaskState> states = {TaskState::kScheduled, TaskState::kQueued,  TaskState::kRunning,
                                         TaskState::kSuccess,   TaskState::kFailed,  TaskState::kUpForRetry,
                                         TaskState::kSkipped,   TaskState::kUpstreamFailed};
  std::mt19937 rng(7);
  for (int step = 0; step < 500; ++step) {
    const size_t i = rng() % active.tis.size();
    const TaskState to = states[rng() % states.size()];
    const TaskState from = active.tis[i].state;
    active.tis[i].state = to;
    active.Recount(i, from, to);
    if (step == 250) active.AddInstance(Instance("a", 3));  // a `from` expansion
    for (const char* id : {"a", "b", "c", "d"}) {
      ExpectSame(active.UpstreamOf(id), Recounted(active, id), std::string(id) + " at step " + std::to_string(step));
    }
  }
}

}  // namespace
}  // namespace nightshift

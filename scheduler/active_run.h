// One unfinished run as the scheduler holds it in memory, with the indexes that keep a pass
// proportional to what changed: per task its instances, its downstream tasks and a tally of
// its instances by state, so a trigger rule is judged from counters instead of by visiting
// every upstream instance, and a run's end is noticed without visiting every instance.
#pragma once

#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/dag.h"
#include "core/run.h"
#include "core/states.h"
#include "core/time.h"
#include "scheduler/trigger_rules.h"

namespace nightshift {

// Task instances tallied by state.
struct StateCounts {
  std::array<int, kTaskStateCount> by_state{};  // indexed by TaskState
  int total = 0;

  void Add(TaskState state, int delta);
  int Of(TaskState state) const { return by_state[static_cast<size_t>(state)]; }
  int Finished() const;
  int Active() const { return Of(TaskState::kQueued) + Of(TaskState::kRunning); }
  UpstreamCounts AsUpstream() const;
};

struct TaskNode {
  size_t task_index = 0;               // into Dag::tasks
  int rank = 0;                        // position in topological order
  std::vector<size_t> instances;       // indices into ActiveRun::tis, in creation order
  std::vector<std::string> downstream; // tasks that depend on this one
  StateCounts counts;
  // The counts a trigger rule reads: the sum of `counts` over this task's upstream tasks (in
  // the run), kept as they change, so deciding costs the same for one upstream as for 10,000.
  UpstreamCounts upstream;
  // The trigger decision last applied to all of this task's waiting instances; a pass that
  // reaches the same decision again has nothing to do for them.
  std::optional<TriggerDecision> applied;
};

struct ActiveRun {
  DagRun run;
  Dag dag;  // the snapshot the run started with
  std::vector<TaskInstance> tis;
  // The DAG's params with the run's conf over them (NIGHTSHIFT_PARAM_*), parsed from the conf
  // once when the run is loaded.
  std::map<std::string, std::string> params;
  std::unordered_map<std::string, TaskNode> nodes;  // task_id -> its node
  std::set<std::string> leaves;                     // tasks nothing depends on
  StateCounts counts;                               // every instance of the run
  std::set<size_t> dirty;                           // instances to write this pass
  // Instances whose queued try is a standby waiting for another try's slot: not counted
  // against parallelism, max_active_tasks or pools until that slot is handed over.
  std::set<size_t> slotless;
  // A moving average of how long this run's tries take, in ms (none has ended yet: nullopt);
  // it decides how deep standbys may queue (Scheduler::MaxStandbyDepth).
  std::optional<double> typical_try_ms;
  bool run_dirty = false;
  // Items of `map: {from: ...}` tasks once expanded, as NIGHTSHIFT_MAP_ITEM sees them.
  std::map<std::string, std::vector<std::string>> map_items;

  // What the next evaluation must look at: whole tasks (an upstream changed), ordered by
  // rank so a cascade of upstream_failed settles in one pass, and single instances (a retry
  // came due, a user cleared it).
  std::set<std::pair<int, std::string>> tasks_to_evaluate;
  std::set<size_t> instances_to_evaluate;
  std::multimap<TimePoint, size_t> retries;  // up_for_retry instances by next_retry_at

  // Builds the nodes and counts from dag and tis, and asks for every task to be evaluated.
  void Index();
  const Task* TaskOf(const TaskInstance& ti) const;
  const Task* FindTask(const std::string& task_id) const;
  // The instances of a task (empty for an unknown one).
  const std::vector<size_t>& InstancesOf(const std::string& task_id) const;
  // Appends an instance (a `from` expansion) and counts it; returns its index.
  size_t AddInstance(TaskInstance ti);
  // Moves instance `index` to `state`, keeping the counts, and asks for what it affects to be
  // evaluated: its downstream tasks, and itself when it waits again.
  void Recount(size_t index, TaskState from, TaskState to);
  // The counts of a task's upstream tasks, as `TaskNode::upstream` keeps them (for an unknown
  // task: nothing upstream).
  const UpstreamCounts& UpstreamOf(const std::string& task_id) const;
  // The tasks that depend on `task_id`, transitively.
  std::set<std::string> Downstream(const std::string& task_id) const;
};

}  // namespace nightshift

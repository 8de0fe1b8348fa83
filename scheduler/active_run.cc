#include "scheduler/active_run.h"

#include <deque>

namespace nightshift {
namespace {

// The states a trigger rule counts (UpstreamCounts): a change into or out of one of them may
// change a downstream task's decision; running -> up_for_retry, say, cannot.
bool CountsUpstream(TaskState state) {
  return state == TaskState::kSuccess || state == TaskState::kSkipped || state == TaskState::kFailed ||
         state == TaskState::kUpstreamFailed;
}

}  // namespace

void StateCounts::Add(TaskState state, int delta) {
  by_state[static_cast<size_t>(state)] += delta;
  total += delta;
}

int StateCounts::Finished() const {
  return Of(TaskState::kSuccess) + Of(TaskState::kFailed) + Of(TaskState::kUpstreamFailed) +
         Of(TaskState::kSkipped);
}

UpstreamCounts StateCounts::AsUpstream() const {
  UpstreamCounts c;
  c.total = total;
  c.success = Of(TaskState::kSuccess);
  c.skipped = Of(TaskState::kSkipped);
  c.failed = Of(TaskState::kFailed);
  c.upstream_failed = Of(TaskState::kUpstreamFailed);
  return c;
}

void ActiveRun::Index() {
  nodes.clear();
  leaves.clear();
  counts = StateCounts{};
  tasks_to_evaluate.clear();
  instances_to_evaluate.clear();
  retries.clear();
  for (size_t t = 0; t < dag.tasks.size(); ++t) nodes[dag.tasks[t].task_id].task_index = t;
  // Edges to tasks outside a partial run are ignored.
  std::unordered_map<std::string, int> indegree;
  for (const Task& t : dag.tasks) {
    indegree[t.task_id];
    for (const std::string& up : t.depends_on) {
      auto node = nodes.find(up);
      if (node == nodes.end()) continue;
      ++indegree[t.task_id];
      node->second.downstream.push_back(t.task_id);
    }
  }
  // Kahn's algorithm, ties broken by file order so the ranks are stable.
  std::deque<std::string> frontier;
  for (const Task& t : dag.tasks) {
    if (indegree[t.task_id] == 0) frontier.push_back(t.task_id);
    if (nodes[t.task_id].downstream.empty()) leaves.insert(t.task_id);
  }
  int rank = 0;
  while (!frontier.empty()) {
    std::string id = std::move(frontier.front());
    frontier.pop_front();
    TaskNode& node = nodes[id];
    node.rank = rank++;
    for (const std::string& down : node.downstream) {
      if (--indegree[down] == 0) frontier.push_back(down);
    }
  }
  for (size_t i = 0; i < tis.size(); ++i) {
    auto node = nodes.find(tis[i].task_id);
    if (node == nodes.end()) continue;  // a task the snapshot lost: never evaluated
    node->second.instances.push_back(i);
    node->second.counts.Add(tis[i].state, 1);
    counts.Add(tis[i].state, 1);
    if (tis[i].state == TaskState::kUpForRetry) {
      retries.emplace(tis[i].next_retry_at.value_or(TimePoint{}), i);
    }
  }
  for (const auto& [task_id, node] : nodes) tasks_to_evaluate.emplace(node.rank, task_id);
}

const Task* ActiveRun::FindTask(const std::string& task_id) const {
  auto node = nodes.find(task_id);
  return node == nodes.end() ? nullptr : &dag.tasks[node->second.task_index];
}

const Task* ActiveRun::TaskOf(const TaskInstance& ti) const { return FindTask(ti.task_id); }

const std::vector<size_t>& ActiveRun::InstancesOf(const std::string& task_id) const {
  static const std::vector<size_t> kNone;
  auto node = nodes.find(task_id);
  return node == nodes.end() ? kNone : node->second.instances;
}

size_t ActiveRun::AddInstance(TaskInstance ti) {
  const size_t index = tis.size();
  auto node = nodes.find(ti.task_id);
  if (node != nodes.end()) {
    node->second.instances.push_back(index);
    node->second.counts.Add(ti.state, 1);
  }
  counts.Add(ti.state, 1);
  tis.push_back(std::move(ti));
  return index;
}

void ActiveRun::EvaluateTaskLater(const std::string& task_id) {
  auto node = nodes.find(task_id);
  if (node != nodes.end()) tasks_to_evaluate.emplace(node->second.rank, task_id);
}

void ActiveRun::Recount(size_t index, TaskState from, TaskState to) {
  if (from == to) return;
  counts.Add(from, -1);
  counts.Add(to, 1);
  auto node = nodes.find(tis[index].task_id);
  if (node == nodes.end()) return;
  node->second.counts.Add(from, -1);
  node->second.counts.Add(to, 1);
  if (CountsUpstream(from) || CountsUpstream(to)) {
    for (const std::string& down : node->second.downstream) EvaluateTaskLater(down);
  }
  if (to == TaskState::kScheduled) instances_to_evaluate.insert(index);
}

std::set<std::string> ActiveRun::Downstream(const std::string& task_id) const {
  std::set<std::string> found;
  std::vector<std::string> frontier{task_id};
  while (!frontier.empty()) {
    std::string current = std::move(frontier.back());
    frontier.pop_back();
    auto node = nodes.find(current);
    if (node == nodes.end()) continue;
    for (const std::string& down : node->second.downstream) {
      if (found.insert(down).second) frontier.push_back(down);
    }
  }
  return found;
}

}  // namespace nightshift

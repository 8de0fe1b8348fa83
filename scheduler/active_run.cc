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

// Moves one instance's state in the counts a trigger rule reads.
void AddUpstream(UpstreamCounts& c, TaskState state, int delta) {
  switch (state) {
    case TaskState::kSuccess:
      c.success += delta;
      break;
    case TaskState::kSkipped:
      c.skipped += delta;
      break;
    case TaskState::kFailed:
      c.failed += delta;
      break;
    case TaskState::kUpstreamFailed:
      c.upstream_failed += delta;
      break;
    default:
      break;
  }
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
  for (auto& [task_id, node] : nodes) {
    const UpstreamCounts mine = node.counts.AsUpstream();
    for (const std::string& down : node.downstream) {
      auto down_node = nodes.find(down);
      if (down_node == nodes.end()) continue;
      UpstreamCounts& c = down_node->second.upstream;
      c.total += mine.total;
      c.success += mine.success;
      c.skipped += mine.skipped;
      c.failed += mine.failed;
      c.upstream_failed += mine.upstream_failed;
    }
  }
  for (const auto& [task_id, node] : nodes) tasks_to_evaluate.emplace(node.rank, task_id);
}

const UpstreamCounts& ActiveRun::UpstreamOf(const std::string& task_id) const {
  static const UpstreamCounts kNone;
  auto node = nodes.find(task_id);
  return node == nodes.end() ? kNone : node->second.upstream;
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
    for (const std::string& down : node->second.downstream) {
      auto down_node = nodes.find(down);
      if (down_node == nodes.end()) continue;
      UpstreamCounts& c = down_node->second.upstream;
      c.total += 1;
      AddUpstream(c, ti.state, 1);
    }
  }
  counts.Add(ti.state, 1);
  tis.push_back(std::move(ti));
  return index;
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
    for (const std::string& down : node->second.downstream) {
      auto down_node = nodes.find(down);
      if (down_node == nodes.end()) continue;
      AddUpstream(down_node->second.upstream, from, -1);
      AddUpstream(down_node->second.upstream, to, 1);
      tasks_to_evaluate.emplace(down_node->second.rank, down);
    }
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

#include "executor/routing_executor.h"

#include "core/try_files.h"
#include "executor/task_protocol.h"

namespace nightshift {

RoutingExecutor::RoutingExecutor(std::string default_executor, std::map<std::string, Executor*> executors)
    : default_(std::move(default_executor)), executors_(std::move(executors)) {}

Executor* RoutingExecutor::Find(const std::string& name) const {
  auto it = executors_.find(Resolve(name));
  return it == executors_.end() ? nullptr : it->second;
}

size_t RoutingExecutor::FreeSlots() const {
  Executor* executor = Find("");
  return executor ? executor->FreeSlots() : 0;
}

Status RoutingExecutor::Submit(const TaskSpec& spec) {
  Executor* executor = Find(spec.executor);
  if (!executor) {
    return Status::InvalidArgument(spec.key.ToString() + ": executor \"" + Resolve(spec.executor) +
                                   "\" is not available in this daemon");
  }
  Status s = executor->Submit(spec);
  if (s.ok()) owner_[spec.key] = executor;
  return s;
}

std::vector<ExecutorEvent> RoutingExecutor::Drain() {
  std::vector<ExecutorEvent> out;
  for (const auto& [name, executor] : executors_) {
    for (ExecutorEvent& event : executor->Drain()) {
      if (event.kind == ExecutorEvent::Kind::kFinished || event.kind == ExecutorEvent::Kind::kLost ||
          event.kind == ExecutorEvent::Kind::kDeclined) {
        owner_.erase(event.key);
      }
      out.push_back(std::move(event));
    }
  }
  return out;
}

Status RoutingExecutor::Cancel(const TaskInstanceKey& key) {
  if (auto it = owner_.find(key); it != owner_.end()) return it->second->Cancel(key);
  // Unknown here: cancelling is idempotent and harmless where the key is unknown.
  Status result = Status::OK();
  for (const auto& [name, executor] : executors_) {
    if (Status s = executor->Cancel(key); !s.ok()) result = s;
  }
  return result;
}

bool RoutingExecutor::TakesStandby(const TaskSpec& holder, const TaskSpec& standby) const {
  Executor* executor = Find(standby.executor);
  if (!executor || Find(holder.executor) != executor) return false;
  auto owner = owner_.find(holder.key);
  return (owner == owner_.end() || owner->second == executor) && executor->TakesStandby(holder, standby);
}

void RoutingExecutor::Withdraw(const TaskInstanceKey& key) {
  if (auto it = owner_.find(key); it != owner_.end()) it->second->Withdraw(key);
}

std::vector<TaskInstanceKey> RoutingExecutor::Adopt(std::span<const RunningTask> tasks) {
  std::map<Executor*, std::vector<RunningTask>> groups;
  for (const RunningTask& task : tasks) {
    std::string name = task.executor;
    if (name != "slurm" && !task.log_path.empty() && PathExists(TryFiles::OfLog(task.log_path).slurm_job)) {
      name = "slurm";
    }
    Executor* executor = Find(name);
    if (!executor) executor = Find("");
    if (executor) groups[executor].push_back(task);
  }
  std::vector<TaskInstanceKey> adopted;
  for (auto& [executor, group] : groups) {
    for (const RunningTask& task : group) owner_[task.key] = executor;
    for (TaskInstanceKey& key : executor->Adopt(group)) adopted.push_back(std::move(key));
  }
  return adopted;
}

}  // namespace nightshift

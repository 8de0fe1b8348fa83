// Sends each try to the executor named by its spec (`executor:` of the task, else the daemon's
// default), so that one daemon runs some tasks locally and others on Slurm. Cancel() goes to
// whichever executor took the try; Adopt() to the one that ran it before the restart.
#pragma once

#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "executor/executor.h"

namespace nightshift {

class RoutingExecutor final : public Executor {
 public:
  // `executors` by name ("local", "slurm"); the pointers must outlive this object.
  // `default_executor` serves specs whose executor is empty.
  RoutingExecutor(std::string default_executor, std::map<std::string, Executor*> executors);

  // The default executor's free slots: the scheduler's own limits bound the others.
  size_t FreeSlots() const override;
  // InvalidArgument when the spec names an executor this daemon does not have.
  Status Submit(const TaskSpec& spec) override;
  std::vector<ExecutorEvent> Drain() override;
  Status Cancel(const TaskInstanceKey& key) override;
  // Only within one executor: `after` must run where `standby` would.
  bool TakesStandby(const TaskSpec& holder, const TaskSpec& standby) const override;
  void Withdraw(const TaskInstanceKey& key) override;
  // By RunningTask::executor; a try without a recorded job id that nevertheless has a Slurm job
  // id file next to its log (the daemon died while the job was pending) goes to Slurm too.
  std::vector<TaskInstanceKey> Adopt(std::span<const RunningTask> tasks) override;

  // Which executor a spec goes to.
  std::string Resolve(const std::string& name) const { return name.empty() ? default_ : name; }

 private:
  Executor* Find(const std::string& name) const;

  std::string default_;
  std::map<std::string, Executor*> executors_;
  std::map<TaskInstanceKey, Executor*> owner_;  // tries handed out and not yet finished
};

}  // namespace nightshift

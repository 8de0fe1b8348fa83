// The executor seam (after ninja's CommandRunner and Airflow's BaseExecutor): it starts task
// tries and reports what happened to them. It never decides whether a task may run and never
// touches the store; the scheduler owns every state change.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/dag.h"
#include "core/status.h"
#include "core/time.h"
#include "core/try_files.h"

namespace nightshift {

// Identifies one try of one task instance.
struct TaskInstanceKey {
  std::string dag_id;
  std::string run_id;
  std::string task_id;
  int map_index = -1;
  int try_number = 1;

  auto operator<=>(const TaskInstanceKey&) const = default;
  std::string ToString() const;  // "dag/run/task[3]#2"
  // For core/try_files.h; points into this key.
  TryId ToTryId() const { return TryId{dag_id, run_id, task_id, map_index, try_number}; }
};

// Everything needed to start one try.
struct TaskSpec {
  TaskInstanceKey key;
  std::string command;                       // run by /bin/sh -c
  std::string cwd;
  std::map<std::string, std::string> env;    // over the daemon's own environment
  std::string log_path;                      // stdout and stderr go here
  // The run's tries journal, where the local executor records each try's start and end
  // (executor/try_journal.h).
  std::string journal_path;
  std::string output_path;                   // NIGHTSHIFT_OUTPUT
  // Which executor runs it: "local" or "slurm"; empty means the daemon's default (`executor:`
  // in the config). RoutingExecutor reads it.
  std::string executor = "local";
  SlurmTaskOptions slurm;                    // the DAG's options with the task's over them
  // The config's `limits:` with the task's over them; the task wrapper applies them.
  TaskLimits limits;
  // A standby (docs/adr/0006): not started now but in the slot of the try `after` the moment
  // that one ends, by the executor itself; with `after_success` only if it succeeds (exit 0,
  // not stopped, no output written). Otherwise it is declined (kDeclined). Only for an `after`
  // for which TakesStandby() said yes in the same pass, submitted after that one.
  std::optional<TaskInstanceKey> after;
  bool after_success = false;
};

struct ExecutorEvent {
  // kWaiting: accepted but not running yet, and why (e.g. Slurm holds it PENDING).
  // kDeclined: a standby that did not start (see TaskSpec::after); it used nothing up.
  enum class Kind { kStarted, kProgress, kWaiting, kFinished, kLost, kDeclined };
  Kind kind = Kind::kStarted;
  TaskInstanceKey key;
  std::optional<int64_t> pid;                // kStarted
  std::optional<std::string> external_id;    // kStarted, e.g. a Slurm job id
  std::optional<int> exit_code;              // kFinished: 0..255, or 128+signal
  std::optional<double> progress;            // kProgress: 0..1
  std::string reason;                        // kLost, kWaiting, kDeclined, or why a kFinished try failed
  TimePoint at{};
  bool handed_off = false;                   // kFinished: its standby started in its slot as it ended
};

// A try recorded as queued or running when the daemon stopped.
struct RunningTask {
  TaskInstanceKey key;
  std::optional<int64_t> pid;
  std::optional<std::string> external_id;
  std::string log_path;
  std::string journal_path;
  // Who follows it after a restart: "slurm" when the try has a Slurm job id, else "local".
  std::string executor = "local";
};

class Executor {
 public:
  virtual ~Executor() = default;
  virtual size_t FreeSlots() const = 0;
  virtual Status Submit(const TaskSpec& spec) = 0;             // never blocks
  virtual std::vector<ExecutorEvent> Drain() = 0;              // events since the last call
  virtual Status Cancel(const TaskInstanceKey& key) = 0;       // idempotent; changes no state itself
  // Whether `standby` may wait in the slot of `holder` (see TaskSpec::after), a try that runs
  // here or is submitted just before it. Only `key` and `executor` of the specs are read.
  virtual bool TakesStandby(const TaskSpec& /*holder*/, const TaskSpec& /*standby*/) const { return false; }
  // A standby that has not started is declined; anything else goes on. Idempotent.
  virtual void Withdraw(const TaskInstanceKey& /*key*/) {}
  // Takes over tries that were running before a restart; returns those it follows.
  virtual std::vector<TaskInstanceKey> Adopt(std::span<const RunningTask> tasks) = 0;
};

}  // namespace nightshift

// Run and task-instance states: stable lowercase tokens shared by the API, logs, database and
// environment (Airflow's names). The one table of legal task transitions lives in states.cc.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

namespace nightshift {

enum class RunState { kQueued, kRunning, kSuccess, kFailed };

// A task instance is created `scheduled` and says in waiting_reason why it has not started.
enum class TaskState {
  kScheduled,
  kQueued,
  kRunning,
  kSuccess,
  kFailed,
  kUpForRetry,
  kUpstreamFailed,
  kSkipped,
  // Waits for something outside the DAG (contract part two: a sensor or an external event):
  // scheduled -> deferred -> queued | failed | skipped. Nothing enters it yet, so the state
  // CHECK of task_instances does not allow it; the migration that does comes with the code
  // that defers a task.
  kDeferred,
};
inline constexpr size_t kTaskStateCount = static_cast<size_t>(TaskState::kDeferred) + 1;

std::string_view ToString(RunState state);
std::string_view ToString(TaskState state);
std::optional<RunState> ParseRunState(std::string_view text);
std::optional<TaskState> ParseTaskState(std::string_view text);
// Every state, in the order declared above: for listings (GET /api/v1/states, metrics) that must
// pick up a new state without being edited.
std::span<const RunState> AllRunStates();
std::span<const TaskState> AllTaskStates();

bool IsFinished(RunState state);
// success, failed, upstream_failed, skipped: the instance will not run again unless cleared.
bool IsFinished(TaskState state);

// Whether the scheduler may move a task instance from `from` to `to`. Clearing (back to
// scheduled) and marking by a user are legal from every finished state. Staying in a state is
// not a transition (and not legal here): callers skip it.
bool IsLegalTransition(TaskState from, TaskState to);

}  // namespace nightshift

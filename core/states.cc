#include "core/states.h"

#include <array>

namespace nightshift {
namespace {

constexpr std::array<std::string_view, 4> kRunStateNames = {"queued", "running", "success", "failed"};
constexpr std::array<std::string_view, kTaskStateCount> kTaskStateNames = {"scheduled",    "queued",          "running",
                                                               "success",      "failed",          "up_for_retry",
                                                               "upstream_failed", "skipped",      "deferred"};

template <typename State, size_t N>
constexpr std::array<State, N> Enumerate() {
  std::array<State, N> all{};
  for (size_t i = 0; i < N; ++i) all[i] = static_cast<State>(i);
  return all;
}
constexpr auto kAllRunStates = Enumerate<RunState, kRunStateNames.size()>();
constexpr auto kAllTaskStates = Enumerate<TaskState, kTaskStateNames.size()>();

using S = TaskState;
// kTransitions[from][to]: the one table of legal task-instance transitions. Every row but
// `running` may go to success, failed (a user marks it) and back to scheduled (a user clears
// it, a try that never started is undone, a closing window stops it).
//  - queued -> skipped: a standby (docs/adr/0006) that never got its slot when its run fails.
//  - running -> skipped: a try that exits with its task's skip_on_exit_code (contract part two).
//  - up_for_retry -> skipped: the run fails (dagrun_timeout, cancelled, marked failed) while
//    the task waits for its next try; like every waiting task it is skipped (Airflow does the
//    same for the unfinished task instances of a timed-out run).
//  - deferred: waits for something outside the DAG; then queued, failed or skipped.
//                                    sch    que    run    suc    fai    ufr    upf    ski    def
constexpr bool kTransitions[kTaskStateCount][kTaskStateCount] = {
    /* scheduled       */ {false, true,  false, true,  true,  false, true,  true,  true},
    /* queued          */ {true,  false, true,  true,  true,  true,  false, true,  false},
    /* running         */ {true,  false, false, true,  true,  true,  false, true,  false},
    /* success         */ {true,  false, false, false, true,  false, false, false, false},
    /* failed          */ {true,  false, false, true,  false, false, false, false, false},
    /* up_for_retry    */ {true,  true,  false, true,  true,  false, false, true,  false},
    /* upstream_failed */ {true,  false, false, true,  true,  false, false, false, false},
    /* skipped         */ {true,  false, false, true,  true,  false, false, false, false},
    /* deferred        */ {true,  true,  false, true,  true,  false, false, true,  false},
};
static_assert(std::size(kTransitions) == kTaskStateNames.size());

}  // namespace

std::string_view ToString(RunState state) { return kRunStateNames[static_cast<size_t>(state)]; }
std::string_view ToString(TaskState state) { return kTaskStateNames[static_cast<size_t>(state)]; }

std::span<const RunState> AllRunStates() { return kAllRunStates; }
std::span<const TaskState> AllTaskStates() { return kAllTaskStates; }

std::optional<RunState> ParseRunState(std::string_view text) {
  for (size_t i = 0; i < kRunStateNames.size(); ++i) {
    if (kRunStateNames[i] == text) return static_cast<RunState>(i);
  }
  return std::nullopt;
}

std::optional<TaskState> ParseTaskState(std::string_view text) {
  for (size_t i = 0; i < kTaskStateNames.size(); ++i) {
    if (kTaskStateNames[i] == text) return static_cast<TaskState>(i);
  }
  return std::nullopt;
}

bool IsFinished(RunState state) { return state == RunState::kSuccess || state == RunState::kFailed; }

bool IsFinished(TaskState state) {
  return state == S::kSuccess || state == S::kFailed || state == S::kUpstreamFailed || state == S::kSkipped;
}

bool IsLegalTransition(TaskState from, TaskState to) {
  return kTransitions[static_cast<size_t>(from)][static_cast<size_t>(to)];
}

}  // namespace nightshift

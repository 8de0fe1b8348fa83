#include "scheduler/trigger_rules.h"

namespace nightshift {

UpstreamCounts UpstreamCounts::Of(std::span<const TaskState> states) {
  UpstreamCounts c;
  c.total = static_cast<int>(states.size());
  for (TaskState s : states) {
    switch (s) {
      case TaskState::kSuccess: ++c.success; break;
      case TaskState::kSkipped: ++c.skipped; break;
      case TaskState::kFailed: ++c.failed; break;
      case TaskState::kUpstreamFailed: ++c.upstream_failed; break;
      default: break;
    }
  }
  return c;
}

TriggerDecision EvaluateTriggerRule(TriggerRule rule, const UpstreamCounts& up) {
  using D = TriggerDecision;
  if (up.total == 0) return D::kReady;
  const bool all_done = up.done() == up.total;
  const int failures = up.failed + up.upstream_failed;
  switch (rule) {
    case TriggerRule::kAllSuccess:
      if (failures > 0) return D::kUpstreamFailed;
      if (up.skipped > 0) return D::kSkipped;
      return all_done ? D::kReady : D::kWait;
    case TriggerRule::kAllFailed:
      // Any success or skip means "all failed" can no longer hold.
      if (up.success > 0 || up.skipped > 0) return D::kSkipped;
      return all_done ? D::kReady : D::kWait;
    case TriggerRule::kAllDone:
      return all_done ? D::kReady : D::kWait;
    case TriggerRule::kOneSuccess:
      if (up.success > 0) return D::kReady;
      if (!all_done) return D::kWait;
      return up.skipped == up.total ? D::kSkipped : D::kUpstreamFailed;
    case TriggerRule::kOneFailed:
      if (failures > 0) return D::kReady;
      return all_done ? D::kSkipped : D::kWait;
    case TriggerRule::kNoneFailed:
      if (failures > 0) return D::kUpstreamFailed;
      return all_done ? D::kReady : D::kWait;
    case TriggerRule::kNoneFailedMinOneSuccess:
      if (failures > 0) return D::kUpstreamFailed;
      if (!all_done) return D::kWait;
      return up.success > 0 ? D::kReady : D::kSkipped;
    case TriggerRule::kNoneSkipped:
      if (up.skipped > 0) return D::kSkipped;
      return all_done ? D::kReady : D::kWait;
    case TriggerRule::kAlways:
      return D::kReady;
  }
  return D::kWait;
}

}  // namespace nightshift

// Trigger rules (Airflow's semantics): given the states of a task's upstream instances, may it
// run now, must it wait, or is its fate already decided? The one place this rule lives.
#pragma once

#include <span>

#include "core/dag.h"
#include "core/states.h"

namespace nightshift {

// Tallies of the upstream task instances' states (every instance of a mapped upstream counts).
struct UpstreamCounts {
  int total = 0;
  int success = 0;
  int skipped = 0;
  int failed = 0;
  int upstream_failed = 0;
  int done() const { return success + skipped + failed + upstream_failed; }

  static UpstreamCounts Of(std::span<const TaskState> states);
};

enum class TriggerDecision {
  kWait,            // not yet decidable: upstream tasks still to finish
  kReady,           // may start
  kUpstreamFailed,  // will never run: an upstream failure rules it out
  kSkipped,         // will never run: the rule's condition cannot hold
};

// A task with no upstream tasks is always ready.
TriggerDecision EvaluateTriggerRule(TriggerRule rule, const UpstreamCounts& upstream);

}  // namespace nightshift

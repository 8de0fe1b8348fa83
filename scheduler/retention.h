// Retention: finished runs beyond the newest N per DAG, or older than a maximum age, are
// deleted with their task instances, tries and log folders.
#pragma once

#include <string>

#include "core/duration.h"
#include "core/status.h"
#include "core/time.h"
#include "store/store.h"

namespace nightshift {

struct RetentionPolicy {
  int max_runs_per_dag = 500;  // finished runs kept per DAG (the newest ones)
  Duration max_age = std::chrono::hours(24 * 30);  // by the run's end (or logical) date
};

// Prunes every DAG's finished runs by `policy` as of `now`; queued and running runs are never
// touched. Log folders <logs_dir>/<dag_id>/<run_id> of deleted runs are removed too.
// Returns how many runs were deleted.
Result<int> PruneFinishedRuns(Store& store, const std::string& logs_dir, const RetentionPolicy& policy,
                              TimePoint now);

}  // namespace nightshift

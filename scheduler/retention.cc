#include "scheduler/retention.h"

#include <filesystem>
#include <set>
#include <spdlog/spdlog.h>

#include "core/try_files.h"

namespace nightshift {

Result<int> PruneFinishedRuns(Store& store, const std::string& logs_dir, const RetentionPolicy& policy,
                              TimePoint now) {
  auto dags = store.ListDags();
  if (!dags.ok()) return dags.status();
  int deleted = 0;
  for (const DagRecord& dag : *dags) {
    // All runs of the DAG, newest first; finished ones past the count or the age go.
    std::vector<DagRun> doomed;
    int finished_seen = 0;
    RunQuery query;
    query.dag_id = dag.dag_id;
    query.limit = 1000;
    for (query.offset = 0;; query.offset += query.limit) {
      auto page = store.ListRuns(query);
      if (!page.ok()) return page.status();
      for (const DagRun& run : page->runs) {
        if (!IsFinished(run.state)) continue;
        ++finished_seen;
        const TimePoint age_from = run.end_date.value_or(run.logical_date);
        if (finished_seen > policy.max_runs_per_dag || now - age_from > policy.max_age) doomed.push_back(run);
      }
      if (static_cast<int>(page->runs.size()) < query.limit) break;
    }
    for (const DagRun& run : doomed) {
      if (Status s = store.DeleteRun(run.id); !s.ok()) return s;
      std::error_code ec;
      std::filesystem::remove_all(RunFolder(logs_dir, run.dag_id, run.run_id), ec);
      if (ec) spdlog::warn("cannot remove logs of {}/{}: {}", run.dag_id, run.run_id, ec.message());
      ++deleted;
    }
  }
  return deleted;
}

}  // namespace nightshift

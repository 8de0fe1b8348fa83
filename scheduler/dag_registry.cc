#include "scheduler/dag_registry.h"

#include <algorithm>

#include "core/cron.h"

namespace nightshift {

DagLoadContext MakeDagLoadContext(const Config& config) {
  DagLoadContext context;
  context.pools.clear();
  for (const auto& [name, size] : config.pools) context.pools.insert(name);
  for (const auto& [name, window] : config.windows) context.windows.insert(name);
  return context;
}

DagRegistry::DagRegistry(const Config& config, Store& store, const Clock& clock)
    : folder_(config.dags_folder, MakeDagLoadContext(config)), store_(store), clock_(clock) {
  PublishSnapshot();
}

void DagRegistry::Reconfigure(const Config& config) {
  // The snapshot keeps the previous DAGs until the Refresh that follows has re-read the files.
  folder_ = DagFolder(config.dags_folder, MakeDagLoadContext(config));
}

std::shared_ptr<const DagsSnapshot> DagRegistry::Snapshot() const {
  std::lock_guard lock(snapshot_mu_);
  return snapshot_;
}

void DagRegistry::PublishSnapshot() {
  // Copied once per change of the folder (not per read), outside the lock.
  auto next = std::make_shared<DagsSnapshot>();
  next->dags = folder_.dags();
  next->import_errors = folder_.import_errors();
  std::lock_guard lock(snapshot_mu_);
  snapshot_ = std::move(next);
}

Result<bool> DagRegistry::Refresh() {
  if (!folder_.Refresh()) return false;
  // Published after the store has the DAGs' rows, so a reader never finds a DAG it cannot pause.
  Status s = SyncStore();
  PublishSnapshot();
  if (!s.ok()) return s;
  return true;
}

Status DagRegistry::SyncStore() {
  return store_.InTransaction([&]() -> Status {
    const TimePoint now = clock_.Now();
    for (const auto& [dag_id, dag] : folder_.dags()) {
      DagRecord record;
      record.dag_id = dag_id;
      record.is_paused = dag.is_paused_upon_creation;  // only used when the DAG is new
      record.fileloc = dag.file_path;
      record.last_parsed = now;
      Status s = store_.UpsertDag(record);
      if (!s.ok()) return s;
    }
    return store_.ReplaceImportErrors(folder_.import_errors());
  });
}

const Dag* DagRegistry::FindDag(const std::string& dag_id) const {
  auto it = folder_.dags().find(dag_id);
  return it == folder_.dags().end() ? nullptr : &it->second;
}

bool DagRegistry::HasImportErrors(const std::string& file_path) const {
  const auto& errors = folder_.import_errors();
  return std::any_of(errors.begin(), errors.end(),
                     [&](const ImportError& e) { return e.filename == file_path; });
}

const Dag* DagsSnapshot::FindDag(const std::string& dag_id) const {
  auto it = dags.find(dag_id);
  return it == dags.end() ? nullptr : &it->second;
}

bool DagsSnapshot::HasImportErrors(const std::string& file_path) const {
  return std::any_of(import_errors.begin(), import_errors.end(),
                     [&](const ImportError& e) { return e.filename == file_path; });
}

std::optional<TimePoint> NextScheduledRun(const Dag& dag, TimePoint now) {
  if (!dag.schedule) return std::nullopt;
  auto schedule = CronSchedule::Parse(*dag.schedule, dag.timezone);
  if (!schedule.ok()) return std::nullopt;
  if (dag.start_date) schedule->set_anchor(*dag.start_date);
  TimePoint after = now;
  // The first run fires at the first schedule time at or after start_date.
  if (dag.start_date && *dag.start_date - std::chrono::milliseconds(1) > after) {
    after = *dag.start_date - std::chrono::milliseconds(1);
  }
  std::optional<TimePoint> next = schedule->Next(after);
  if (next && dag.end_date && *next > *dag.end_date) return std::nullopt;
  return next;
}

}  // namespace nightshift

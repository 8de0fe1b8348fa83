// The DAGs the daemon serves: the DAGs folder as loaded, mirrored into the store (a row per
// DAG with its paused flag, and the current import errors) each time something changes.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/dag.h"
#include "core/time.h"
#include "dags/dag_folder.h"
#include "store/store.h"

namespace nightshift {

// What the config offers DAGs to refer to (window and pool names).
DagLoadContext MakeDagLoadContext(const Config& config);

// The loaded DAGs and import errors as of one scan, never changed after it is made: readers on
// other threads (the API) keep using theirs while the registry moves on to a newer one.
struct DagsSnapshot {
  std::map<std::string, Dag> dags;  // by dag_id
  std::vector<ImportError> import_errors;

  const Dag* FindDag(const std::string& dag_id) const;
  // The file the DAG came from had errors on its last load.
  bool HasImportErrors(const std::string& file_path) const;
};

class DagRegistry {
 public:
  DagRegistry(const Config& config, Store& store, const Clock& clock);

  // Rescans the DAGs folder. When DAGs or import errors changed, records them in the store
  // (new DAGs start paused if is_paused_upon_creation). Returns true when anything changed.
  Result<bool> Refresh();

  // After a config reload: window and pool names may have changed, so every file is re-read.
  void Reconfigure(const Config& config);

  const std::map<std::string, Dag>& dags() const { return folder_.dags(); }
  const Dag* FindDag(const std::string& dag_id) const;
  const std::vector<ImportError>& import_errors() const { return folder_.import_errors(); }
  // The file the DAG came from had errors on its last load (a DAG with a broken edit keeps
  // no stale version: it is gone until fixed, as in Airflow).
  bool HasImportErrors(const std::string& file_path) const;

  // The DAGs as of the last Refresh that found a change. Safe to call from any thread (everything
  // else here belongs to the thread that calls Refresh).
  std::shared_ptr<const DagsSnapshot> Snapshot() const;

 private:
  Status SyncStore();
  void PublishSnapshot();

  DagFolder folder_;
  Store& store_;
  const Clock& clock_;
  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const DagsSnapshot> snapshot_;  // guarded by snapshot_mu_
};

// The next time the DAG's schedule fires after `now` (respecting start_date and end_date),
// or nullopt for a manual-only DAG or a schedule that has ended.
std::optional<TimePoint> NextScheduledRun(const Dag& dag, TimePoint now);

}  // namespace nightshift

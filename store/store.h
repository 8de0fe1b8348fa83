// The Store: everything Nightshift keeps. The only SQL in the project lives behind this
// interface (store/sqlite_store.cc); other folders see records from core/run.h.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/run.h"
#include "core/status.h"

namespace nightshift {

struct RunQuery {
  std::optional<std::string> dag_id;   // all DAGs when unset
  std::optional<RunState> state;
  int limit = 100;
  int offset = 0;
};

struct RunPage {
  std::vector<DagRun> runs;  // newest logical_date first
  int64_t total_entries = 0;
};

struct DagsVersion {
  int64_t data_version = 0;  // PRAGMA data_version: commits by other connections
  uint64_t own_writes = 0;   // writes to the dags table through this store
  bool operator==(const DagsVersion&) const = default;
};

class Store {
 public:
  virtual ~Store() = default;

  // ---- schema ----
  // Applies every embedded migration newer than the database's version, each in its own
  // transaction, in order. Idempotent.
  virtual Status Migrate() = 0;
  // The highest migration applied (0 for a new database).
  virtual Result<int> SchemaVersion() = 0;
  // SQLite's integrity_check and foreign_key_check plus the store's invariants (e.g. a task
  // instance's try_number equals its number of tries; no running TI in a finished run).
  // Appends a line per problem to `problems`; OK status means the check ran.
  virtual Status Check(std::vector<std::string>* problems) = 0;

  // Runs `body` in one transaction: committed when it returns OK, rolled back otherwise.
  // Nested calls join the outer transaction.
  virtual Status InTransaction(const std::function<Status()>& body) = 0;

  // ---- DAGs ----
  // Inserts the DAG with `dag.is_paused` if unknown; otherwise updates fileloc and
  // last_parsed and keeps the stored paused flag (a user's pause survives reloads).
  virtual Status UpsertDag(const DagRecord& dag) = 0;
  virtual Result<std::optional<DagRecord>> GetDag(const std::string& dag_id) = 0;
  virtual Result<std::vector<DagRecord>> ListDags() = 0;
  // Differs from the last answer whenever the dags table may have changed since, through this
  // store or another connection, so that a reader may keep what it read until then. Reads no
  // table (SQLite's data_version and a count of this store's own writes).
  virtual Result<DagsVersion> GetDagsVersion() = 0;
  virtual Status SetPaused(const std::string& dag_id, bool paused) = 0;  // NotFound if unknown

  // ---- import errors: replaced as a whole after each scan of the DAGs folder ----
  virtual Status ReplaceImportErrors(const std::vector<ImportError>& errors) = 0;
  virtual Result<std::vector<ImportError>> ListImportErrors() = 0;

  // ---- runs ----
  // Inserts the run and its task instances; fills in their ids. AlreadyExists when the
  // (dag_id, run_id) pair is taken.
  virtual Status CreateRun(DagRun* run, std::vector<TaskInstance>* task_instances) = 0;
  virtual Result<std::optional<DagRun>> GetRun(const std::string& dag_id, const std::string& run_id) = 0;
  // The run without its dag_snapshot (left empty): cheap, for the API.
  virtual Result<std::optional<DagRun>> GetRunSummary(const std::string& dag_id, const std::string& run_id) = 0;
  virtual Result<std::optional<DagRun>> GetRunById(int64_t run_pk) = 0;
  // Without their dag_snapshot (left empty), like GetRunSummary.
  virtual Result<RunPage> ListRuns(const RunQuery& query) = 0;
  virtual Result<std::vector<DagRun>> ListUnfinishedRuns() = 0;  // queued or running, oldest first
  // The run with the greatest logical_date of this DAG and type ("scheduled"), if any.
  virtual Result<std::optional<DagRun>> LatestRun(const std::string& dag_id, const std::string& run_type) = 0;
  // By id; every field but dag_snapshot, which is fixed when the run is created.
  virtual Status UpdateRun(const DagRun& run) = 0;
  // Deletes a finished run with its task instances and tries (ON DELETE CASCADE).
  virtual Status DeleteRun(int64_t run_pk) = 0;

  // ---- task instances ----
  virtual Result<std::vector<TaskInstance>> ListTaskInstances(int64_t run_pk) = 0;
  virtual Status InsertTaskInstance(TaskInstance* ti) = 0;  // fills ti->id (for map expansion)
  virtual Status UpdateTaskInstance(const TaskInstance& ti) = 0;  // by id

  // ---- tries ----
  virtual Status InsertTry(TaskTry* task_try) = 0;  // fills task_try->id
  virtual Status UpdateTry(const TaskTry& task_try) = 0;  // by id
  // Undoes the insert of a try that never started (a declined standby): its number is used
  // again by the next try. NotFound for an unknown id.
  virtual Status DeleteTry(int64_t id) = 0;
  virtual Result<std::vector<TaskTry>> ListTries(int64_t ti_pk) = 0;  // by try_number
  // Tries in state queued or running (for adoption after a restart).
  virtual Result<std::vector<TaskTry>> ListActiveTries() = 0;

  // The newest successful try with a cache key of (dag_id, task_id, map_index), in any run.
  virtual Result<std::optional<CachedResult>> LatestCachedResult(const std::string& dag_id, const std::string& task_id,
                                                                 int map_index) = 0;

  // ---- counts for /metrics: state token -> number of rows ----
  virtual Result<std::map<std::string, int64_t>> CountRunsByState() = 0;
  virtual Result<std::map<std::string, int64_t>> CountTaskInstancesByState() = 0;
};

// Opens (creating if missing) the SQLite database at `path` in WAL mode with foreign keys on.
// Does not migrate; call Migrate().
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace nightshift

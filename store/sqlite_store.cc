#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nightshift {
namespace {

// ---------------------------------------------------------------------------------------------
// Errors

// The first line of a statement, short enough for a log line, to say which SQL failed.
std::string SqlContext(const char* sql) {
  std::string_view text = sql == nullptr ? "" : sql;
  text = text.substr(0, std::min(text.find('\n'), size_t{80}));
  return std::string(text);
}

// Every SQLite failure becomes a Status carrying SQLite's own message. The code is chosen so
// that callers can react: a taken key is AlreadyExists (409 in the API), a lock held too long
// by another process is Busy (worth retrying), a damaged file is Corruption, and a file system
// that takes no more writes (full, read-only, failing) is Unavailable (the API's 503).
Status StatusFor(int rc, std::string message) {
  switch (rc & 0xff) {
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
      return Status::Unavailable(std::move(message));
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return Status::AlreadyExists(std::move(message));
      }
      return Status::InvalidArgument(std::move(message));
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Busy(std::move(message));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::Corruption(std::move(message));
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
    case SQLITE_TOOBIG:
      return Status::InvalidArgument(std::move(message));
    default:
      return Status::IOError(std::move(message));
  }
}

Status SqliteError(sqlite3* db, int rc, std::string_view context) {
  return StatusFor(rc,
                   std::string(context) + ": " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

int64_t ToMillis(TimePoint t) { return t.time_since_epoch().count(); }
TimePoint FromMillis(int64_t ms) { return TimePoint(std::chrono::milliseconds(ms)); }

// ---------------------------------------------------------------------------------------------
// Statements

// A prepared statement checked out of the cache for one use. Binding errors are remembered and
// reported by the first Step, so call sites bind without checking each call. The destructor
// resets the statement and hands it back, so no early return can leave it half-stepped (which
// would keep a read snapshot open and block WAL checkpoints).
class Statement {
 public:
  // `in_use` is the cache's flag for a cached statement; nullptr for a one-off this object
  // finalizes.
  Statement(sqlite3* db, sqlite3_stmt* stmt, bool* in_use) : db_(db), stmt_(stmt), in_use_(in_use) {}
  Statement(Statement&& other) noexcept
      : db_(other.db_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        in_use_(other.in_use_),
        bind_status_(std::move(other.bind_status_)) {}
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() {
    if (stmt_ == nullptr) return;
    if (in_use_ == nullptr) {
      sqlite3_finalize(stmt_);
      return;
    }
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    *in_use_ = false;
  }

  // Binds args to parameters 1, 2, ... in order.
  template <typename... Args>
  Statement& BindAll(const Args&... args) {
    int index = 0;
    (Bind(++index, args), ...);
    return *this;
  }

  void Bind(int index, int64_t value) { Check(index, sqlite3_bind_int64(stmt_, index, value)); }
  void Bind(int index, int value) { Bind(index, static_cast<int64_t>(value)); }
  void Bind(int index, bool value) { Bind(index, static_cast<int64_t>(value ? 1 : 0)); }
  void Bind(int index, double value) { Check(index, sqlite3_bind_double(stmt_, index, value)); }
  void Bind(int index, TimePoint value) { Bind(index, ToMillis(value)); }
  void Bind(int index, std::string_view value) {
    Check(index,
          sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  void Bind(int index, const std::string& value) { Bind(index, std::string_view(value)); }
  void Bind(int index, const char* value) { Bind(index, std::string_view(value)); }
  void Bind(int index, std::nullopt_t) { Check(index, sqlite3_bind_null(stmt_, index)); }
  template <typename T>
  void Bind(int index, const std::optional<T>& value) {
    if (value.has_value()) {
      Bind(index, *value);
    } else {
      Bind(index, std::nullopt);
    }
  }

  // Steps once; *has_row says whether a row is now readable.
  Status Step(bool* has_row) {
    *has_row = false;
    if (!bind_status_.ok()) return bind_status_;
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
      *has_row = true;
      return Status::OK();
    }
    if (rc == SQLITE_DONE) return Status::OK();
    return SqliteError(db_, rc, SqlContext(sqlite3_sql(stmt_)));
  }

  // Steps to the end, ignoring rows (writes, PRAGMAs with output).
  Status Run() {
    bool has_row = true;
    while (has_row) {
      Status s = Step(&has_row);
      if (!s.ok()) return s;
    }
    return Status::OK();
  }

  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  int Int32(int col) const { return sqlite3_column_int(stmt_, col); }
  bool Bool(int col) const { return Int(col) != 0; }
  TimePoint Time(int col) const { return FromMillis(Int(col)); }
  std::string Text(int col) const {
    // Read the pointer before the size: that is the order SQLite documents as safe.
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    if (text == nullptr) return std::string();
    return std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  std::optional<int64_t> OptInt(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<int64_t>(Int(col));
  }
  std::optional<int> OptInt32(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<int>(Int32(col));
  }
  std::optional<double> OptDouble(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<double>(sqlite3_column_double(stmt_, col));
  }
  std::optional<TimePoint> OptTime(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<TimePoint>(Time(col));
  }
  std::optional<std::string> OptText(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<std::string>(Text(col));
  }

 private:
  void Check(int index, int rc) {
    if (rc == SQLITE_OK || !bind_status_.ok()) return;
    bind_status_ =
        SqliteError(db_, rc, SqlContext(sqlite3_sql(stmt_)) + " (parameter " + std::to_string(index) + ")");
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  bool* in_use_;
  Status bind_status_;
};

// ---------------------------------------------------------------------------------------------
// Row mapping. Column lists are macros so each SQL statement is one literal, and so one key of
// the statement cache. Their order must match the Read* and Bind* functions below.

#define NS_DAG_COLUMNS "dag_id, is_paused, fileloc, last_parsed"
#define NS_RUN_COLUMNS                                                                          \
  "id, dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, " \
  "queued_at, start_date, end_date, conf, dag_snapshot, callback_done"
// The same columns with an empty dag_snapshot: what lists and the API read. A snapshot is the
// whole DAG (megabytes for a 10,000-task DAG); only the scheduler needs it.
#define NS_RUN_COLUMNS_NO_SNAPSHOT                                                              \
  "id, dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, " \
  "queued_at, start_date, end_date, conf, '', callback_done"
// Without id: the order of INSERT values and UPDATE assignments.
#define NS_TI_FIELDS                                                                                \
  "run_pk, task_id, map_index, state, try_number, queued_at, start_date, end_date, next_retry_at, " \
  "pool, priority_weight, pid, external_id, progress, output, waiting_reason, cached, max_tries, window_kills"
#define NS_TRY_FIELDS \
  "ti_pk, try_number, state, start_date, end_date, exit_code, pid, external_id, log_path, reason, cache_key"

DagRecord ReadDag(const Statement& s) {
  DagRecord dag;
  dag.dag_id = s.Text(0);
  dag.is_paused = s.Bool(1);
  dag.fileloc = s.Text(2);
  dag.last_parsed = s.OptTime(3);
  return dag;
}

Status UnknownState(std::string_view table, int64_t id, std::string_view token) {
  return Status::Corruption(std::string(table) + " row " + std::to_string(id) + " has unknown state \"" +
                            std::string(token) + "\"");
}

Status ReadRun(const Statement& s, DagRun* run) {
  run->id = s.Int(0);
  run->dag_id = s.Text(1);
  run->run_id = s.Text(2);
  run->run_type = s.Text(3);
  std::string state = s.Text(4);
  std::optional<RunState> parsed = ParseRunState(state);
  if (!parsed) return UnknownState("dag_runs", run->id, state);
  run->state = *parsed;
  run->logical_date = s.Time(5);
  run->data_interval_start = s.OptTime(6);
  run->data_interval_end = s.OptTime(7);
  run->queued_at = s.OptTime(8);
  run->start_date = s.OptTime(9);
  run->end_date = s.OptTime(10);
  run->conf = s.Text(11);
  run->dag_snapshot = s.Text(12);
  run->callback_done = s.Bool(13);
  return Status::OK();
}

// Columns: id, then NS_TI_FIELDS.
Status ReadTaskInstance(const Statement& s, TaskInstance* ti) {
  ti->id = s.Int(0);
  ti->run_pk = s.Int(1);
  ti->task_id = s.Text(2);
  ti->map_index = s.Int32(3);
  std::string state = s.Text(4);
  std::optional<TaskState> parsed = ParseTaskState(state);
  if (!parsed) return UnknownState("task_instances", ti->id, state);
  ti->state = *parsed;
  ti->try_number = s.Int32(5);
  ti->queued_at = s.OptTime(6);
  ti->start_date = s.OptTime(7);
  ti->end_date = s.OptTime(8);
  ti->next_retry_at = s.OptTime(9);
  ti->pool = s.Text(10);
  ti->priority_weight = s.Int32(11);
  ti->pid = s.OptInt(12);
  ti->external_id = s.OptText(13);
  ti->progress = s.OptDouble(14);
  ti->output = s.OptText(15);
  ti->waiting_reason = s.OptText(16);
  ti->cached = s.Bool(17);
  ti->max_tries = s.Int32(18);
  ti->window_kills = s.Int32(19);
  return Status::OK();
}

// Columns: id, then NS_TRY_FIELDS.
Status ReadTry(const Statement& s, TaskTry* task_try) {
  task_try->id = s.Int(0);
  task_try->ti_pk = s.Int(1);
  task_try->try_number = s.Int32(2);
  std::string state = s.Text(3);
  std::optional<TaskState> parsed = ParseTaskState(state);
  if (!parsed) return UnknownState("task_tries", task_try->id, state);
  task_try->state = *parsed;
  task_try->start_date = s.OptTime(4);
  task_try->end_date = s.OptTime(5);
  task_try->exit_code = s.OptInt32(6);
  task_try->pid = s.OptInt(7);
  task_try->external_id = s.OptText(8);
  task_try->log_path = s.Text(9);
  task_try->reason = s.OptText(10);
  task_try->cache_key = s.OptText(11);
  return Status::OK();
}

void BindRunFields(Statement& s, const DagRun& run) {
  s.BindAll(run.dag_id, run.run_id, run.run_type, ToString(run.state), run.logical_date,
            run.data_interval_start, run.data_interval_end, run.queued_at, run.start_date, run.end_date,
            run.conf, run.dag_snapshot, run.callback_done);
}

void BindTaskInstanceFields(Statement& s, const TaskInstance& ti) {
  s.BindAll(ti.run_pk, ti.task_id, ti.map_index, ToString(ti.state), ti.try_number, ti.queued_at,
            ti.start_date, ti.end_date, ti.next_retry_at, ti.pool, ti.priority_weight, ti.pid, ti.external_id,
            ti.progress, ti.output, ti.waiting_reason, ti.cached, ti.max_tries, ti.window_kills);
}

void BindTryFields(Statement& s, const TaskTry& t) {
  s.BindAll(t.ti_pk, t.try_number, ToString(t.state), t.start_date, t.end_date, t.exit_code, t.pid,
            t.external_id, t.log_path, t.reason, t.cache_key);
}

// ---------------------------------------------------------------------------------------------
// The store

class SqliteStore final : public Store {
 public:
  SqliteStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~SqliteStore() override;

  Status Configure(const SqliteStoreOptions& options);

  Status Migrate() override;
  Result<int> SchemaVersion() override;
  Status Check(std::vector<std::string>* problems) override;
  Status InTransaction(const std::function<Status()>& body) override;

  Status UpsertDag(const DagRecord& dag) override;
  Result<std::optional<DagRecord>> GetDag(const std::string& dag_id) override;
  Result<std::vector<DagRecord>> ListDags() override;
  Result<DagsVersion> GetDagsVersion() override;
  Status SetPaused(const std::string& dag_id, bool paused) override;

  Status ReplaceImportErrors(const std::vector<ImportError>& errors) override;
  Result<std::vector<ImportError>> ListImportErrors() override;

  Status CreateRun(DagRun* run, std::vector<TaskInstance>* task_instances) override;
  Result<std::optional<DagRun>> GetRun(const std::string& dag_id, const std::string& run_id) override;
  Result<std::optional<DagRun>> GetRunSummary(const std::string& dag_id, const std::string& run_id) override;
  Result<std::optional<DagRun>> GetRunById(int64_t run_pk) override;
  Result<RunPage> ListRuns(const RunQuery& query) override;
  Result<std::vector<DagRun>> ListUnfinishedRuns() override;
  Result<std::optional<DagRun>> LatestRun(const std::string& dag_id, const std::string& run_type) override;
  Status UpdateRun(const DagRun& run) override;
  Status DeleteRun(int64_t run_pk) override;

  Result<std::vector<TaskInstance>> ListTaskInstances(int64_t run_pk) override;
  Status InsertTaskInstance(TaskInstance* ti) override;
  Status UpdateTaskInstance(const TaskInstance& ti) override;

  Status InsertTry(TaskTry* task_try) override;
  Status UpdateTry(const TaskTry& task_try) override;
  Status DeleteTry(int64_t id) override;
  Result<std::vector<TaskTry>> ListTries(int64_t ti_pk) override;
  Result<std::vector<TaskTry>> ListActiveTries() override;
  Result<std::optional<CachedResult>> LatestCachedResult(const std::string& dag_id, const std::string& task_id,
                                                         int map_index) override;
  Result<std::map<std::string, int64_t>> CountRunsByState() override;
  Result<std::map<std::string, int64_t>> CountTaskInstancesByState() override;
  Result<std::map<std::string, int64_t>> CountByState(const char* sql);

 private:
  struct CachedStatement {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };

  // Everything below requires mu_ to be held.
  Result<Statement> Prepare(const std::string& sql);
  Status Exec(const std::string& sql);
  Result<int> SchemaVersionLocked();
  Status ApplyMigration(const EmbeddedFile& migration, int number);
  Status CheckInvariants(std::vector<std::string>* problems);
  Result<std::optional<DagRun>> QueryOneRun(const std::string& sql, const auto&... args);
  Result<std::vector<DagRun>> QueryRuns(const std::string& sql, const auto&... args);
  Result<std::vector<TaskTry>> QueryTries(const std::string& sql, const auto&... args);
  // Runs a single-row write by id: NotFound when no row has that id.
  Status UpdateOne(Statement& s, std::string_view what, int64_t id);

  // WAL checkpoints off the writer's thread (see Configure): SQLite calls WalHook after each
  // commit with the WAL's size; past kCheckpointPages it wakes the checkpointer, a thread with a
  // connection of its own, started on first need.
  static constexpr int kCheckpointPages = 1000;  // SQLite's own wal_autocheckpoint default
  static int WalHook(void* self, sqlite3* db, const char* name, int pages);
  void CheckpointerMain(sqlite3* db);
  void StopCheckpointer();
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_wanted_ = false;  // guarded by checkpoint_mu_
  bool checkpoint_stop_ = false;    // guarded by checkpoint_mu_
  std::thread checkpointer_;        // started by WalHook (under mu_), joined by StopCheckpointer
  bool checkpointer_failed_ = false;  // under mu_: checkpoints went back to the committing thread

  // One connection, shared by all threads; recursive because an InTransaction body calls back
  // into the store on the same thread.
  std::recursive_mutex mu_;
  uint64_t dags_writes_ = 0;  // writes to the dags table through this store (GetDagsVersion)
  sqlite3* db_;  // protected by mu_
  const std::string path_;
  std::unordered_map<std::string, CachedStatement> cache_;  // protected by mu_; nodes never move
  int depth_ = 0;                                           // protected by mu_; open InTransaction levels
};

SqliteStore::~SqliteStore() {
  {
    // No checkpointer may start after this (PRAGMA optimize below may commit); closing the
    // connection checkpoints the WAL one last time on this thread.
    std::lock_guard lock(mu_);
    sqlite3_wal_hook(db_, nullptr, nullptr);
  }
  StopCheckpointer();
  std::lock_guard lock(mu_);
  // Lets SQLite refresh its planner statistics, as it recommends before closing.
  sqlite3_exec(db_, "PRAGMA optimize", nullptr, nullptr, nullptr);
  for (auto& [sql, cached] : cache_) sqlite3_finalize(cached.stmt);
  cache_.clear();
  // The last connection to close checkpoints the WAL into the database file.
  sqlite3_close_v2(db_);
}

int SqliteStore::WalHook(void* self, sqlite3* db, const char* /*name*/, int pages) {
  auto* store = static_cast<SqliteStore*>(self);
  if (pages < kCheckpointPages) return SQLITE_OK;
  // Called inside the commit, on the committing thread, with mu_ held.
  if (!store->checkpointer_.joinable() && !store->checkpointer_failed_) {
    sqlite3* own = nullptr;
    int rc = sqlite3_open_v2(store->path_.c_str(), &own, SQLITE_OPEN_READWRITE, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(own, 1000);
    if (rc == SQLITE_OK) {
      try {
        store->checkpointer_ = std::thread([store, own] { store->CheckpointerMain(own); });
      } catch (const std::system_error&) {
        rc = SQLITE_ERROR;
      }
    }
    if (rc != SQLITE_OK) {
      sqlite3_close_v2(own);
      // No thread: checkpoint here, as SQLite's own auto-checkpoint would, from now on.
      store->checkpointer_failed_ = true;
      sqlite3_wal_autocheckpoint(db, kCheckpointPages);
      sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      return SQLITE_OK;
    }
  }
  {
    std::lock_guard lock(store->checkpoint_mu_);
    store->checkpoint_wanted_ = true;
  }
  store->checkpoint_cv_.notify_one();
  return SQLITE_OK;
}

void SqliteStore::CheckpointerMain(sqlite3* db) {
  // A connection opens the file (and finds it in WAL mode) on its first read; a checkpoint
  // before that does nothing.
  sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
  std::unique_lock lock(checkpoint_mu_);
  while (true) {
    checkpoint_cv_.wait(lock, [this] { return checkpoint_wanted_ || checkpoint_stop_; });
    if (checkpoint_stop_) break;
    checkpoint_wanted_ = false;
    lock.unlock();
    // PASSIVE: copies what no reader still needs and never blocks the writer, which keeps
    // committing meanwhile: the bulk of the copying and syncing happens here.
    sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    {
      // Then the few frames committed meanwhile, between two of the writer's transactions (mu_
      // is held for a whole InTransaction): the WAL is then wholly copied while no transaction
      // is open, which is what lets the next write start the WAL over instead of growing it.
      std::lock_guard writer(mu_);
      sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    }
    lock.lock();
  }
  lock.unlock();
  sqlite3_close_v2(db);
}

void SqliteStore::StopCheckpointer() {
  {
    std::lock_guard lock(checkpoint_mu_);
    checkpoint_stop_ = true;
  }
  checkpoint_cv_.notify_one();
  if (checkpointer_.joinable()) checkpointer_.join();
}

Result<Statement> SqliteStore::Prepare(const std::string& sql) {
  auto [it, inserted] = cache_.try_emplace(sql);
  CachedStatement& cached = it->second;
  if (cached.stmt == nullptr) {
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size() + 1), SQLITE_PREPARE_PERSISTENT,
                                &cached.stmt, nullptr);
    if (rc != SQLITE_OK) {
      Status s = SqliteError(db_, rc, SqlContext(sql.c_str()));
      sqlite3_finalize(cached.stmt);
      cache_.erase(it);
      return s;
    }
  }
  if (!cached.in_use) {
    cached.in_use = true;
    return Statement(db_, cached.stmt, &cached.in_use);
  }
  // The same SQL is already being stepped further up the stack (a nested call); resetting it
  // would corrupt that caller's iteration, so this use gets a statement of its own.
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size() + 1), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return SqliteError(db_, rc, SqlContext(sql.c_str()));
  }
  return Statement(db_, stmt, nullptr);
}

Status SqliteStore::Exec(const std::string& sql) {
  Result<Statement> s = Prepare(sql);
  if (!s.ok()) return s.status();
  return s->Run();
}

Status SqliteStore::Configure(const SqliteStoreOptions& options) {
  std::lock_guard lock(mu_);
  sqlite3_extended_result_codes(db_, 1);
  // Set first: switching to WAL itself needs a lock another process may hold for a moment.
  int rc = sqlite3_busy_timeout(db_, options.busy_timeout_ms);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, "busy_timeout");

  // WAL: readers (the API, `db check`) never block the scheduler's writes, and a commit is one
  // append to the log, so kill -9 at any point leaves either the old or the new state.
  Result<Statement> mode = Prepare("PRAGMA journal_mode = WAL");
  if (!mode.ok()) return mode.status();
  bool has_row = false;
  Status s = mode->Step(&has_row);
  if (!s.ok()) return s;
  std::string journal_mode = has_row ? mode->Text(0) : "";
  if (journal_mode != "wal" && !(path_ == ":memory:" && journal_mode == "memory")) {
    return Status::IOError(path_ + ": cannot switch to WAL (journal_mode is \"" + journal_mode + "\")");
  }

  // In WAL mode, NORMAL syncs the log only at checkpoints. A committed transaction is in the
  // log (in the OS page cache) before COMMIT returns, so it survives any crash of this process,
  // kill -9 included; only an OS crash or power loss can drop the newest commits, and even then
  // the file stays consistent. The scheduler recovers from a lost tail exactly as from an earlier
  // crash (the task processes died with the machine anyway), while FULL would cost an fsync per
  // state change and per progress update. Deployments that want power-loss durability opt in.
  s = Exec(options.sync_every_commit ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
  if (!s.ok()) return s;
  // Keeps the WAL file from staying large after a burst of writes.
  s = Exec("PRAGMA journal_size_limit = 67108864");
  if (!s.ok()) return s;
  // Checkpoints (copying the WAL into the database file, with an fsync of each under NORMAL)
  // run on a thread of their own instead of inside whichever commit finds the WAL past 1000
  // pages: that commit used to take milliseconds longer (the scheduler's dispatch latency p99).
  // Same trigger, same durability: a commit is in the WAL when COMMIT returns, and the WAL is
  // synced when it is checkpointed, only no longer by the thread that committed.
  if (path_ != ":memory:" && options.background_checkpoint) sqlite3_wal_hook(db_, &SqliteStore::WalHook, this);

  // Off by default in SQLite and per connection: without it ON DELETE CASCADE and the
  // references from runs to DAGs would silently not hold.
  s = Exec("PRAGMA foreign_keys = ON");
  if (!s.ok()) return s;
  Result<Statement> fk = Prepare("PRAGMA foreign_keys");
  if (!fk.ok()) return fk.status();
  s = fk->Step(&has_row);
  if (!s.ok()) return s;
  if (!has_row || fk->Int(0) != 1) return Status::IOError(path_ + ": SQLite refuses to enforce foreign keys");
  return Status::OK();
}

// ---- schema ---------------------------------------------------------------------------------

Result<int> SqliteStore::SchemaVersionLocked() {
  Result<Statement> exists =
      Prepare("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'");
  if (!exists.ok()) return exists.status();
  bool has_row = false;
  Status s = exists->Step(&has_row);
  if (!s.ok()) return s;
  if (!has_row || exists->Int(0) == 0) return 0;

  Result<Statement> max = Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  if (!max.ok()) return max.status();
  s = max->Step(&has_row);
  if (!s.ok()) return s;
  return has_row ? max->Int32(0) : 0;
}

Result<int> SqliteStore::SchemaVersion() {
  std::lock_guard lock(mu_);
  return SchemaVersionLocked();
}

Status SqliteStore::Migrate() {
  std::lock_guard lock(mu_);
  // A migration needs foreign keys off, and SQLite ignores that PRAGMA inside a transaction.
  if (depth_ > 0) return Status::InvalidArgument("Migrate must not be called inside InTransaction");
  const std::vector<EmbeddedFile>& migrations = EmbeddedMigrations();
  Status s = ValidateMigrationNames(migrations);
  if (!s.ok()) return s;

  s = Exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT");
  if (!s.ok()) return s;
  Result<int> current = SchemaVersionLocked();
  if (!current.ok()) return current.status();
  const int latest = static_cast<int>(migrations.size());
  if (*current > latest) {
    // Running old code on a newer schema could write rows the newer code considers corrupt.
    return Status::InvalidArgument(path_ + " has schema version " + std::to_string(*current) +
                                   ", newer than this build of nightshift knows (" + std::to_string(latest) +
                                   "); upgrade nightshift");
  }

  std::vector<const EmbeddedFile*> ordered;
  for (const EmbeddedFile& migration : migrations) ordered.push_back(&migration);
  std::sort(ordered.begin(), ordered.end(), [](const EmbeddedFile* a, const EmbeddedFile* b) {
    return MigrationNumber(*a) < MigrationNumber(*b);
  });
  for (const EmbeddedFile* migration : ordered) {
    int number = MigrationNumber(*migration);
    if (number <= *current) continue;
    s = ApplyMigration(*migration, number);
    if (!s.ok()) return s;
  }
  return Status::OK();
}

// SQLite's recipe for schema changes: foreign keys off outside the transaction (so rebuilding a
// table cannot cascade-delete its children), foreign_key_check before COMMIT.
Status SqliteStore::ApplyMigration(const EmbeddedFile& migration, int number) {
  const std::string name(migration.name);
  Status s = Exec("PRAGMA foreign_keys = OFF");
  if (!s.ok()) return s;

  s = [&]() -> Status {
    Status st = Exec("BEGIN IMMEDIATE");
    if (!st.ok()) return st;
    // Another process (say `nightshift db migrate` next to the daemon) may have applied it
    // while this one waited for the write lock.
    Result<int> version = SchemaVersionLocked();
    if (!version.ok()) return version.status();
    if (*version >= number) return Exec("COMMIT");

    // sqlite3_exec runs every statement of the file; it needs a NUL-terminated copy.
    const std::string script(migration.contents);
    char* error = nullptr;
    int rc = sqlite3_exec(db_, script.c_str(), nullptr, nullptr, &error);
    if (rc != SQLITE_OK) {
      std::string message = "migration " + name + ": " + (error != nullptr ? error : sqlite3_errstr(rc));
      sqlite3_free(error);
      return StatusFor(rc, std::move(message));
    }

    Result<Statement> fk = Prepare("PRAGMA foreign_key_check");
    if (!fk.ok()) return fk.status();
    bool has_row = false;
    st = fk->Step(&has_row);
    if (!st.ok()) return st;
    if (has_row) {
      return Status::Corruption("migration " + name + " leaves rows of " + fk->Text(0) +
                                " referring to missing rows of " + fk->Text(2));
    }

    Result<Statement> record =
        Prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
    if (!record.ok()) return record.status();
    const auto now =
        std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
    st = record->BindAll(number, name, ToMillis(now)).Run();
    if (!st.ok()) return st;
    return Exec("COMMIT");
  }();

  // Whatever failed above, leave no transaction open and foreign keys back on.
  if (sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  Status on = Exec("PRAGMA foreign_keys = ON");
  if (!s.ok()) return s;
  return on;
}

Status SqliteStore::InTransaction(const std::function<Status()>& body) {
  std::lock_guard lock(mu_);
  // The outermost level takes the write lock up front (IMMEDIATE): a deferred transaction that
  // reads and then writes can fail with SQLITE_BUSY_SNAPSHOT, which busy_timeout cannot wait out.
  // Inner levels are savepoints: they join the outer transaction (nothing is durable before
  // its COMMIT) yet a failing inner body undoes only its own writes, so a caller that handles
  // that error (say AlreadyExists) does not commit half of the inner work.
  const bool outermost = depth_ == 0;
  const std::string savepoint = "nightshift_" + std::to_string(depth_);
  Status s = Exec(outermost ? "BEGIN IMMEDIATE" : "SAVEPOINT " + savepoint);
  if (!s.ok()) return s;

  auto undo = [&] {
    // SQLite rolls back by itself on some errors (disk full, I/O); then there is nothing to undo.
    if (sqlite3_get_autocommit(db_) != 0) return;
    if (outermost) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    } else {
      const std::string sql = "ROLLBACK TO " + savepoint + "; RELEASE " + savepoint;
      sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    }
  };

  ++depth_;
  Status result;
  try {
    result = body();
  } catch (...) {
    // The project does not use exceptions, but a bad_alloc must not leave the connection inside
    // a transaction every later call would silently join.
    --depth_;
    undo();
    throw;
  }
  --depth_;

  if (!result.ok()) {
    undo();
    return result;
  }
  if (sqlite3_get_autocommit(db_) != 0) {
    return Status::IOError("SQLite rolled the transaction back after an error the caller ignored");
  }
  s = Exec(outermost ? "COMMIT" : "RELEASE " + savepoint);
  if (!s.ok()) {
    undo();
    return s;
  }
  return Status::OK();
}

// ---- check ----------------------------------------------------------------------------------

Status SqliteStore::Check(std::vector<std::string>* problems) {
  std::lock_guard lock(mu_);
  bool has_row = false;

  Result<Statement> integrity = Prepare("PRAGMA integrity_check");
  if (!integrity.ok()) return integrity.status();
  while (true) {
    Status s = integrity->Step(&has_row);
    if (!s.ok()) return s;
    if (!has_row) break;
    std::string line = integrity->Text(0);
    if (line != "ok") problems->push_back("integrity_check: " + line);
  }

  Result<Statement> fk = Prepare("PRAGMA foreign_key_check");
  if (!fk.ok()) return fk.status();
  while (true) {
    Status s = fk->Step(&has_row);
    if (!s.ok()) return s;
    if (!has_row) break;
    problems->push_back("foreign key: " + fk->Text(0) + " row " + std::to_string(fk->Int(1)) +
                        " refers to a missing row of " + fk->Text(2));
  }

  Result<int> version = SchemaVersionLocked();
  if (!version.ok()) return version.status();
  const int latest = static_cast<int>(EmbeddedMigrations().size());
  if (*version != latest) {
    // The invariant queries are written for the latest schema; on another one they would fail
    // or mislead.
    problems->push_back("schema version is " + std::to_string(*version) + ", this build expects " +
                        std::to_string(latest) + (*version < latest ? ": run `nightshift db migrate`" : ""));
    return Status::OK();
  }
  return CheckInvariants(problems);
}

Status SqliteStore::CheckInvariants(std::vector<std::string>* problems) {
  bool has_row = false;
  // Steps `stmt` to the end, calling `describe` on each row.
  auto for_each_row = [&](Statement& stmt, const auto& describe) -> Status {
    while (true) {
      Status s = stmt.Step(&has_row);
      if (!s.ok()) return s;
      if (!has_row) return Status::OK();
      describe(stmt);
    }
  };
  // "task instance 7 (nightly_etl / scheduled__... / extract[3])"; columns from `col` on:
  // ti.id, r.dag_id, r.run_id, ti.task_id, ti.map_index.
  auto ti_name = [](const Statement& s, int col) {
    std::string name = "task instance " + std::to_string(s.Int(col)) + " (" + s.Text(col + 1) + " / " +
                       s.Text(col + 2) + " / " + s.Text(col + 3);
    if (s.Int(col + 4) >= 0) name += "[" + std::to_string(s.Int(col + 4)) + "]";
    return name + ")";
  };
  const std::string_view success = ToString(RunState::kSuccess);
  const std::string_view failed = ToString(RunState::kFailed);

  // Tries are numbered 1..try_number: with UNIQUE (ti_pk, try_number), a count, minimum and
  // maximum that agree with try_number prove it.
  Result<Statement> tries = Prepare(
      "SELECT ti.id, r.dag_id, r.run_id, ti.task_id, ti.map_index, ti.try_number, COUNT(t.id), "
      "MIN(t.try_number), MAX(t.try_number) "
      "FROM task_instances ti LEFT JOIN dag_runs r ON r.id = ti.run_pk "
      "LEFT JOIN task_tries t ON t.ti_pk = ti.id GROUP BY ti.id "
      "HAVING COUNT(t.id) <> ti.try_number "
      "OR (COUNT(t.id) > 0 AND (MIN(t.try_number) <> 1 OR MAX(t.try_number) <> ti.try_number)) "
      "ORDER BY ti.id");
  if (!tries.ok()) return tries.status();
  Status s = for_each_row(*tries, [&](const Statement& row) {
    std::string line = ti_name(row, 0) + ": try_number " + std::to_string(row.Int(5)) + " but " +
                       std::to_string(row.Int(6)) + " tries recorded";
    if (row.Int(6) > 0) {
      line += ", numbered " + std::to_string(row.Int(7)) + ".." + std::to_string(row.Int(8));
    }
    problems->push_back(line);
  });
  if (!s.ok()) return s;

  Result<Statement> live_in_finished = Prepare(
      "SELECT ti.id, r.dag_id, r.run_id, ti.task_id, ti.map_index, ti.state, r.state "
      "FROM task_instances ti JOIN dag_runs r ON r.id = ti.run_pk "
      "WHERE ti.state IN (?, ?) AND r.state IN (?, ?) ORDER BY ti.id");
  if (!live_in_finished.ok()) return live_in_finished.status();
  live_in_finished->BindAll(ToString(TaskState::kQueued), ToString(TaskState::kRunning), success, failed);
  s = for_each_row(*live_in_finished, [&](const Statement& row) {
    problems->push_back(ti_name(row, 0) + ": " + row.Text(5) + " in a run that is " + row.Text(6));
  });
  if (!s.ok()) return s;

  Result<Statement> no_end = Prepare(
      "SELECT id, dag_id, run_id, state FROM dag_runs WHERE state IN (?, ?) AND end_date IS NULL ORDER BY "
      "id");
  if (!no_end.ok()) return no_end.status();
  no_end->BindAll(success, failed);
  s = for_each_row(*no_end, [&](const Statement& row) {
    problems->push_back("run " + std::to_string(row.Int(0)) + " (" + row.Text(1) + " / " + row.Text(2) +
                        "): " + row.Text(3) + " but no end_date");
  });
  if (!s.ok()) return s;

  // CHECK constraints guard the state columns, but a row written with them off (or by another
  // tool) would make every read of it fail; the tokens come from core/states.cc.
  struct StateColumn {
    const char* sql;
    const char* table;
    bool is_run;
  };
  const StateColumn columns[] = {
      {"SELECT state, COUNT(*), MIN(id) FROM dag_runs GROUP BY state", "dag_runs", true},
      {"SELECT state, COUNT(*), MIN(id) FROM task_instances GROUP BY state", "task_instances", false},
      {"SELECT state, COUNT(*), MIN(id) FROM task_tries GROUP BY state", "task_tries", false},
  };
  for (const StateColumn& column : columns) {
    Result<Statement> states = Prepare(column.sql);
    if (!states.ok()) return states.status();
    s = for_each_row(*states, [&](const Statement& row) {
      std::string token = row.Text(0);
      bool known = column.is_run ? ParseRunState(token).has_value() : ParseTaskState(token).has_value();
      if (known) return;
      problems->push_back(std::string(column.table) + ": " + std::to_string(row.Int(1)) +
                          " row(s) with unknown state \"" + token + "\" (first id " +
                          std::to_string(row.Int(2)) + ")");
    });
    if (!s.ok()) return s;
  }
  return Status::OK();
}

// ---- DAGs -----------------------------------------------------------------------------------

Status SqliteStore::UpsertDag(const DagRecord& dag) {
  std::lock_guard lock(mu_);
  Result<Statement> s = Prepare(
      "INSERT INTO dags (" NS_DAG_COLUMNS
      ") VALUES (?, ?, ?, ?) "
      "ON CONFLICT (dag_id) DO UPDATE SET fileloc = excluded.fileloc, last_parsed = excluded.last_parsed");
  if (!s.ok()) return s.status();
  ++dags_writes_;
  return s->BindAll(dag.dag_id, dag.is_paused, dag.fileloc, dag.last_parsed).Run();
}

Result<DagsVersion> SqliteStore::GetDagsVersion() {
  std::lock_guard lock(mu_);
  Result<Statement> s = Prepare("PRAGMA data_version");
  if (!s.ok()) return s.status();
  bool has_row = false;
  if (Status st = s->Step(&has_row); !st.ok()) return st;
  return DagsVersion{has_row ? s->Int(0) : 0, dags_writes_};
}

Result<std::optional<DagRecord>> SqliteStore::GetDag(const std::string& dag_id) {
  std::lock_guard lock(mu_);
  Result<Statement> s = Prepare("SELECT " NS_DAG_COLUMNS " FROM dags WHERE dag_id = ?");
  if (!s.ok()) return s.status();
  s->BindAll(dag_id);
  bool has_row = false;
  Status st = s->Step(&has_row);
  if (!st.ok()) return st;
  if (!has_row) return std::optional<DagRecord>();
  return std::optional<DagRecord>(ReadDag(*s));
}

Result<std::vector<DagRecord>> SqliteStore::ListDags() {
  std::lock_guard lock(mu_);
  Result<Statement> s = Prepare("SELECT " NS_DAG_COLUMNS " FROM dags ORDER BY dag_id");
  if (!s.ok()) return s.status();
  std::vector<DagRecord> dags;
  while (true) {
    bool has_row = false;
    Status st = s->Step(&has_row);
    if (!st.ok()) return st;
    if (!has_row) break;
    dags.push_back(ReadDag(*s));
  }
  return dags;
}

Status SqliteStore::UpdateOne(Statement& s, std::string_view what, int64_t id) {
  Status st = s.Run();
  if (!st.ok()) return st;
  if (sqlite3_changes64(db_) == 0) return Status::NotFound(std::string(what) + " " + std::to_string(id));
  return Status::OK();
}

Status SqliteStore::SetPaused(const std::string& dag_id, bool paused) {
  std::lock_guard lock(mu_);
  Result<Statement> s = Prepare("UPDATE dags SET is_paused = ? WHERE dag_id = ?");
  if (!s.ok()) return s.status();
  ++dags_writes_;
  Status st = s->BindAll(paused, dag_id).Run();
  if (!st.ok()) return st;
  if (sqlite3_changes64(db_) == 0) return Status::NotFound("dag " + dag_id);
  return Status::OK();
}

// ---- import errors --------------------------------------------------------------------------

Status SqliteStore::ReplaceImportErrors(const std::vector<ImportError>& errors) {
  std::lock_guard lock(mu_);
  return InTransaction([&]() -> Status {
    Status s = Exec("DELETE FROM import_errors");
    if (!s.ok()) return s;
    for (const ImportError& error : errors) {
      Result<Statement> insert =
          Prepare("INSERT INTO import_errors (filename, line, \"column\", message) VALUES (?, ?, ?, ?)");
      if (!insert.ok()) return insert.status();
      s = insert->BindAll(error.filename, error.line, error.column, error.message).Run();
      if (!s.ok()) return s;
    }
    return Status::OK();
  });
}

Result<std::vector<ImportError>> SqliteStore::ListImportErrors() {
  std::lock_guard lock(mu_);
  Result<Statement> s = Prepare(
      "SELECT filename, line, \"column\", message FROM import_errors ORDER BY filename, line, \"column\", "
      "id");
  if (!s.ok()) return s.status();
  std::vector<ImportError> errors;
  while (true) {
    bool has_row = false;
    Status st = s->Step(&has_row);
    if (!st.ok()) return st;
    if (!has_row) break;
    errors.push_back(ImportError{s->Text(0), s->Int32(1), s->Int32(2), s->Text(3)});
  }
  return errors;
}

// ---- runs -----------------------------------------------------------------------------------

Result<std::vector<DagRun>> SqliteStore::QueryRuns(const std::string& sql, const auto&... args) {
  Result<Statement> s = Prepare(sql);
  if (!s.ok()) return s.status();
  s->BindAll(args...);
  std::vector<DagRun> runs;
  while (true) {
    bool has_row = false;
    Status st = s->Step(&has_row);
    if (!st.ok()) return st;
    if (!has_row) break;
    DagRun run;
    st = ReadRun(*s, &run);
    if (!st.ok()) return st;
    runs.push_back(std::move(run));
  }
  return runs;
}

Result<std::optional<DagRun>> SqliteStore::QueryOneRun(const std::string& sql, const auto&... args) {
  Result<std::vector<DagRun>> runs = QueryRuns(sql, args...);
  if (!runs.ok()) return runs.status();
  if (runs->empty()) return std::optional<DagRun>();
  return std::optional<DagRun>(std::move(runs->front()));
}

Status SqliteStore::CreateRun(DagRun* run, std::vector<TaskInstance>* task_instances) {
  std::lock_guard lock(mu_);
  // Ids are handed back only after the commit: a rolled-back attempt must not leave the caller
  // holding ids of rows that do not exist.
  int64_t run_pk = 0;
  std::vector<int64_t> ti_ids;
  Status s = InTransaction([&]() -> Status {
    // The reference to dags would catch this too, as a bare "FOREIGN KEY constraint failed".
    Result<Statement> dag = Prepare("SELECT 1 FROM dags WHERE dag_id = ?");
    if (!dag.ok()) return dag.status();
    bool has_row = false;
    Status st = dag->BindAll(run->dag_id).Step(&has_row);
    if (!st.ok()) return st;
    if (!has_row) return Status::NotFound("dag " + run->dag_id + " is not in the store (UpsertDag first)");

    Result<Statement> insert = Prepare("INSERT INTO dag_runs (" NS_RUN_COLUMNS
                                       ") VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!insert.ok()) return insert.status();
    BindRunFields(*insert, *run);
    st = insert->Run();
    if (st.IsAlreadyExists()) {
      return Status::AlreadyExists("dag run " + run->run_id + " of dag " + run->dag_id + " already exists");
    }
    if (!st.ok()) return st;
    run_pk = sqlite3_last_insert_rowid(db_);

    for (const TaskInstance& ti : *task_instances) {
      Result<Statement> ti_insert = Prepare("INSERT INTO task_instances (" NS_TI_FIELDS
                                            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
      if (!ti_insert.ok()) return ti_insert.status();
      TaskInstance row = ti;
      row.run_pk = run_pk;
      BindTaskInstanceFields(*ti_insert, row);
      st = ti_insert->Run();
      if (!st.ok()) return st;
      ti_ids.push_back(sqlite3_last_insert_rowid(db_));
    }
    return Status::OK();
  });
  if (!s.ok()) return s;
  run->id = run_pk;
  for (size_t i = 0; i < task_instances->size(); ++i) {
    (*task_instances)[i].id = ti_ids[i];
    (*task_instances)[i].run_pk = run_pk;
  }
  return Status::OK();
}

Result<std::optional<DagRun>> SqliteStore::GetRun(const std::string& dag_id, const std::string& run_id) {
  std::lock_guard lock(mu_);
  return QueryOneRun("SELECT " NS_RUN_COLUMNS " FROM dag_runs WHERE dag_id = ? AND run_id = ?", dag_id,
                     run_id);
}

Result<std::optional<DagRun>> SqliteStore::GetRunSummary(const std::string& dag_id, const std::string& run_id) {
  std::lock_guard lock(mu_);
  return QueryOneRun("SELECT " NS_RUN_COLUMNS_NO_SNAPSHOT " FROM dag_runs WHERE dag_id = ? AND run_id = ?", dag_id,
                     run_id);
}

Result<std::optional<DagRun>> SqliteStore::GetRunById(int64_t run_pk) {
  std::lock_guard lock(mu_);
  return QueryOneRun("SELECT " NS_RUN_COLUMNS " FROM dag_runs WHERE id = ?", run_pk);
}

Result<RunPage> SqliteStore::ListRuns(const RunQuery& query) {
  std::lock_guard lock(mu_);
  if (query.limit < 0 || query.offset < 0) {
    return Status::InvalidArgument("limit and offset must not be negative");
  }
  // One SQL text per combination of filters (four at most, each cached) rather than
  // "? IS NULL OR dag_id = ?", which would keep SQLite from using the dag_id index.
  std::string where;
  if (query.dag_id) where += " WHERE dag_id = ?1";
  if (query.state) where += std::string(where.empty() ? " WHERE" : " AND") + " state = ?2";
  const std::optional<std::string_view> state =
      query.state ? std::optional<std::string_view>(ToString(*query.state)) : std::nullopt;

  RunPage page;
  Result<std::vector<DagRun>> runs = QueryRuns("SELECT " NS_RUN_COLUMNS_NO_SNAPSHOT " FROM dag_runs" + where +
                                                   " ORDER BY logical_date DESC, id DESC LIMIT ?3 OFFSET ?4",
                                               query.dag_id, state, query.limit, query.offset);
  if (!runs.ok()) return runs.status();
  page.runs = std::move(*runs);

  Result<Statement> count = Prepare("SELECT COUNT(*) FROM dag_runs" + where);
  if (!count.ok()) return count.status();
  // Only parameters the text names may be bound.
  if (query.dag_id) count->Bind(1, *query.dag_id);
  if (state) count->Bind(2, *state);
  bool has_row = false;
  Status st = count->Step(&has_row);
  if (!st.ok()) return st;
  page.total_entries = has_row ? count->Int(0) : 0;
  return page;
}

Result<std::vector<DagRun>> SqliteStore::ListUnfinishedRuns() {
  std::lock_guard lock(mu_);
  // Literal tokens, written as in the partial index dag_runs_unfinished: SQLite uses that index
  // only when the query repeats its WHERE clause.
  return QueryRuns("SELECT " NS_RUN_COLUMNS
                   " FROM dag_runs WHERE state IN ('queued', 'running') ORDER BY logical_date, id");
}

Result<std::optional<DagRun>> SqliteStore::LatestRun(const std::string& dag_id, const std::string& run_type) {
  std::lock_guard lock(mu_);
  return QueryOneRun(
      "SELECT " NS_RUN_COLUMNS
      " FROM dag_runs WHERE dag_id = ? AND run_type = ? ORDER BY logical_date DESC, id DESC LIMIT 1",
      dag_id, run_type);
}

Status SqliteStore::UpdateRun(const DagRun& run) {
  std::lock_guard lock(mu_);
  // Not the snapshot (?12, bound but unused): it is fixed when the run is created, and for a
  // large DAG it is megabytes that each change of state would write again.
  Result<Statement> s = Prepare(
      "UPDATE dag_runs SET dag_id = ?1, run_id = ?2, run_type = ?3, state = ?4, logical_date = ?5, "
      "data_interval_start = ?6, data_interval_end = ?7, queued_at = ?8, start_date = ?9, end_date = ?10, "
      "conf = ?11, callback_done = ?13 WHERE id = ?14");
  if (!s.ok()) return s.status();
  BindRunFields(*s, run);
  s->Bind(14, run.id);
  return UpdateOne(*s, "dag run", run.id);
}

Status SqliteStore::DeleteRun(int64_t run_pk) {
  std::lock_guard lock(mu_);
  return InTransaction([&]() -> Status {
    Result<std::optional<DagRun>> run = GetRunById(run_pk);
    if (!run.ok()) return run.status();
    if (!run->has_value()) return Status::NotFound("dag run " + std::to_string(run_pk));
    // Deleting a live run would pull rows from under the scheduler and orphan its processes.
    if (!IsFinished((*run)->state)) {
      return Status::InvalidArgument("dag run " + std::to_string(run_pk) + " is " +
                                     std::string(ToString((*run)->state)) +
                                     "; only finished runs can be deleted");
    }
    Result<Statement> s = Prepare("DELETE FROM dag_runs WHERE id = ?");
    if (!s.ok()) return s.status();
    return s->BindAll(run_pk).Run();
  });
}

// ---- task instances -------------------------------------------------------------------------

Result<std::vector<TaskInstance>> SqliteStore::ListTaskInstances(int64_t run_pk) {
  std::lock_guard lock(mu_);
  // Creation order: the order of the DAG's tasks, with map expansions after.
  Result<Statement> s =
      Prepare("SELECT id, " NS_TI_FIELDS " FROM task_instances WHERE run_pk = ? ORDER BY id");
  if (!s.ok()) return s.status();
  s->BindAll(run_pk);
  std::vector<TaskInstance> tis;
  while (true) {
    bool has_row = false;
    Status st = s->Step(&has_row);
    if (!st.ok()) return st;
    if (!has_row) break;
    TaskInstance ti;
    st = ReadTaskInstance(*s, &ti);
    if (!st.ok()) return st;
    tis.push_back(std::move(ti));
  }
  return tis;
}

Status SqliteStore::InsertTaskInstance(TaskInstance* ti) {
  std::lock_guard lock(mu_);
  Result<Statement> s = Prepare("INSERT INTO task_instances (" NS_TI_FIELDS
                                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!s.ok()) return s.status();
  BindTaskInstanceFields(*s, *ti);
  Status st = s->Run();
  if (!st.ok()) return st;
  ti->id = sqlite3_last_insert_rowid(db_);
  return Status::OK();
}

Status SqliteStore::UpdateTaskInstance(const TaskInstance& ti) {
  std::lock_guard lock(mu_);
  // The scheduler's common case: the row keeps its key (run_pk, task_id, map_index), so only the
  // other columns are assigned. A column in SET makes SQLite rewrite every index on it and check
  // every reference from it, whatever the value; leaving the key out spares the UNIQUE index and
  // the foreign key check on each state change. The key columns are compared instead, so a
  // changed key (a `from` expansion renumbers its placeholder) falls through to the full update.
  {
    Result<Statement> s = Prepare(
        "UPDATE task_instances SET state = ?4, try_number = ?5, queued_at = ?6, start_date = ?7, end_date = ?8, "
        "next_retry_at = ?9, pool = ?10, priority_weight = ?11, pid = ?12, external_id = ?13, progress = ?14, "
        "output = ?15, waiting_reason = ?16, cached = ?17, max_tries = ?18, window_kills = ?19 "
        "WHERE id = ?20 AND run_pk = ?1 AND task_id = ?2 AND map_index = ?3");
    if (!s.ok()) return s.status();
    BindTaskInstanceFields(*s, ti);
    s->Bind(20, ti.id);
    if (Status st = s->Run(); !st.ok()) return st;
    if (sqlite3_changes64(db_) > 0) return Status::OK();
  }
  Result<Statement> s = Prepare(
      "UPDATE task_instances SET run_pk = ?, task_id = ?, map_index = ?, state = ?, try_number = ?, "
      "queued_at = ?, "
      "start_date = ?, end_date = ?, next_retry_at = ?, pool = ?, priority_weight = ?, pid = ?, external_id "
      "= ?, "
      "progress = ?, output = ?, waiting_reason = ?, cached = ?, max_tries = ?, window_kills = ? WHERE id = ?20");
  if (!s.ok()) return s.status();
  BindTaskInstanceFields(*s, ti);
  s->Bind(20, ti.id);
  return UpdateOne(*s, "task instance", ti.id);
}

// ---- tries ----------------------------------------------------------------------------------

Result<std::vector<TaskTry>> SqliteStore::QueryTries(const std::string& sql, const auto&... args) {
  Result<Statement> s = Prepare(sql);
  if (!s.ok()) return s.status();
  s->BindAll(args...);
  std::vector<TaskTry> tries;
  while (true) {
    bool has_row = false;
    Status st = s->Step(&has_row);
    if (!st.ok()) return st;
    if (!has_row) break;
    TaskTry task_try;
    st = ReadTry(*s, &task_try);
    if (!st.ok()) return st;
    tries.push_back(std::move(task_try));
  }
  return tries;
}

Status SqliteStore::InsertTry(TaskTry* task_try) {
  std::lock_guard lock(mu_);
  Result<Statement> s =
      Prepare("INSERT INTO task_tries (" NS_TRY_FIELDS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!s.ok()) return s.status();
  BindTryFields(*s, *task_try);
  Status st = s->Run();
  if (!st.ok()) return st;
  task_try->id = sqlite3_last_insert_rowid(db_);
  return Status::OK();
}

Status SqliteStore::UpdateTry(const TaskTry& task_try) {
  std::lock_guard lock(mu_);
  // As in UpdateTaskInstance: a try keeps its key (ti_pk, try_number), log path and cache key
  // once inserted, so the common update assigns only what changes (sparing the UNIQUE index,
  // the cache key's index and the foreign key check) and compares the rest.
  {
    Result<Statement> s = Prepare(
        "UPDATE task_tries SET state = ?3, start_date = ?4, end_date = ?5, exit_code = ?6, pid = ?7, "
        "external_id = ?8, reason = ?10 "
        "WHERE id = ?12 AND ti_pk = ?1 AND try_number = ?2 AND log_path = ?9 AND cache_key IS ?11");
    if (!s.ok()) return s.status();
    BindTryFields(*s, task_try);
    s->Bind(12, task_try.id);
    if (Status st = s->Run(); !st.ok()) return st;
    if (sqlite3_changes64(db_) > 0) return Status::OK();
  }
  Result<Statement> s = Prepare(
      "UPDATE task_tries SET ti_pk = ?, try_number = ?, state = ?, start_date = ?, end_date = ?, exit_code = "
      "?, "
      "pid = ?, external_id = ?, log_path = ?, reason = ?, cache_key = ? WHERE id = ?12");
  if (!s.ok()) return s.status();
  BindTryFields(*s, task_try);
  s->Bind(12, task_try.id);
  return UpdateOne(*s, "task try", task_try.id);
}

Status SqliteStore::DeleteTry(int64_t id) {
  std::lock_guard lock(mu_);
  Result<Statement> s = Prepare("DELETE FROM task_tries WHERE id = ?");
  if (!s.ok()) return s.status();
  if (Status st = s->BindAll(id).Run(); !st.ok()) return st;
  return sqlite3_changes64(db_) > 0 ? Status::OK() : Status::NotFound("task try " + std::to_string(id));
}

Result<std::vector<TaskTry>> SqliteStore::ListTries(int64_t ti_pk) {
  std::lock_guard lock(mu_);
  return QueryTries("SELECT id, " NS_TRY_FIELDS " FROM task_tries WHERE ti_pk = ? ORDER BY try_number",
                    ti_pk);
}

Result<std::vector<TaskTry>> SqliteStore::ListActiveTries() {
  std::lock_guard lock(mu_);
  // Literal tokens, as in the partial index task_tries_active (see ListUnfinishedRuns).
  return QueryTries("SELECT id, " NS_TRY_FIELDS
                    " FROM task_tries WHERE state IN ('queued', 'running') ORDER BY id");
}

Result<std::map<std::string, int64_t>> SqliteStore::CountByState(const char* sql) {
  std::lock_guard lock(mu_);
  Result<Statement> s = Prepare(sql);
  if (!s.ok()) return s.status();
  std::map<std::string, int64_t> counts;
  while (true) {
    bool has_row = false;
    Status st = s->Step(&has_row);
    if (!st.ok()) return st;
    if (!has_row) break;
    counts[s->Text(0)] = s->Int(1);
  }
  return counts;
}

Result<std::optional<CachedResult>> SqliteStore::LatestCachedResult(const std::string& dag_id,
                                                                    const std::string& task_id, int map_index) {
  std::lock_guard lock(mu_);
  Result<Statement> s = Prepare(
      "SELECT t.cache_key, ti.output, r.run_id, t.try_number FROM task_tries t "
      "JOIN task_instances ti ON t.ti_pk = ti.id JOIN dag_runs r ON ti.run_pk = r.id "
      "WHERE r.dag_id = ? AND ti.task_id = ? AND ti.map_index = ? AND t.state = 'success' "
      "AND t.cache_key IS NOT NULL ORDER BY t.end_date DESC, t.id DESC LIMIT 1");
  if (!s.ok()) return s.status();
  s->BindAll(dag_id, task_id, map_index);
  bool has_row = false;
  if (Status st = s->Step(&has_row); !st.ok()) return st;
  if (!has_row) return std::optional<CachedResult>();
  CachedResult result;
  result.cache_key = s->Text(0);
  result.output = s->OptText(1);
  result.run_id = s->Text(2);
  result.try_number = static_cast<int>(s->Int(3));
  return std::optional<CachedResult>(result);
}

Result<std::map<std::string, int64_t>> SqliteStore::CountRunsByState() {
  return CountByState("SELECT state, count(*) FROM dag_runs GROUP BY state");
}

Result<std::map<std::string, int64_t>> SqliteStore::CountTaskInstancesByState() {
  return CountByState("SELECT state, count(*) FROM task_instances GROUP BY state");
}

#undef NS_DAG_COLUMNS
#undef NS_RUN_COLUMNS
#undef NS_RUN_COLUMNS_NO_SNAPSHOT
#undef NS_TI_FIELDS
#undef NS_TRY_FIELDS

// Before SQLite's first use in the process: no memory statistics. With them on (the default),
// every allocation SQLite makes takes a process-wide mutex to keep counters nobody reads here.
// If something opened a database before (a test, say), SQLite refuses and keeps its default.
void ConfigureSqliteOnce() {
  static std::once_flag once;
  std::call_once(once, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
}

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, const SqliteStoreOptions& options) {
  if (path.empty()) return Status::InvalidArgument("empty database path");
  if (path != ":memory:") {
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(parent, ec);
      if (ec) return Status::IOError("cannot create " + parent.string() + ": " + ec.message());
    }
  }
  ConfigureSqliteOnce();
  sqlite3* db = nullptr;
  // NOMUTEX: a store serialises every use of its connection under its own mutex (mu_), so
  // SQLite's per-call connection mutex would only be taken a second time.
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    // SQLite hands back a handle (for its error message) even when opening fails.
    Status s = SqliteError(db, rc, "opening " + path);
    sqlite3_close_v2(db);
    return s;
  }
  auto store = std::make_unique<SqliteStore>(db, path);
  Status s = store->Configure(options);
  if (!s.ok()) return s;
  return std::unique_ptr<Store>(std::move(store));
}

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  return OpenSqliteStore(path, SqliteStoreOptions());
}

}  // namespace nightshift

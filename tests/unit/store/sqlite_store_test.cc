// The SQLite store against a real database file in a fresh temporary folder per test.
#include "store/sqlite_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace nightshift {
namespace {

using std::chrono::milliseconds;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "nightshift_store_XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TimePoint At(int64_t ms) { return TimePoint(milliseconds(ms)); }
// 2026-11-28T02:00:00Z and one day.
constexpr int64_t kT0 = 1'795'831'200'000;
constexpr int64_t kDay = 86'400'000;

// Runs SQL on a connection of its own, with SQLite's defaults (foreign keys off), the way a
// person with the sqlite3 shell could damage the file.
void RawExec(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (error != nullptr ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

int64_t RawCount(const std::string& db_path, const std::string& table) {
  sqlite3* db = nullptr;
  int64_t count = -1;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    const std::string sql = "SELECT COUNT(*) FROM " + table;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      count = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return count;
}

DagRecord MakeDag(const std::string& dag_id, bool paused = false) {
  DagRecord dag;
  dag.dag_id = dag_id;
  dag.is_paused = paused;
  dag.fileloc = "/dags/" + dag_id + ".yaml";
  dag.last_parsed = At(kT0 - 1000);
  return dag;
}

DagRun MakeRun(const std::string& dag_id, const std::string& run_id, int64_t logical_ms,
               RunState state = RunState::kQueued) {
  DagRun run;
  run.dag_id = dag_id;
  run.run_id = run_id;
  run.run_type = "scheduled";
  run.state = state;
  run.logical_date = At(logical_ms);
  if (IsFinished(state)) {
    run.start_date = At(logical_ms + 10);
    run.end_date = At(logical_ms + 20);
  }
  return run;
}

// A run with every optional field set.
DagRun FullRun(const std::string& dag_id) {
  DagRun run = MakeRun(dag_id, "manual__2026-11-28T02:00:00+00:00", kT0, RunState::kRunning);
  run.run_type = "manual";
  run.data_interval_start = At(kT0 - kDay);
  run.data_interval_end = At(kT0);
  run.queued_at = At(kT0 + 1);
  run.start_date = At(kT0 + 2);
  run.end_date = At(kT0 + 3);
  run.conf = R"({"region":"eu","limit":100})";
  run.dag_snapshot = R"({"tasks":[{"task_id":"extract"}]})";
  run.callback_done = true;
  return run;
}

TaskInstance MakeTi(const std::string& task_id, int map_index = -1) {
  TaskInstance ti;
  ti.task_id = task_id;
  ti.map_index = map_index;
  return ti;
}

// A task instance with every optional field set.
TaskInstance FullTi(int64_t run_pk) {
  TaskInstance ti;
  ti.run_pk = run_pk;
  ti.task_id = "transform";
  ti.map_index = 7;
  ti.state = TaskState::kUpForRetry;
  ti.try_number = 2;
  ti.queued_at = At(kT0 + 100);
  ti.start_date = At(kT0 + 200);
  ti.end_date = At(kT0 + 300);
  ti.next_retry_at = At(kT0 + 400);
  ti.pool = "db";
  ti.priority_weight = -5;
  ti.pid = 4'000'000'123LL;
  ti.external_id = "slurm-98765";
  ti.progress = 0.375;
  ti.output = R"(["a","b"])";
  ti.waiting_reason = "pool db full (2/2)";
  ti.cached = true;
  ti.max_tries = 4;
  ti.window_kills = 2;
  return ti;
}

TaskTry FullTry(int64_t ti_pk, int try_number) {
  TaskTry t;
  t.ti_pk = ti_pk;
  t.try_number = try_number;
  t.state = TaskState::kFailed;
  t.start_date = At(kT0 + 1000 * try_number);
  t.end_date = At(kT0 + 1000 * try_number + 500);
  t.exit_code = -9;
  t.pid = 4242;
  t.external_id = "job-" + std::to_string(try_number);
  t.log_path = "/logs/x/" + std::to_string(try_number) + ".log";
  t.reason = "execution_timeout 30m exceeded";
  t.cache_key = "key-" + std::to_string(try_number);
  return t;
}

void ExpectDagEq(const DagRecord& a, const DagRecord& b) {
  EXPECT_EQ(a.dag_id, b.dag_id);
  EXPECT_EQ(a.is_paused, b.is_paused);
  EXPECT_EQ(a.fileloc, b.fileloc);
  EXPECT_EQ(a.last_parsed, b.last_parsed);
}

void ExpectRunEq(const DagRun& a, const DagRun& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.dag_id, b.dag_id);
  EXPECT_EQ(a.run_id, b.run_id);
  EXPECT_EQ(a.run_type, b.run_type);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.logical_date, b.logical_date);
  EXPECT_EQ(a.data_interval_start, b.data_interval_start);
  EXPECT_EQ(a.data_interval_end, b.data_interval_end);
  EXPECT_EQ(a.queued_at, b.queued_at);
  EXPECT_EQ(a.start_date, b.start_date);
  EXPECT_EQ(a.end_date, b.end_date);
  EXPECT_EQ(a.conf, b.conf);
  EXPECT_EQ(a.dag_snapshot, b.dag_snapshot);
  EXPECT_EQ(a.callback_done, b.callback_done);
}

void ExpectTiEq(const TaskInstance& a, const TaskInstance& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.run_pk, b.run_pk);
  EXPECT_EQ(a.task_id, b.task_id);
  EXPECT_EQ(a.map_index, b.map_index);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.try_number, b.try_number);
  EXPECT_EQ(a.queued_at, b.queued_at);
  EXPECT_EQ(a.start_date, b.start_date);
  EXPECT_EQ(a.end_date, b.end_date);
  EXPECT_EQ(a.next_retry_at, b.next_retry_at);
  EXPECT_EQ(a.pool, b.pool);
  EXPECT_EQ(a.priority_weight, b.priority_weight);
  EXPECT_EQ(a.pid, b.pid);
  EXPECT_EQ(a.external_id, b.external_id);
  EXPECT_EQ(a.progress, b.progress);
  EXPECT_EQ(a.output, b.output);
  EXPECT_EQ(a.waiting_reason, b.waiting_reason);
  EXPECT_EQ(a.cached, b.cached);
  EXPECT_EQ(a.max_tries, b.max_tries);
  EXPECT_EQ(a.window_kills, b.window_kills);
}

void ExpectTryEq(const TaskTry& a, const TaskTry& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.ti_pk, b.ti_pk);
  EXPECT_EQ(a.try_number, b.try_number);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.start_date, b.start_date);
  EXPECT_EQ(a.end_date, b.end_date);
  EXPECT_EQ(a.exit_code, b.exit_code);
  EXPECT_EQ(a.pid, b.pid);
  EXPECT_EQ(a.external_id, b.external_id);
  EXPECT_EQ(a.log_path, b.log_path);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.cache_key, b.cache_key);
}

std::vector<std::string> RunIds(const std::vector<DagRun>& runs) {
  std::vector<std::string> ids;
  for (const DagRun& run : runs) ids.push_back(run.run_id);
  return ids;
}

#define ASSERT_OK(expr)                                                             \
  do {                                                                              \
    const Status status_of_expr = (expr);                                           \
    ASSERT_TRUE(status_of_expr.ok()) << #expr << ": " << status_of_expr.ToString(); \
  } while (false)

std::string Join(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += "\n  " + line;
  return text;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    db_path_ = dir_.path() + "/state/nightshift.db";
    Reopen();
  }

  // Closes the store (if open) and opens the file again, as a restarted daemon would.
  void Reopen() {
    store_.reset();
    Result<std::unique_ptr<Store>> store = OpenSqliteStore(db_path_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    ASSERT_OK(store_->Migrate());
  }

  // A DAG and a run of it with `tis`; returns the run with its id.
  DagRun AddRun(const std::string& dag_id, const std::string& run_id, int64_t logical_ms,
                RunState state = RunState::kQueued, std::vector<TaskInstance>* tis = nullptr) {
    EXPECT_TRUE(store_->UpsertDag(MakeDag(dag_id)).ok());
    DagRun run = MakeRun(dag_id, run_id, logical_ms, state);
    std::vector<TaskInstance> none;
    Status s = store_->CreateRun(&run, tis != nullptr ? tis : &none);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return run;
  }

  std::vector<std::string> Problems() {
    std::vector<std::string> problems;
    Status s = store_->Check(&problems);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return problems;
  }

  TempDir dir_;
  std::string db_path_;
  std::unique_ptr<Store> store_;
};

bool AnyContains(const std::vector<std::string>& lines, const std::string& a, const std::string& b = "") {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& line) {
    return line.find(a) != std::string::npos && line.find(b) != std::string::npos;
  });
}

// ---- DAGs -------------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, DagRoundTripsAndUnknownIsEmpty) {
  DagRecord dag = MakeDag("nightly_etl", true);
  ASSERT_OK(store_->UpsertDag(dag));
  Result<std::optional<DagRecord>> got = store_->GetDag("nightly_etl");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  ExpectDagEq(**got, dag);

  DagRecord never_parsed = MakeDag("b");
  never_parsed.last_parsed.reset();
  ASSERT_OK(store_->UpsertDag(never_parsed));
  ExpectDagEq(**store_->GetDag("b"), never_parsed);

  Result<std::optional<DagRecord>> missing = store_->GetDag("nope");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
}

TEST_F(SqliteStoreTest, UpsertKeepsTheStoredPausedFlag) {
  ASSERT_OK(store_->UpsertDag(MakeDag("etl", /*paused=*/false)));
  ASSERT_OK(store_->SetPaused("etl", true));

  // A reload brings is_paused_upon_creation=false again, and a new file location.
  DagRecord reloaded = MakeDag("etl", /*paused=*/false);
  reloaded.fileloc = "/dags/moved/etl.yaml";
  reloaded.last_parsed = At(kT0 + 5000);
  ASSERT_OK(store_->UpsertDag(reloaded));

  DagRecord got = **store_->GetDag("etl");
  EXPECT_TRUE(got.is_paused);
  EXPECT_EQ(got.fileloc, "/dags/moved/etl.yaml");
  EXPECT_EQ(got.last_parsed, At(kT0 + 5000));

  ASSERT_OK(store_->SetPaused("etl", false));
  EXPECT_FALSE((*store_->GetDag("etl"))->is_paused);
}

TEST_F(SqliteStoreTest, TheDagsVersionMovesWithEveryChangeToTheDagsOnly) {
  ASSERT_OK(store_->UpsertDag(MakeDag("etl")));
  auto version = [&] {
    Result<DagsVersion> v = store_->GetDagsVersion();
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? *v : DagsVersion{};
  };
  const DagsVersion start = version();
  EXPECT_EQ(version(), start) << "nothing changed";
  DagRun run = MakeRun("etl", "r1", kT0, RunState::kQueued);
  std::vector<TaskInstance> none;
  ASSERT_OK(store_->CreateRun(&run, &none));  // a run is not a change to the DAGs
  EXPECT_EQ(version(), start);

  ASSERT_OK(store_->SetPaused("etl", true));
  const DagsVersion paused = version();
  EXPECT_NE(paused, start);
  ASSERT_OK(store_->UpsertDag(MakeDag("other")));
  const DagsVersion upserted = version();
  EXPECT_NE(upserted, paused);

  // Another connection (the API's, another process) commits: seen too.
  Result<std::unique_ptr<Store>> other = OpenSqliteStore(db_path_);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  ASSERT_OK((*other)->SetPaused("etl", false));
  EXPECT_NE(version(), upserted);
  EXPECT_FALSE((*store_->GetDag("etl"))->is_paused);
}

TEST_F(SqliteStoreTest, SetPausedOnUnknownDagIsNotFound) {
  EXPECT_TRUE(store_->SetPaused("ghost", true).IsNotFound());
}

TEST_F(SqliteStoreTest, ListDagsIsSortedById) {
  for (const char* id : {"zeta", "alpha", "mid"}) ASSERT_OK(store_->UpsertDag(MakeDag(id)));
  Result<std::vector<DagRecord>> dags = store_->ListDags();
  ASSERT_TRUE(dags.ok());
  ASSERT_EQ(dags->size(), 3u);
  EXPECT_EQ((*dags)[0].dag_id, "alpha");
  EXPECT_EQ((*dags)[1].dag_id, "mid");
  EXPECT_EQ((*dags)[2].dag_id, "zeta");
}

// ---- import errors ----------------------------------------------------------------------------

TEST_F(SqliteStoreTest, ImportErrorsAreReplacedAsAWhole) {
  std::vector<ImportError> first = {{"/dags/b.yaml", 3, 5, "unknown field \"taks\""},
                                    {"/dags/a.yaml", 10, 1, "cycle: a -> b -> a"}};
  ASSERT_OK(store_->ReplaceImportErrors(first));
  Result<std::vector<ImportError>> got = store_->ListImportErrors();
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].filename, "/dags/a.yaml");  // sorted by file, then position
  EXPECT_EQ((*got)[0].line, 10);
  EXPECT_EQ((*got)[0].column, 1);
  EXPECT_EQ((*got)[0].message, "cycle: a -> b -> a");
  EXPECT_EQ((*got)[1].filename, "/dags/b.yaml");

  ASSERT_OK(store_->ReplaceImportErrors({{"/dags/c.yaml", 1, 2, "bad cron"}}));
  got = store_->ListImportErrors();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].filename, "/dags/c.yaml");

  ASSERT_OK(store_->ReplaceImportErrors({}));
  EXPECT_TRUE(store_->ListImportErrors()->empty());
}

// ---- runs -------------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, RunWithEveryFieldRoundTrips) {
  ASSERT_OK(store_->UpsertDag(MakeDag("etl")));
  DagRun run = FullRun("etl");
  std::vector<TaskInstance> none;
  ASSERT_OK(store_->CreateRun(&run, &none));
  EXPECT_GT(run.id, 0);

  Result<std::optional<DagRun>> by_key = store_->GetRun("etl", run.run_id);
  ASSERT_TRUE(by_key.ok());
  ASSERT_TRUE(by_key->has_value());
  ExpectRunEq(**by_key, run);
  Result<std::optional<DagRun>> by_id = store_->GetRunById(run.id);
  ASSERT_TRUE(by_id.ok() && by_id->has_value());
  ExpectRunEq(**by_id, run);
}

TEST_F(SqliteStoreTest, RunWithNoOptionalFieldsRoundTrips) {
  DagRun run = AddRun("etl", "r1", kT0);
  ExpectRunEq(**store_->GetRunById(run.id), run);
  EXPECT_EQ((*store_->GetRunById(run.id))->conf, "{}");
  EXPECT_FALSE(store_->GetRun("etl", "nope")->has_value());
  EXPECT_FALSE(store_->GetRunById(run.id + 1000)->has_value());
}

TEST_F(SqliteStoreTest, CreateRunInsertsItsTaskInstancesAndFillsIds) {
  std::vector<TaskInstance> tis = {MakeTi("extract"), MakeTi("load", 0), MakeTi("load", 1)};
  DagRun run = AddRun("etl", "r1", kT0, RunState::kQueued, &tis);
  for (const TaskInstance& ti : tis) {
    EXPECT_GT(ti.id, 0);
    EXPECT_EQ(ti.run_pk, run.id);
  }
  Result<std::vector<TaskInstance>> stored = store_->ListTaskInstances(run.id);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 3u);
  for (size_t i = 0; i < tis.size(); ++i) ExpectTiEq((*stored)[i], tis[i]);
}

TEST_F(SqliteStoreTest, DuplicateRunIsAlreadyExistsAndWritesNothing) {
  std::vector<TaskInstance> tis = {MakeTi("a")};
  DagRun first = AddRun("etl", "r1", kT0, RunState::kQueued, &tis);

  DagRun again = MakeRun("etl", "r1", kT0 + kDay);
  std::vector<TaskInstance> more = {MakeTi("a"), MakeTi("b")};
  Status s = store_->CreateRun(&again, &more);
  EXPECT_TRUE(s.IsAlreadyExists()) << s.ToString();
  EXPECT_EQ(again.id, 0);  // no id of a row that does not exist
  EXPECT_EQ(more[0].id, 0);
  EXPECT_EQ(RawCount(db_path_, "dag_runs"), 1);
  EXPECT_EQ(RawCount(db_path_, "task_instances"), 1);

  // The same run_id in another DAG is a different run.
  AddRun("other", "r1", kT0);
  EXPECT_EQ(RawCount(db_path_, "dag_runs"), 2);
  ExpectRunEq(**store_->GetRun("etl", "r1"), first);
}

TEST_F(SqliteStoreTest, DuplicateTaskInstanceInCreateRunRollsBackTheRun) {
  ASSERT_OK(store_->UpsertDag(MakeDag("etl")));
  DagRun run = MakeRun("etl", "r1", kT0);
  std::vector<TaskInstance> tis = {MakeTi("a"), MakeTi("a")};
  EXPECT_TRUE(store_->CreateRun(&run, &tis).IsAlreadyExists());
  EXPECT_EQ(RawCount(db_path_, "dag_runs"), 0);
  EXPECT_EQ(RawCount(db_path_, "task_instances"), 0);
}

TEST_F(SqliteStoreTest, CreateRunForUnknownDagIsNotFound) {
  DagRun run = MakeRun("ghost", "r1", kT0);
  std::vector<TaskInstance> none;
  EXPECT_TRUE(store_->CreateRun(&run, &none).IsNotFound());
}

TEST_F(SqliteStoreTest, InvalidConfIsRejected) {
  ASSERT_OK(store_->UpsertDag(MakeDag("etl")));
  DagRun run = MakeRun("etl", "r1", kT0);
  run.conf = "{not json";
  std::vector<TaskInstance> none;
  EXPECT_TRUE(store_->CreateRun(&run, &none).IsInvalidArgument());
}

TEST_F(SqliteStoreTest, ListRunsNewestFirstWithPaginationAndTotal) {
  // Created out of order, so the order must come from logical_date.
  for (int day : {2, 0, 4, 1, 3}) AddRun("etl", "d" + std::to_string(day), kT0 + day * kDay);
  AddRun("other", "o1", kT0 + 10 * kDay);

  RunQuery query;
  query.dag_id = "etl";
  query.limit = 2;
  Result<RunPage> page = store_->ListRuns(query);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_EQ(page->total_entries, 5);
  EXPECT_EQ(RunIds(page->runs), (std::vector<std::string>{"d4", "d3"}));

  query.offset = 2;
  page = store_->ListRuns(query);
  EXPECT_EQ(RunIds(page->runs), (std::vector<std::string>{"d2", "d1"}));
  query.offset = 4;
  page = store_->ListRuns(query);
  EXPECT_EQ(RunIds(page->runs), (std::vector<std::string>{"d0"}));
  query.offset = 10;
  page = store_->ListRuns(query);
  EXPECT_TRUE(page->runs.empty());
  EXPECT_EQ(page->total_entries, 5);

  RunQuery all;
  page = store_->ListRuns(all);
  EXPECT_EQ(page->total_entries, 6);
  EXPECT_EQ(RunIds(page->runs), (std::vector<std::string>{"o1", "d4", "d3", "d2", "d1", "d0"}));
}

TEST_F(SqliteStoreTest, ListRunsFiltersByState) {
  AddRun("etl", "q", kT0, RunState::kQueued);
  AddRun("etl", "ok1", kT0 + 1, RunState::kSuccess);
  AddRun("etl", "ok2", kT0 + 2, RunState::kSuccess);
  AddRun("etl", "bad", kT0 + 3, RunState::kFailed);
  AddRun("other", "ok3", kT0 + 4, RunState::kSuccess);

  RunQuery query;
  query.state = RunState::kSuccess;
  Result<RunPage> page = store_->ListRuns(query);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_EQ(page->total_entries, 3);
  EXPECT_EQ(RunIds(page->runs), (std::vector<std::string>{"ok3", "ok2", "ok1"}));

  query.dag_id = "etl";
  page = store_->ListRuns(query);
  EXPECT_EQ(page->total_entries, 2);
  EXPECT_EQ(RunIds(page->runs), (std::vector<std::string>{"ok2", "ok1"}));

  query.limit = 0;
  page = store_->ListRuns(query);
  EXPECT_TRUE(page->runs.empty());
  EXPECT_EQ(page->total_entries, 2);
}

TEST_F(SqliteStoreTest, ListRunsRejectsNegativeLimitOrOffset) {
  RunQuery query;
  query.limit = -1;
  EXPECT_TRUE(store_->ListRuns(query).status().IsInvalidArgument());
  query.limit = 10;
  query.offset = -1;
  EXPECT_TRUE(store_->ListRuns(query).status().IsInvalidArgument());
}

TEST_F(SqliteStoreTest, UnfinishedRunsOldestFirst) {
  AddRun("etl", "late", kT0 + 2 * kDay, RunState::kRunning);
  AddRun("etl", "done", kT0 + kDay, RunState::kSuccess);
  AddRun("etl", "early", kT0, RunState::kQueued);
  AddRun("b", "failed", kT0 - kDay, RunState::kFailed);
  Result<std::vector<DagRun>> runs = store_->ListUnfinishedRuns();
  ASSERT_TRUE(runs.ok()) << runs.status().ToString();
  EXPECT_EQ(RunIds(*runs), (std::vector<std::string>{"early", "late"}));
}

TEST_F(SqliteStoreTest, LatestRunIsByLogicalDateAndType) {
  AddRun("etl", "s1", kT0);
  AddRun("etl", "s3", kT0 + 3 * kDay);
  AddRun("etl", "s2", kT0 + 2 * kDay);
  ASSERT_OK(store_->UpsertDag(MakeDag("etl")));
  DagRun manual = MakeRun("etl", "m", kT0 + 9 * kDay);
  manual.run_type = "manual";
  std::vector<TaskInstance> none;
  ASSERT_OK(store_->CreateRun(&manual, &none));

  Result<std::optional<DagRun>> latest = store_->LatestRun("etl", "scheduled");
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->run_id, "s3");
  EXPECT_EQ((*store_->LatestRun("etl", "manual"))->run_id, "m");
  EXPECT_FALSE(store_->LatestRun("other", "scheduled")->has_value());
}

TEST_F(SqliteStoreTest, UpdateRunWritesEveryFieldButTheSnapshot) {
  DagRun run = AddRun("etl", "r1", kT0);
  const std::string snapshot = (*store_->GetRunById(run.id))->dag_snapshot;
  DagRun changed = FullRun("etl");
  changed.id = run.id;
  changed.run_id = run.run_id;
  changed.state = RunState::kFailed;
  ASSERT_NE(changed.dag_snapshot, snapshot);
  ASSERT_OK(store_->UpdateRun(changed));
  changed.dag_snapshot = snapshot;  // what the run was created with
  ExpectRunEq(**store_->GetRunById(run.id), changed);

  changed.id = run.id + 1000;
  EXPECT_TRUE(store_->UpdateRun(changed).IsNotFound());
}

TEST_F(SqliteStoreTest, DeleteRunCascadesToTaskInstancesAndTries) {
  std::vector<TaskInstance> tis = {MakeTi("a"), MakeTi("b")};
  DagRun doomed = AddRun("etl", "old", kT0, RunState::kSuccess, &tis);
  std::vector<TaskInstance> kept_tis = {MakeTi("a")};
  DagRun kept = AddRun("etl", "new", kT0 + kDay, RunState::kSuccess, &kept_tis);
  for (TaskInstance* ti : {&tis[0], &tis[1], &kept_tis[0]}) {
    TaskTry t = FullTry(ti->id, 1);
    ASSERT_OK(store_->InsertTry(&t));
  }
  EXPECT_EQ(RawCount(db_path_, "task_tries"), 3);

  ASSERT_OK(store_->DeleteRun(doomed.id));
  EXPECT_FALSE(store_->GetRunById(doomed.id)->has_value());
  EXPECT_EQ(RawCount(db_path_, "dag_runs"), 1);
  EXPECT_EQ(RawCount(db_path_, "task_instances"), 1);
  EXPECT_EQ(RawCount(db_path_, "task_tries"), 1);
  EXPECT_EQ(store_->ListTaskInstances(kept.id)->size(), 1u);
  EXPECT_TRUE(store_->ListTries(tis[0].id)->empty());

  EXPECT_TRUE(store_->DeleteRun(doomed.id).IsNotFound());
}

TEST_F(SqliteStoreTest, DeleteRunRefusesUnfinishedRuns) {
  DagRun live = AddRun("etl", "live", kT0, RunState::kRunning);
  EXPECT_TRUE(store_->DeleteRun(live.id).IsInvalidArgument());
  EXPECT_TRUE(store_->GetRunById(live.id)->has_value());
}

TEST_F(SqliteStoreTest, IdsOfDeletedRowsAreNotReused) {
  std::vector<TaskInstance> tis = {MakeTi("a")};
  DagRun first = AddRun("etl", "r1", kT0, RunState::kSuccess, &tis);
  ASSERT_OK(store_->DeleteRun(first.id));
  std::vector<TaskInstance> tis2 = {MakeTi("a")};
  DagRun second = AddRun("etl", "r2", kT0, RunState::kSuccess, &tis2);
  EXPECT_GT(second.id, first.id);
  EXPECT_GT(tis2[0].id, tis[0].id);
}

// ---- task instances ---------------------------------------------------------------------------

TEST_F(SqliteStoreTest, TaskInstanceWithEveryFieldRoundTrips) {
  DagRun run = AddRun("etl", "r1", kT0);
  TaskInstance ti = FullTi(run.id);
  ASSERT_OK(store_->InsertTaskInstance(&ti));
  EXPECT_GT(ti.id, 0);
  Result<std::vector<TaskInstance>> stored = store_->ListTaskInstances(run.id);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  ExpectTiEq((*stored)[0], ti);
}

TEST_F(SqliteStoreTest, UpdateTaskInstanceSetsAndClearsOptionals) {
  std::vector<TaskInstance> tis = {MakeTi("a")};
  DagRun run = AddRun("etl", "r1", kT0, RunState::kQueued, &tis);
  ExpectTiEq(store_->ListTaskInstances(run.id)->at(0), tis[0]);  // defaults round-trip too

  TaskInstance full = FullTi(run.id);
  full.id = tis[0].id;
  full.task_id = "a";
  full.map_index = -1;
  ASSERT_OK(store_->UpdateTaskInstance(full));
  ExpectTiEq(store_->ListTaskInstances(run.id)->at(0), full);

  // Cleared: every optional back to unset.
  TaskInstance cleared = MakeTi("a");
  cleared.id = full.id;
  cleared.run_pk = run.id;
  ASSERT_OK(store_->UpdateTaskInstance(cleared));
  ExpectTiEq(store_->ListTaskInstances(run.id)->at(0), cleared);

  cleared.id += 1000;
  EXPECT_TRUE(store_->UpdateTaskInstance(cleared).IsNotFound());
}

TEST_F(SqliteStoreTest, DuplicateTaskInstanceIsAlreadyExists) {
  DagRun run = AddRun("etl", "r1", kT0);
  TaskInstance a = MakeTi("load", 3);
  a.run_pk = run.id;
  ASSERT_OK(store_->InsertTaskInstance(&a));
  TaskInstance again = a;
  EXPECT_TRUE(store_->InsertTaskInstance(&again).IsAlreadyExists());
  TaskInstance other_index = MakeTi("load", 4);
  other_index.run_pk = run.id;
  ASSERT_OK(store_->InsertTaskInstance(&other_index));
}

TEST_F(SqliteStoreTest, EveryStateTokenOfCoreIsAcceptedBySchema) {
  // Ties the schema's CHECK lists to core/states.cc: a token added there and not here fails.
  for (int i = 0; i < 4; ++i) {
    RunState state = static_cast<RunState>(i);
    ASSERT_TRUE(ParseRunState(ToString(state)).has_value());
    DagRun run = AddRun("etl", "r" + std::to_string(i), kT0 + i, state);
    EXPECT_EQ((*store_->GetRunById(run.id))->state, state);
  }
  DagRun run = AddRun("etl", "tis", kT0 + 100);
  for (int i = 0; i < 8; ++i) {
    TaskState state = static_cast<TaskState>(i);
    ASSERT_TRUE(ParseTaskState(ToString(state)).has_value());
    TaskInstance ti = MakeTi("t" + std::to_string(i));
    ti.run_pk = run.id;
    ti.state = state;
    ti.try_number = 1;
    ASSERT_OK(store_->InsertTaskInstance(&ti));
    TaskTry t = FullTry(ti.id, 1);
    t.state = state;
    ASSERT_OK(store_->InsertTry(&t));
    EXPECT_EQ(store_->ListTries(ti.id)->at(0).state, state);
  }
  Result<std::vector<TaskInstance>> tis = store_->ListTaskInstances(run.id);
  ASSERT_EQ(tis->size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ((*tis)[i].state, static_cast<TaskState>(i));
}

TEST_F(SqliteStoreTest, SchemaRejectsUnknownStateTokens) {
  DagRun run = AddRun("etl", "r1", kT0);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db_path_.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  const std::string sql = "UPDATE dag_runs SET state = 'paused' WHERE id = " + std::to_string(run.id);
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_CONSTRAINT);
  sqlite3_close(db);
}

// ---- tries ------------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, TriesRoundTripInTryOrder) {
  std::vector<TaskInstance> tis = {MakeTi("a")};
  AddRun("etl", "r1", kT0, RunState::kRunning, &tis);
  TaskTry second = FullTry(tis[0].id, 2);
  TaskTry first = FullTry(tis[0].id, 1);
  ASSERT_OK(store_->InsertTry(&second));
  ASSERT_OK(store_->InsertTry(&first));
  Result<std::vector<TaskTry>> tries = store_->ListTries(tis[0].id);
  ASSERT_TRUE(tries.ok());
  ASSERT_EQ(tries->size(), 2u);
  ExpectTryEq((*tries)[0], first);
  ExpectTryEq((*tries)[1], second);

  // Minimal: just queued, nothing known yet.
  TaskInstance b = MakeTi("b");
  b.run_pk = tis[0].run_pk;
  ASSERT_OK(store_->InsertTaskInstance(&b));
  TaskTry bare;
  bare.ti_pk = b.id;
  ASSERT_OK(store_->InsertTry(&bare));
  ExpectTryEq(store_->ListTries(b.id)->at(0), bare);

  TaskTry duplicate = first;
  EXPECT_TRUE(store_->InsertTry(&duplicate).IsAlreadyExists());
}

TEST_F(SqliteStoreTest, UpdateTryAndListActiveTries) {
  std::vector<TaskInstance> tis = {MakeTi("a"), MakeTi("b"), MakeTi("c")};
  AddRun("etl", "r1", kT0, RunState::kRunning, &tis);
  std::vector<TaskTry> tries;
  for (const TaskInstance& ti : tis) {
    TaskTry t;
    t.ti_pk = ti.id;
    t.state = TaskState::kQueued;
    ASSERT_OK(store_->InsertTry(&t));
    tries.push_back(t);
  }
  tries[0].state = TaskState::kRunning;
  tries[0].pid = 777;
  tries[0].start_date = At(kT0 + 5);
  ASSERT_OK(store_->UpdateTry(tries[0]));
  tries[1].state = TaskState::kSuccess;
  tries[1].exit_code = 0;
  tries[1].end_date = At(kT0 + 9);
  ASSERT_OK(store_->UpdateTry(tries[1]));

  Result<std::vector<TaskTry>> active = store_->ListActiveTries();
  ASSERT_TRUE(active.ok()) << active.status().ToString();
  ASSERT_EQ(active->size(), 2u);
  ExpectTryEq((*active)[0], tries[0]);
  ExpectTryEq((*active)[1], tries[2]);
  ExpectTryEq(store_->ListTries(tis[1].id)->at(0), tries[1]);

  TaskTry ghost = tries[0];
  ghost.id += 1000;
  EXPECT_TRUE(store_->UpdateTry(ghost).IsNotFound());
}

// ---- transactions -----------------------------------------------------------------------------

TEST_F(SqliteStoreTest, FailedTransactionLeavesNothing) {
  Status s = store_->InTransaction([&]() -> Status {
    Status st = store_->UpsertDag(MakeDag("etl"));
    if (!st.ok()) return st;
    DagRun run = MakeRun("etl", "r1", kT0);
    std::vector<TaskInstance> tis = {MakeTi("a")};
    st = store_->CreateRun(&run, &tis);
    if (!st.ok()) return st;
    return Status::InvalidArgument("changed my mind");
  });
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(s.message(), "changed my mind");
  EXPECT_FALSE(store_->GetDag("etl")->has_value());
  EXPECT_EQ(RawCount(db_path_, "dag_runs"), 0);
  EXPECT_EQ(RawCount(db_path_, "task_instances"), 0);
  // The connection is usable again afterwards.
  ASSERT_OK(store_->UpsertDag(MakeDag("etl")));
}

TEST_F(SqliteStoreTest, NestedTransactionsJoinTheOuterOne) {
  Status s = store_->InTransaction([&]() -> Status {
    Status inner = store_->InTransaction([&] { return store_->UpsertDag(MakeDag("inner")); });
    if (!inner.ok()) return inner;
    // Not durable yet: another connection still sees nothing.
    EXPECT_EQ(RawCount(db_path_, "dags"), 0);
    return Status::Busy("outer fails");
  });
  EXPECT_EQ(s.code(), Status::Code::kBusy);
  EXPECT_FALSE(store_->GetDag("inner")->has_value());
}

TEST_F(SqliteStoreTest, FailedInnerTransactionUndoesOnlyItsOwnWrites) {
  Status s = store_->InTransaction([&]() -> Status {
    Status st = store_->UpsertDag(MakeDag("outer"));
    if (!st.ok()) return st;
    Status inner = store_->InTransaction([&]() -> Status {
      Status in = store_->UpsertDag(MakeDag("inner"));
      if (!in.ok()) return in;
      return Status::AlreadyExists("handled by the caller");
    });
    EXPECT_TRUE(inner.IsAlreadyExists());
    return Status::OK();
  });
  ASSERT_OK(s);
  EXPECT_TRUE(store_->GetDag("outer")->has_value());
  EXPECT_FALSE(store_->GetDag("inner")->has_value());
}

TEST_F(SqliteStoreTest, CommittedTransactionIsVisibleToOtherConnections) {
  ASSERT_OK(store_->InTransaction([&] { return store_->UpsertDag(MakeDag("etl")); }));
  EXPECT_EQ(RawCount(db_path_, "dags"), 1);
}

TEST_F(SqliteStoreTest, ASecondConnectionWaitsForTheWriteLock) {
  Result<std::unique_ptr<Store>> other = OpenSqliteStore(db_path_);
  ASSERT_TRUE(other.ok());
  std::atomic<bool> locked{false};
  std::thread holder([&] {
    Status s = store_->InTransaction([&] {
      Status st = store_->UpsertDag(MakeDag("first"));
      locked = true;
      std::this_thread::sleep_for(milliseconds(300));
      return st;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
  });
  while (!locked) std::this_thread::sleep_for(milliseconds(1));
  Status s = (*other)->UpsertDag(MakeDag("second"));  // waits, within busy_timeout
  holder.join();
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(RawCount(db_path_, "dags"), 2);
}

TEST_F(SqliteStoreTest, ALockHeldPastTheBusyTimeoutIsBusy) {
  SqliteStoreOptions options;
  options.busy_timeout_ms = 50;
  Result<std::unique_ptr<Store>> impatient = OpenSqliteStore(db_path_, options);
  ASSERT_TRUE(impatient.ok());
  std::atomic<bool> locked{false};
  std::atomic<bool> release{false};
  std::thread holder([&] {
    Status s = store_->InTransaction([&] {
      Status st = store_->UpsertDag(MakeDag("first"));
      locked = true;
      while (!release) std::this_thread::sleep_for(milliseconds(1));
      return st;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
  });
  while (!locked) std::this_thread::sleep_for(milliseconds(1));
  Status s = (*impatient)->UpsertDag(MakeDag("second"));
  release = true;
  holder.join();
  EXPECT_EQ(s.code(), Status::Code::kBusy) << s.ToString();
  EXPECT_NE(s.message().find("locked"), std::string::npos) << s.ToString();
  // Reads are not blocked by a writer in WAL mode, and the store recovers once the lock is gone.
  EXPECT_TRUE((*impatient)->GetDag("first")->has_value());
  EXPECT_TRUE((*impatient)->UpsertDag(MakeDag("second")).ok());
}

TEST_F(SqliteStoreTest, OneStoreIsSafeToShareBetweenThreads) {
  DagRun run = AddRun("etl", "r1", kT0);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Status s = store_->InTransaction([&]() -> Status {
          TaskInstance ti = MakeTi("t" + std::to_string(t), i);
          ti.run_pk = run.id;
          ti.try_number = 1;
          Status st = store_->InsertTaskInstance(&ti);
          if (!st.ok()) return st;
          TaskTry task_try;
          task_try.ti_pk = ti.id;
          return store_->InsertTry(&task_try);
        });
        EXPECT_TRUE(s.ok()) << s.ToString();
        EXPECT_TRUE(store_->ListRuns(RunQuery()).ok());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(store_->ListTaskInstances(run.id)->size(), size_t{kThreads * kPerThread});
  EXPECT_TRUE(Problems().empty());
}

// ---- durability -------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, EverythingSurvivesCloseAndReopen) {
  DagRecord dag = MakeDag("etl", true);
  ASSERT_OK(store_->UpsertDag(dag));
  ASSERT_OK(store_->ReplaceImportErrors({{"/dags/x.yaml", 4, 2, "bad"}}));
  DagRun run = FullRun("etl");
  std::vector<TaskInstance> tis = {FullTi(0), MakeTi("plain")};
  ASSERT_OK(store_->CreateRun(&run, &tis));
  TaskTry t1 = FullTry(tis[0].id, 1);
  TaskTry t2 = FullTry(tis[0].id, 2);
  t2.state = TaskState::kRunning;
  ASSERT_OK(store_->InsertTry(&t1));
  ASSERT_OK(store_->InsertTry(&t2));

  Reopen();

  ExpectDagEq(**store_->GetDag("etl"), dag);
  ASSERT_EQ(store_->ListImportErrors()->size(), 1u);
  EXPECT_EQ(store_->ListImportErrors()->at(0).message, "bad");
  ExpectRunEq(**store_->GetRun("etl", run.run_id), run);
  Result<std::vector<TaskInstance>> stored = store_->ListTaskInstances(run.id);
  ASSERT_EQ(stored->size(), 2u);
  ExpectTiEq((*stored)[0], tis[0]);
  ExpectTiEq((*stored)[1], tis[1]);
  Result<std::vector<TaskTry>> tries = store_->ListTries(tis[0].id);
  ASSERT_EQ(tries->size(), 2u);
  ExpectTryEq((*tries)[0], t1);
  ExpectTryEq((*tries)[1], t2);
  Result<std::vector<TaskTry>> active = store_->ListActiveTries();
  ASSERT_EQ(active->size(), 1u);
  ExpectTryEq((*active)[0], t2);
}

// The process dies by SIGKILL, with no destructor and no checkpoint: committed writes are there
// after a restart, the transaction it was inside of is not.
TEST_F(SqliteStoreTest, CommittedWritesSurviveKillMinus9) {
  store_.reset();
  fflush(nullptr);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Result<std::unique_ptr<Store>> store = OpenSqliteStore(db_path_);
    if (!store.ok()) _exit(2);
    std::vector<TaskInstance> tis = {MakeTi("a")};
    DagRun run = MakeRun("etl", "committed", kT0, RunState::kRunning);
    if (!(*store)->UpsertDag(MakeDag("etl")).ok() || !(*store)->CreateRun(&run, &tis).ok()) _exit(3);
    TaskTry t;
    t.ti_pk = tis[0].id;
    t.state = TaskState::kRunning;
    tis[0].state = TaskState::kRunning;
    tis[0].try_number = 1;
    Status s = (*store)->InTransaction([&]() -> Status {
      Status st = (*store)->InsertTry(&t);
      if (!st.ok()) return st;
      return (*store)->UpdateTaskInstance(tis[0]);
    });
    if (!s.ok()) _exit(4);
    (void)(*store)->InTransaction([&]() -> Status {
      DagRun doomed = MakeRun("etl", "uncommitted", kT0 + kDay);
      std::vector<TaskInstance> none;
      (void)(*store)->CreateRun(&doomed, &none);
      raise(SIGKILL);
      return Status::OK();
    });
    _exit(5);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  Reopen();
  Result<std::optional<DagRun>> run = store_->GetRun("etl", "committed");
  ASSERT_TRUE(run.ok() && run->has_value());
  Result<std::vector<TaskInstance>> tis = store_->ListTaskInstances((*run)->id);
  ASSERT_EQ(tis->size(), 1u);
  EXPECT_EQ((*tis)[0].state, TaskState::kRunning);
  EXPECT_EQ((*tis)[0].try_number, 1);
  ASSERT_EQ(store_->ListActiveTries()->size(), 1u);
  EXPECT_FALSE(store_->GetRun("etl", "uncommitted")->has_value());
  EXPECT_TRUE(Problems().empty());
}

// ---- check ------------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, CheckPassesOnAConsistentDatabase) {
  std::vector<TaskInstance> tis = {MakeTi("a"), MakeTi("b")};
  DagRun run = AddRun("etl", "r1", kT0, RunState::kRunning, &tis);
  tis[0].try_number = 2;
  tis[0].state = TaskState::kRunning;
  ASSERT_OK(store_->InTransaction([&]() -> Status {
    for (int n : {1, 2}) {
      TaskTry t = FullTry(tis[0].id, n);
      Status s = store_->InsertTry(&t);
      if (!s.ok()) return s;
    }
    return store_->UpdateTaskInstance(tis[0]);
  }));
  AddRun("etl", "done", kT0 - kDay, RunState::kSuccess);
  std::vector<std::string> problems = Problems();
  EXPECT_TRUE(problems.empty()) << Join(problems);
  (void)run;
}

TEST_F(SqliteStoreTest, CheckReportsARunningTaskInAFinishedRun) {
  std::vector<TaskInstance> tis = {MakeTi("extract")};
  DagRun run = AddRun("etl", "r1", kT0, RunState::kRunning, &tis);
  RawExec(
      db_path_,
      "UPDATE task_instances SET state = 'running', try_number = 1 WHERE id = " + std::to_string(tis[0].id) +
          "; INSERT INTO task_tries (ti_pk, try_number, state) VALUES (" + std::to_string(tis[0].id) +
          ", 1, 'running'); UPDATE dag_runs SET state = 'success', "
          "end_date = 1 WHERE id = " +
          std::to_string(run.id));
  std::vector<std::string> problems = Problems();
  ASSERT_EQ(problems.size(), 1u) << Join(problems);
  EXPECT_TRUE(AnyContains(problems, "extract", "running in a run that is success")) << Join(problems);
}

TEST_F(SqliteStoreTest, CheckReportsTryNumberThatDisagreesWithTries) {
  std::vector<TaskInstance> tis = {MakeTi("a"), MakeTi("b", 2)};
  AddRun("etl", "r1", kT0, RunState::kRunning, &tis);
  tis[0].try_number = 2;  // but only one try recorded
  ASSERT_OK(store_->UpdateTaskInstance(tis[0]));
  TaskTry only = FullTry(tis[0].id, 1);
  ASSERT_OK(store_->InsertTry(&only));
  // Right count, wrong numbers: tries 2 and 3 for try_number 2.
  tis[1].try_number = 2;
  ASSERT_OK(store_->UpdateTaskInstance(tis[1]));
  for (int n : {2, 3}) {
    TaskTry t = FullTry(tis[1].id, n);
    ASSERT_OK(store_->InsertTry(&t));
  }
  std::vector<std::string> problems = Problems();
  ASSERT_EQ(problems.size(), 2u) << Join(problems);
  EXPECT_TRUE(AnyContains(problems, "/ a)", "try_number 2 but 1 tries recorded")) << Join(problems);
  EXPECT_TRUE(AnyContains(problems, "/ b[2])", "numbered 2..3")) << Join(problems);
}

TEST_F(SqliteStoreTest, CheckReportsAFinishedRunWithoutEndDate) {
  DagRun run = AddRun("etl", "r1", kT0, RunState::kRunning);
  run.state = RunState::kFailed;
  ASSERT_OK(store_->UpdateRun(run));
  std::vector<std::string> problems = Problems();
  ASSERT_EQ(problems.size(), 1u) << Join(problems);
  EXPECT_TRUE(AnyContains(problems, "r1", "failed but no end_date")) << Join(problems);
}

TEST_F(SqliteStoreTest, CheckReportsUnknownStateTokensAndReadsFailCleanly) {
  std::vector<TaskInstance> tis = {MakeTi("a")};
  AddRun("etl", "r1", kT0, RunState::kRunning, &tis);
  tis[0].try_number = 1;
  ASSERT_OK(store_->UpdateTaskInstance(tis[0]));
  TaskTry t = FullTry(tis[0].id, 1);
  ASSERT_OK(store_->InsertTry(&t));
  RawExec(db_path_, "PRAGMA ignore_check_constraints = ON; UPDATE task_tries SET state = 'bogus'");

  std::vector<std::string> problems = Problems();
  // SQLite's integrity_check re-evaluates CHECK constraints; the store's own line names the token.
  ASSERT_EQ(problems.size(), 2u) << Join(problems);
  EXPECT_TRUE(AnyContains(problems, "integrity_check", "task_tries")) << Join(problems);
  EXPECT_TRUE(AnyContains(problems, "task_tries: 1 row(s)", "\"bogus\"")) << Join(problems);
  Result<std::vector<TaskTry>> tries = store_->ListTries(tis[0].id);
  EXPECT_EQ(tries.status().code(), Status::Code::kCorruption) << tries.status().ToString();
}

TEST_F(SqliteStoreTest, CheckReportsAForeignKeyViolation) {
  // SQLite's own shell does not enforce foreign keys unless asked: this is how they break.
  RawExec(db_path_,
          "INSERT INTO task_instances (run_pk, task_id, state) VALUES (4242, 'orphan', 'scheduled')");
  std::vector<std::string> problems = Problems();
  EXPECT_TRUE(AnyContains(problems, "foreign key: task_instances", "dag_runs")) << Join(problems);
}

TEST_F(SqliteStoreTest, CheckReportsAnUnmigratedDatabase) {
  store_.reset();
  Result<std::unique_ptr<Store>> fresh = OpenSqliteStore(dir_.path() + "/empty.db");
  ASSERT_TRUE(fresh.ok());
  std::vector<std::string> problems;
  ASSERT_OK((*fresh)->Check(&problems));
  ASSERT_EQ(problems.size(), 1u) << Join(problems);
  EXPECT_TRUE(AnyContains(problems, "schema version is 0", "nightshift db migrate")) << Join(problems);
}

}  // namespace
}  // namespace nightshift

// Opening the database and applying the embedded migrations.
#include "store/migrations.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "store/sqlite_store.h"

namespace nightshift {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "nightshift_migrations_XXXXXX").string();
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

// Reads one integer or text cell through a connection of its own, as `sqlite3` would.
std::string RawQuery(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string result = "<error>";
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_ROW) {
        const unsigned char* text = sqlite3_column_text(stmt, 0);
        result = text == nullptr ? "<null>" : reinterpret_cast<const char*>(text);
      } else if (rc == SQLITE_DONE) {
        result = "<no row>";
      }
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return result;
}

void RawExec(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << (error != nullptr ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

std::unique_ptr<Store> OpenOrDie(const std::string& path) {
  Result<std::unique_ptr<Store>> store = OpenSqliteStore(path);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(*store) : nullptr;
}

int LatestVersion() { return static_cast<int>(EmbeddedMigrations().size()); }

// ---- names ------------------------------------------------------------------------------------

TEST(MigrationNamesTest, EmbeddedListIsNumberedOneToN) {
  const std::vector<EmbeddedFile>& migrations = EmbeddedMigrations();
  ASSERT_FALSE(migrations.empty());
  Status s = ValidateMigrationNames(migrations);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(migrations.front().name, "0001_init.sql");
  for (size_t i = 0; i < migrations.size(); ++i) {
    EXPECT_EQ(MigrationNumber(migrations[i]), static_cast<int>(i) + 1) << migrations[i].name;
    EXPECT_FALSE(migrations[i].contents.empty()) << migrations[i].name;
  }
}

TEST(MigrationNamesTest, AcceptsEmptyAndUnorderedLists) {
  EXPECT_TRUE(ValidateMigrationNames({}).ok());
  Status s = ValidateMigrationNames({{"0002_b.sql", ""}, {"0001_a.sql", ""}, {"0003_c-d.sql", ""}});
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(MigrationNamesTest, RejectsGap) {
  Status s = ValidateMigrationNames({{"0001_a.sql", ""}, {"0003_c.sql", ""}});
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("number 2 is missing"), std::string::npos) << s.message();
}

TEST(MigrationNamesTest, RejectsListNotStartingAtOne) {
  EXPECT_TRUE(ValidateMigrationNames({{"0002_b.sql", ""}}).IsInvalidArgument());
}

TEST(MigrationNamesTest, RejectsDuplicate) {
  Status s = ValidateMigrationNames({{"0001_a.sql", ""}, {"0002_b.sql", ""}, {"0002_c.sql", ""}});
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("0002_b.sql"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("0002_c.sql"), std::string::npos) << s.message();
}

TEST(MigrationNamesTest, RejectsBadNames) {
  for (const char* name :
       {"init.sql", "1_init.sql", "0001init.sql", "0001_.sql", "0001_init.txt", "000a_init.sql",
        "0000_zero.sql", "0001_has space.sql", "00001_init.sql", "0001_init.sql.bak", ""}) {
    Status s = ValidateMigrationNames({{name, "CREATE TABLE t (x)"}});
    EXPECT_TRUE(s.IsInvalidArgument()) << "accepted \"" << name << "\"";
    EXPECT_EQ(MigrationNumber({name, ""}), 0) << name;
  }
}

// ---- opening ----------------------------------------------------------------------------------

TEST(OpenSqliteStoreTest, CreatesMissingParentFolders) {
  TempDir dir;
  const std::string path = dir.path() + "/state/deeper/nightshift.db";
  std::unique_ptr<Store> store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(OpenSqliteStoreTest, UsesWriteAheadLog) {
  TempDir dir;
  const std::string path = dir.path() + "/nightshift.db";
  std::unique_ptr<Store> store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  // journal_mode=WAL is recorded in the file itself, so any other connection sees it.
  EXPECT_EQ(RawQuery(path, "PRAGMA journal_mode"), "wal");
}

TEST(OpenSqliteStoreTest, RejectsAFileThatIsNotADatabase) {
  TempDir dir;
  const std::string path = dir.path() + "/nightshift.db";
  {
    std::ofstream out(path);
    for (int i = 0; i < 100; ++i) out << "this is not an SQLite database\n";
  }
  Result<std::unique_ptr<Store>> store = OpenSqliteStore(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Status::Code::kCorruption) << store.status().ToString();
}

TEST(OpenSqliteStoreTest, RejectsEmptyPath) { EXPECT_TRUE(OpenSqliteStore("").status().IsInvalidArgument()); }

TEST(OpenSqliteStoreTest, ReportsAFolderThatCannotBeCreated) {
  TempDir dir;
  const std::string blocker = dir.path() + "/file";
  std::ofstream(blocker) << "x";
  Result<std::unique_ptr<Store>> store = OpenSqliteStore(blocker + "/nightshift.db");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Status::Code::kIOError) << store.status().ToString();
}

// ---- migrating --------------------------------------------------------------------------------

TEST(MigrateTest, AppliesEverythingToAnEmptyDatabaseAndRecordsIt) {
  TempDir dir;
  const std::string path = dir.path() + "/nightshift.db";
  std::unique_ptr<Store> store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  Result<int> before = store->SchemaVersion();
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(*before, 0);

  Status s = store->Migrate();
  ASSERT_TRUE(s.ok()) << s.ToString();
  Result<int> after = store->SchemaVersion();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, LatestVersion());

  EXPECT_EQ(RawQuery(path, "SELECT name FROM schema_migrations WHERE version = 1"), "0001_init.sql");
  EXPECT_EQ(RawQuery(path, "SELECT applied_at > 1700000000000 FROM schema_migrations WHERE version = 1"),
            "1");
  for (const char* table : {"dags", "dag_runs", "task_instances", "task_tries", "import_errors"}) {
    EXPECT_EQ(
        RawQuery(path, std::string("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '") +
                           table + "'"),
        "1")
        << table;
  }
}

TEST(MigrateTest, IsIdempotentAcrossCallsAndReopens) {
  TempDir dir;
  const std::string path = dir.path() + "/nightshift.db";
  {
    std::unique_ptr<Store> store = OpenOrDie(path);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Migrate().ok());
    Status again = store->Migrate();
    EXPECT_TRUE(again.ok()) << again.ToString();
  }
  std::unique_ptr<Store> store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  Status s = store->Migrate();
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(*store->SchemaVersion(), LatestVersion());
  EXPECT_EQ(RawQuery(path, "SELECT COUNT(*) FROM schema_migrations"), std::to_string(LatestVersion()));
}

TEST(MigrateTest, TwoProcessesMigratingAtOnceBothSucceed) {
  TempDir dir;
  const std::string path = dir.path() + "/nightshift.db";
  // Two connections stand in for the daemon and `nightshift db migrate` started together.
  std::unique_ptr<Store> a = OpenOrDie(path);
  std::unique_ptr<Store> b = OpenOrDie(path);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  Status sa, sb;
  std::thread ta([&] { sa = a->Migrate(); });
  std::thread tb([&] { sb = b->Migrate(); });
  ta.join();
  tb.join();
  EXPECT_TRUE(sa.ok()) << sa.ToString();
  EXPECT_TRUE(sb.ok()) << sb.ToString();
  EXPECT_EQ(RawQuery(path, "SELECT COUNT(*) FROM schema_migrations"), std::to_string(LatestVersion()));
}

TEST(MigrateTest, RefusesADatabaseFromANewerBuild) {
  TempDir dir;
  const std::string path = dir.path() + "/nightshift.db";
  std::unique_ptr<Store> store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Migrate().ok());
  RawExec(path, "INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 0)");
  Status s = store->Migrate();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("newer"), std::string::npos) << s.ToString();
  EXPECT_EQ(*store->SchemaVersion(), 999);
}

TEST(MigrateTest, RefusesToRunInsideATransaction) {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path() + "/nightshift.db");
  ASSERT_NE(store, nullptr);
  Status inner;
  Status outer = store->InTransaction([&] {
    inner = store->Migrate();
    return Status::OK();
  });
  EXPECT_TRUE(outer.ok());
  EXPECT_TRUE(inner.IsInvalidArgument()) << inner.ToString();
  // The refused call left neither a transaction open nor foreign keys off.
  ASSERT_TRUE(store->Migrate().ok());
  TaskInstance orphan;
  orphan.run_pk = 12345;
  orphan.task_id = "t";
  EXPECT_TRUE(store->InsertTaskInstance(&orphan).IsInvalidArgument());
}

TEST(MigrateTest, LeavesForeignKeysOnAfterMigrating) {
  TempDir dir;
  std::unique_ptr<Store> store = OpenOrDie(dir.path() + "/nightshift.db");
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Migrate().ok());
  TaskInstance orphan;
  orphan.run_pk = 12345;
  orphan.task_id = "t";
  Status s = store->InsertTaskInstance(&orphan);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("FOREIGN KEY"), std::string::npos) << s.ToString();
}

// A database written by a build that knew migrations 1..4, with history in it, as a user
// upgrading would have it.
void CreateAtVersion4(const std::string& path) {
  std::vector<const EmbeddedFile*> first_four;
  for (const EmbeddedFile& m : EmbeddedMigrations()) {
    if (MigrationNumber(m) <= 4) first_four.push_back(&m);
  }
  std::sort(first_four.begin(), first_four.end(),
            [](const EmbeddedFile* a, const EmbeddedFile* b) { return MigrationNumber(*a) < MigrationNumber(*b); });
  ASSERT_EQ(first_four.size(), 4u);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr), SQLITE_OK);
  sqlite3_close(db);
  RawExec(path,
          "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
          "applied_at INTEGER NOT NULL) STRICT");
  for (const EmbeddedFile* m : first_four) {
    RawExec(path, std::string(m->contents));
    RawExec(path, "INSERT INTO schema_migrations VALUES (" + std::to_string(MigrationNumber(*m)) + ", '" +
                      std::string(m->name) + "', 0)");
  }
  RawExec(path,
          "INSERT INTO dags (dag_id) VALUES ('etl');"
          "INSERT INTO dag_runs (dag_id, run_id, run_type, state, logical_date, conf) VALUES "
          "  ('etl', 'r1', 'manual', 'success', 1, '{}'), ('etl', 'r2', 'manual', 'running', 2, '{\"k\": 1}');"
          "INSERT INTO task_instances (run_pk, task_id, state, try_number, waiting_reason, max_tries) VALUES "
          "  (1, 'a', 'success', 1, NULL, 1), (2, 'a', 'running', 2, NULL, 3), (2, 'b', 'scheduled', 0, 'w', 1);"
          "INSERT INTO task_tries (ti_pk, try_number, state, exit_code, log_path, cache_key) VALUES "
          "  (1, 1, 'success', 0, 'l1', 'k1'), (2, 1, 'failed', 1, 'l2', NULL), (2, 2, 'running', NULL, 'l3', NULL),"
          "  (3, 1, 'queued', NULL, 'l4', NULL);"
          // An undone try: its id must never be handed out again.
          "DELETE FROM task_tries WHERE id = 4;");
}

TEST(MigrateTest, Migration5KeepsRowsIdsCountersAndWhatTheStateChecksAccept) {
  TempDir dir;
  const std::string path = dir.path() + "/nightshift.db";
  CreateAtVersion4(path);
  ASSERT_FALSE(::testing::Test::HasFailure());
  const std::string before =
      RawQuery(path, "SELECT group_concat(id || ':' || ti_pk || ':' || try_number || ':' || state || ':' || "
                     "ifnull(cache_key, '-'), ' ') FROM task_tries");

  std::unique_ptr<Store> store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  Status s = store->Migrate();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(*store->SchemaVersion(), LatestVersion());

  // Every row, with its id, is still there; the counters did not go back.
  EXPECT_EQ(RawQuery(path, "SELECT group_concat(id || ':' || ti_pk || ':' || try_number || ':' || state || ':' || "
                           "ifnull(cache_key, '-'), ' ') FROM task_tries"),
            before);
  EXPECT_EQ(RawQuery(path, "SELECT group_concat(id || ':' || run_pk || ':' || task_id || ':' || state || ':' || "
                           "max_tries || ':' || ifnull(waiting_reason, '-'), ' ') FROM task_instances"),
            "1:1:a:success:1:- 2:2:a:running:3:- 3:2:b:scheduled:1:w");
  EXPECT_EQ(RawQuery(path, "SELECT group_concat(id || ':' || run_id || ':' || state || ':' || conf, ' ') FROM dag_runs"),
            "1:r1:success:{} 2:r2:running:{\"k\": 1}");
  TaskTry next;
  next.ti_pk = 3;
  next.try_number = 1;
  next.state = TaskState::kQueued;
  ASSERT_TRUE(store->InsertTry(&next).ok());
  EXPECT_EQ(next.id, 5) << "id 4 was used before the upgrade";

  // The checks accept every state they did and nothing else.
  TaskInstance ti;
  ti.run_pk = 2;
  ti.task_id = "c";
  for (TaskState state : {TaskState::kScheduled, TaskState::kQueued, TaskState::kRunning, TaskState::kSuccess,
                          TaskState::kFailed, TaskState::kUpForRetry, TaskState::kUpstreamFailed,
                          TaskState::kSkipped}) {
    ti.state = state;
    Status st = ti.id == 0 ? store->InsertTaskInstance(&ti) : store->UpdateTaskInstance(ti);
    EXPECT_TRUE(st.ok()) << ToString(state) << ": " << st.ToString();
  }
  for (const char* sql : {"UPDATE task_instances SET state = 'done' WHERE id = 1",
                          "UPDATE task_tries SET state = 'Success' WHERE id = 1",
                          "UPDATE dag_runs SET state = 'scheduled' WHERE id = 1"}) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_CONSTRAINT) << sql;
    EXPECT_EQ(sqlite3_extended_errcode(db), SQLITE_CONSTRAINT_CHECK) << sql << ": " << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  EXPECT_EQ(RawQuery(path, "SELECT count(*) FROM sqlite_master WHERE sql LIKE '%state IN (''scheduled''%'"), "0");

  // The indexes are back, and deleting a run still takes its instances and tries with it.
  EXPECT_EQ(RawQuery(path, "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master WHERE type = "
                           "'index' AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name)"),
            "dag_runs_by_dag_date dag_runs_by_date dag_runs_unfinished task_instances_by_state task_tries_active "
            "task_tries_cache");
  ASSERT_TRUE(store->DeleteRun(1).ok());
  EXPECT_EQ(RawQuery(path, "SELECT group_concat(id, ' ') FROM task_instances"), "2 3 4");
  EXPECT_EQ(RawQuery(path, "SELECT group_concat(id, ' ') FROM task_tries"), "2 3 5");
  EXPECT_EQ(RawQuery(path, "PRAGMA foreign_key_check"), "<no row>");
}

}  // namespace
}  // namespace nightshift

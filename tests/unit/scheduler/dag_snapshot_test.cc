// The DAG snapshot: what SnapshotDag writes, RestoreDag reads back field for field, and writing
// never fails.
#include "scheduler/dag_snapshot.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nightshift {
namespace {

Dag RichDag() {
  Dag dag;
  dag.dag_id = "rich";
  dag.file_path = "/dags/rich \"quoted\".yaml";
  dag.description = "line\nbreak\ttab \\ back \x01 ctl \x1f del\x7f caf\xc3\xa9 \xf0\x9f\x8c\x99";
  dag.schedule = "0 2 * * *";
  dag.timezone = "Europe/Berlin";
  dag.start_date = TimePoint(std::chrono::milliseconds(1764288000000));
  dag.catchup = true;
  dag.max_active_runs = 3;
  dag.max_active_tasks = 7;
  dag.dagrun_timeout = std::chrono::hours(6);
  dag.on_failure = "./notify.sh failed";
  dag.window = "nightly";
  dag.tags = {"etl", "b\"q"};
  dag.params = {{"region", "eu"}, {"limit", "100"}};
  dag.env = {{"LANG", "C.UTF-8"}};
  dag.slurm.partition = "batch";
  dag.slurm.extra_args = {"--exclusive"};
  Task a;
  a.task_id = "extract";
  a.command = "./extract.sh \"$NIGHTSHIFT_DS\"";
  a.retries = 3;
  a.retry_exponential_backoff = true;
  a.max_retry_delay = std::chrono::minutes(10);
  a.execution_timeout = std::chrono::minutes(30);
  a.pool = "db";
  a.priority_weight = -2;
  a.env = {{"B", "2"}, {"A", "1"}};
  a.cwd = "sub/dir";
  a.window = "weekend";
  a.executor = "slurm";
  a.map.kind = MapSpec::Kind::kItems;
  a.map.items = {"x", "y\n"};
  a.cache.enabled = true;
  a.cache.inputs = {"data/*.csv"};
  a.cache.outputs = {"out/report.csv"};
  a.slurm.cpus_per_task = 4;
  a.slurm.mem = "4G";
  a.slurm.array = true;
  a.limits.log_size = 1 << 20;
  a.limits.cpu_time = std::chrono::seconds(2);
  a.limits.nice = 5;
  Task b;
  b.task_id = "load";
  b.command = "true";
  b.depends_on = {"extract"};
  b.trigger_rule = TriggerRule::kAllDone;
  b.map.kind = MapSpec::Kind::kRange;
  b.map.range = 1000000;
  b.map.chunk = 1000;
  dag.tasks = {a, b, Task{}};
  return dag;
}

// Every field the snapshot holds (a task's location and is_paused_upon_creation are not in it).
void ExpectSameTask(const Task& got, const Task& want) {
  EXPECT_EQ(got.task_id, want.task_id);
  EXPECT_EQ(got.command, want.command);
  EXPECT_EQ(got.depends_on, want.depends_on);
  EXPECT_EQ(got.trigger_rule, want.trigger_rule);
  EXPECT_EQ(got.retries, want.retries);
  EXPECT_EQ(got.retry_delay, want.retry_delay);
  EXPECT_EQ(got.retry_exponential_backoff, want.retry_exponential_backoff);
  EXPECT_EQ(got.max_retry_delay, want.max_retry_delay);
  EXPECT_EQ(got.execution_timeout, want.execution_timeout);
  EXPECT_EQ(got.pool, want.pool);
  EXPECT_EQ(got.priority_weight, want.priority_weight);
  EXPECT_EQ(got.env, want.env);
  EXPECT_EQ(got.cwd, want.cwd);
  EXPECT_EQ(got.window, want.window);
  EXPECT_EQ(got.executor, want.executor);
  EXPECT_EQ(got.map, want.map);
  EXPECT_EQ(got.cache, want.cache);
  EXPECT_EQ(got.slurm, want.slurm);
  EXPECT_EQ(got.limits, want.limits);
}

void ExpectSameDag(const Dag& got, const Dag& want) {
  EXPECT_EQ(got.dag_id, want.dag_id);
  EXPECT_EQ(got.file_path, want.file_path);
  EXPECT_EQ(got.description, want.description);
  EXPECT_EQ(got.schedule, want.schedule);
  EXPECT_EQ(got.timezone, want.timezone);
  EXPECT_EQ(got.start_date, want.start_date);
  EXPECT_EQ(got.end_date, want.end_date);
  EXPECT_EQ(got.catchup, want.catchup);
  EXPECT_EQ(got.max_active_runs, want.max_active_runs);
  EXPECT_EQ(got.max_active_tasks, want.max_active_tasks);
  EXPECT_EQ(got.dagrun_timeout, want.dagrun_timeout);
  EXPECT_EQ(got.on_success, want.on_success);
  EXPECT_EQ(got.on_failure, want.on_failure);
  EXPECT_EQ(got.window, want.window);
  EXPECT_EQ(got.tags, want.tags);
  EXPECT_EQ(got.params, want.params);
  EXPECT_EQ(got.env, want.env);
  EXPECT_EQ(got.slurm, want.slurm);
  ASSERT_EQ(got.tasks.size(), want.tasks.size());
  for (size_t i = 0; i < got.tasks.size(); ++i) ExpectSameTask(got.tasks[i], want.tasks[i]);
}

TEST(DagSnapshotTest, RoundTripsEveryField) {
  const Dag dag = RichDag();
  auto restored = RestoreDag(SnapshotDag(dag));
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  ExpectSameDag(*restored, dag);
  EXPECT_EQ(SnapshotDag(*restored), SnapshotDag(dag));
  auto empty = RestoreDag(SnapshotDag(Dag{}));
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  ExpectSameDag(*empty, Dag{});
}

TEST(DagSnapshotTest, TextIsWhatTheJsonLibraryWouldPrint) {
  // Escapes as nlohmann's dump() writes them: short forms where JSON has one, \u00XX for the
  // other control characters, everything else (DEL, UTF-8) as it is.
  Dag dag;
  dag.description = "q\" b\\ n\n t\t \x01 \x1f \x7f caf\xc3\xa9";
  const std::string snapshot = SnapshotDag(dag);
  EXPECT_NE(snapshot.find(R"("description":"q\" b\\ n\n t\t \u0001 \u001f )" "\x7f caf\xc3\xa9\""),
            std::string::npos)
      << snapshot;
}

TEST(DagSnapshotTest, LeavesOutTheFieldsATaskDoesNotSet) {
  Dag dag;
  dag.dag_id = "wide";
  Task t;
  t.task_id = "t1";
  t.command = "true";
  t.depends_on = {"root"};
  dag.tasks = {t};
  const std::string snapshot = SnapshotDag(dag);
  EXPECT_NE(snapshot.find(R"("tasks":[{"command":"true","depends_on":["root"],"task_id":"t1"}])"), std::string::npos)
      << snapshot;
  // Setting a field to its default value is the same as not setting it.
  t.retries = 0;
  t.pool = "default";
  t.cwd = ".";
  dag.tasks = {t};
  EXPECT_EQ(SnapshotDag(dag), snapshot);
}

TEST(DagSnapshotTest, ReadsVersion1SnapshotsThatListEveryField) {
  // As the writer of sessions before the compact format wrote a task.
  const std::string v1 =
      R"({"catchup":false,"dag_id":"old","dagrun_timeout_ms":null,"description":"","end_date":null,"env":{},)"
      R"("file_path":"/dags/old.yaml","max_active_runs":16,"max_active_tasks":16,"on_failure":null,)"
      R"("on_success":null,"params":{},"schedule":null,"slurm":{"array":false,"cpus_per_task":null,)"
      R"("extra_args":[],"gres":null,"mem":null,"partition":null,"time":null},"start_date":null,"tags":[],)"
      R"("tasks":[{"cache":{"enabled":false,"inputs":[],"outputs":[]},"command":"./load.sh","cwd":"sub",)"
      R"("depends_on":["extract"],"env":{"A":"1"},"execution_timeout_ms":60000,"executor":null,)"
      R"("limits":{"address_space":null,"cpu_time_ms":null,"log_size":null,"nice":null,"open_files":null},)"
      R"("map":{"chunk":1,"from":"","items":[],"kind":0,"range":0},"max_retry_delay_ms":null,"pool":"db",)"
      R"("priority_weight":5,"retries":2,"retry_delay_ms":1000,"retry_exponential_backoff":true,)"
      R"("slurm":{"array":false,"cpus_per_task":null,"extra_args":[],"gres":null,"mem":null,"partition":null,)"
      R"("time":null},"task_id":"load","trigger_rule":"all_done","window":null}],"timezone":"UTC","version":1,)"
      R"("window":null})";
  auto dag = RestoreDag(v1);
  ASSERT_TRUE(dag.ok()) << dag.status().ToString();
  ASSERT_EQ(dag->tasks.size(), 1u);
  const Task& t = dag->tasks[0];
  EXPECT_EQ(t.task_id, "load");
  EXPECT_EQ(t.command, "./load.sh");
  EXPECT_EQ(t.cwd, "sub");
  EXPECT_EQ(t.depends_on, std::vector<std::string>{"extract"});
  EXPECT_EQ(t.env.at("A"), "1");
  EXPECT_EQ(t.execution_timeout, Duration(60000));
  EXPECT_EQ(t.pool, "db");
  EXPECT_EQ(t.priority_weight, 5);
  EXPECT_EQ(t.retries, 2);
  EXPECT_EQ(t.retry_delay, Duration(1000));
  EXPECT_TRUE(t.retry_exponential_backoff);
  EXPECT_EQ(t.trigger_rule, TriggerRule::kAllDone);
  EXPECT_EQ(t.map.kind, MapSpec::Kind::kNone);
  // And it is written back compactly, with the same content.
  auto again = RestoreDag(SnapshotDag(*dag));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(SnapshotDag(*again), SnapshotDag(*dag));
  EXPECT_LT(SnapshotDag(*dag).size(), v1.size());
}

TEST(DagSnapshotTest, ATaskWithNothingSetRestoresWithTheDefaults) {
  Dag dag;
  dag.dag_id = "d";
  Task t;
  t.task_id = "t";
  t.command = "true";
  dag.tasks = {t};
  auto restored = RestoreDag(SnapshotDag(dag));
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  const Task& r = restored->tasks.at(0);
  const Task d;
  EXPECT_EQ(r.retry_delay, d.retry_delay);
  EXPECT_EQ(r.pool, d.pool);
  EXPECT_EQ(r.cwd, d.cwd);
  EXPECT_EQ(r.priority_weight, d.priority_weight);
  EXPECT_EQ(r.trigger_rule, d.trigger_rule);
  EXPECT_EQ(r.map, d.map);
  EXPECT_EQ(r.cache, d.cache);
  EXPECT_EQ(r.slurm, d.slurm);
  EXPECT_EQ(r.limits, d.limits);
}

// The loader refuses files that are not UTF-8, but a Dag built in code can still hold such a
// string: writing its snapshot must not throw (a run's creation would take the daemon down),
// and the snapshot must still read back, with U+FFFD where the bad bytes were.
TEST(DagSnapshotTest, InvalidUtf8IsReplacedNotThrown) {
  for (const char* bad : {"\xff", "caf\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok \xe9 ok"}) {
    Dag dag = RichDag();
    dag.description = bad;
    dag.tasks[0].env["V"] = bad;
    dag.tasks[1].command = bad;
    std::string snapshot;
    ASSERT_NO_THROW(snapshot = SnapshotDag(dag)) << bad;
    auto restored = RestoreDag(snapshot);
    ASSERT_TRUE(restored.ok()) << restored.status().ToString();
    EXPECT_NE(restored->description.find("\xEF\xBF\xBD"), std::string::npos) << bad;
    EXPECT_NE(restored->tasks[1].command.find("\xEF\xBF\xBD"), std::string::npos) << bad;
    EXPECT_EQ(restored->tasks[0].env.at("V"), restored->description);
  }
  Dag dag;
  dag.description = "ok \xe9 ok";
  auto restored = RestoreDag(SnapshotDag(dag));
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(restored->description, "ok \xEF\xBF\xBD ok");
}

TEST(DagSnapshotTest, DamagedSnapshotIsCorruptionNotACrash) {
  for (const std::string& damaged : {std::string("{"), std::string("[]"), std::string(R"({"dag_id": 1})"),
                                     std::string(400000, '[') + std::string(400000, ']')}) {
    auto dag = RestoreDag(damaged);
    ASSERT_FALSE(dag.ok());
    EXPECT_EQ(dag.status().code(), Status::Code::kCorruption) << dag.status().ToString();
  }
}

}  // namespace
}  // namespace nightshift

// The DAG snapshot: SnapshotDag's direct writer gives exactly the text of the nlohmann tree it
// replaced, and RestoreDag reads it back.
#include "scheduler/dag_snapshot.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

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

TEST(DagSnapshotTest, DirectWriterMatchesTheJsonTree) {
  const Dag dag = RichDag();
  EXPECT_EQ(SnapshotDag(dag), SnapshotDagAsTree(dag));
  EXPECT_EQ(SnapshotDag(Dag{}), SnapshotDagAsTree(Dag{}));
}

TEST(DagSnapshotTest, RoundTrips) {
  const Dag dag = RichDag();
  auto restored = RestoreDag(SnapshotDag(dag));
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(SnapshotDag(*restored), SnapshotDag(dag));
  EXPECT_EQ(restored->description, dag.description);
  ASSERT_EQ(restored->tasks.size(), 3u);
  EXPECT_EQ(restored->tasks[0].env, dag.tasks[0].env);
  EXPECT_EQ(restored->tasks[0].limits.nice, 5);
  EXPECT_EQ(restored->tasks[1].trigger_rule, TriggerRule::kAllDone);
}

TEST(DagSnapshotTest, InvalidUtf8IsRefusedAsBefore) {
  for (const char* bad : {"\xff", "caf\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"}) {
    Dag dag;
    dag.dag_id = "bad";
    dag.description = bad;
    EXPECT_THROW(SnapshotDag(dag), std::exception) << bad;
    EXPECT_THROW(SnapshotDagAsTree(dag), std::exception) << bad;
  }
}

}  // namespace
}  // namespace nightshift

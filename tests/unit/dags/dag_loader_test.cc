#include "dags/dag_loader.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace nightshift {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

constexpr char kPath[] = "dags/etl.yaml";

DagLoadContext Context() {
  DagLoadContext context;
  context.windows = {"nightly", "weekend"};
  context.pools = {"default", "db"};
  return context;
}

DagLoadResult Load(std::string_view text, const std::string& path = kPath) {
  return LoadDagText(text, path, Context());
}

std::vector<std::string> Lines(const DagLoadResult& result) {
  std::vector<std::string> lines;
  for (const ImportError& error : result.errors) lines.push_back(FormatImportError(error));
  return lines;
}

// Loads `text` and expects exactly one error, at LINE:COLUMN with MESSAGE.
void ExpectError(std::string_view text, int line, int column, const std::string& message) {
  DagLoadResult result = Load(text);
  EXPECT_FALSE(result.dag.has_value());
  ASSERT_EQ(result.errors.size(), 1u) << ::testing::PrintToString(Lines(result));
  const ImportError& error = result.errors.front();
  EXPECT_EQ(error.filename, kPath);
  EXPECT_EQ(error.line, line) << error.message;
  EXPECT_EQ(error.column, column) << error.message;
  EXPECT_EQ(error.message, message);
}

Dag MustLoad(std::string_view text) {
  DagLoadResult result = Load(text);
  EXPECT_TRUE(result.errors.empty()) << ::testing::PrintToString(Lines(result));
  EXPECT_TRUE(result.dag.has_value());
  return result.dag.value_or(Dag{});
}

// --- a good file ---------------------------------------------------------------------------

TEST(DagLoaderTest, MinimalDagGetsDocumentedDefaults) {
  Dag dag = MustLoad(
      "tasks:\n"
      "  - task_id: hello\n"
      "    command: echo hello\n");
  EXPECT_EQ(dag.dag_id, "etl");  // the file's stem
  EXPECT_EQ(dag.file_path, kPath);
  EXPECT_EQ(dag.description, "");
  EXPECT_FALSE(dag.schedule.has_value());
  EXPECT_EQ(dag.timezone, "UTC");
  EXPECT_FALSE(dag.start_date.has_value());
  EXPECT_FALSE(dag.end_date.has_value());
  EXPECT_FALSE(dag.catchup);
  EXPECT_FALSE(dag.is_paused_upon_creation);
  EXPECT_EQ(dag.max_active_runs, 16);
  EXPECT_EQ(dag.max_active_tasks, 16);
  EXPECT_FALSE(dag.dagrun_timeout.has_value());
  EXPECT_FALSE(dag.window.has_value());
  EXPECT_TRUE(dag.tags.empty());
  EXPECT_TRUE(dag.params.empty());
  EXPECT_TRUE(dag.env.empty());
  ASSERT_EQ(dag.tasks.size(), 1u);
  const Task& task = dag.tasks[0];
  EXPECT_EQ(task.task_id, "hello");
  EXPECT_EQ(task.command, "echo hello");
  EXPECT_TRUE(task.depends_on.empty());
  EXPECT_EQ(task.trigger_rule, TriggerRule::kAllSuccess);
  EXPECT_EQ(task.retries, 0);
  EXPECT_EQ(task.retry_delay, minutes(5));
  EXPECT_FALSE(task.retry_exponential_backoff);
  EXPECT_FALSE(task.max_retry_delay.has_value());
  EXPECT_FALSE(task.execution_timeout.has_value());
  EXPECT_EQ(task.pool, "default");
  EXPECT_EQ(task.priority_weight, 1);
  EXPECT_TRUE(task.env.empty());
  EXPECT_EQ(task.cwd, ".");
  EXPECT_FALSE(task.window.has_value());
  EXPECT_FALSE(task.executor.has_value());
  EXPECT_EQ(task.map.kind, MapSpec::Kind::kNone);
  EXPECT_FALSE(task.cache.enabled);
  EXPECT_EQ(task.location.line, 2);
  EXPECT_EQ(task.location.column, 5);
}

TEST(DagLoaderTest, EveryFieldIsLoaded) {
  Dag dag = MustLoad(R"(dag_id: nightly_etl
description: "Load yesterday's orders"
schedule: "0 2 * * *"
timezone: Europe/Berlin
start_date: 2026-01-01
end_date: 2026-12-31T23:00:00Z
catchup: true
is_paused_upon_creation: true
max_active_runs: 1
max_active_tasks: 4
dagrun_timeout: 6h
on_success: ./notify.sh ok
on_failure: ./notify.sh failed
window: nightly
tags: [etl, orders]
params: {region: eu, limit: 100, list: [1, two, "3"], nested: {a: true, b: null}}
env: {LANG: C.UTF-8, EMPTY: }
slurm: {partition: batch}
tasks:
  - task_id: list_files
    command: ls
  - task_id: extract
    command: ./extract.sh "$NIGHTSHIFT_DS"
    depends_on: [list_files]
    trigger_rule: none_failed_min_one_success
    retries: 3
    retry_delay: 10s
    retry_exponential_backoff: true
    max_retry_delay: 10m
    execution_timeout: 1h30m
    pool: db
    priority_weight: 7
    env: {TARGET: warehouse}
    cwd: scripts
    window: weekend
    executor: slurm
    slurm: {time: "01:00:00"}
    map:
      items: [a, b, {c: 1}]
    cache:
      inputs: ["data/*.csv"]
      outputs: ["out/report.csv"]
  - task_id: chunks
    command: ./chunk.sh
    map: {range: 1000000, chunk: 100000}
  - task_id: per_file
    command: ./one.sh
    map: {from: list_files}
)");
  EXPECT_EQ(dag.dag_id, "nightly_etl");
  EXPECT_EQ(dag.description, "Load yesterday's orders");
  EXPECT_EQ(dag.schedule, "0 2 * * *");
  EXPECT_EQ(dag.timezone, "Europe/Berlin");
  ASSERT_TRUE(dag.start_date.has_value());
  EXPECT_EQ(FormatRfc3339(*dag.start_date), "2025-12-31T23:00:00Z");  // midnight in Berlin
  ASSERT_TRUE(dag.end_date.has_value());
  EXPECT_EQ(FormatRfc3339(*dag.end_date), "2026-12-31T23:00:00Z");
  EXPECT_TRUE(dag.catchup);
  EXPECT_TRUE(dag.is_paused_upon_creation);
  EXPECT_EQ(dag.max_active_runs, 1);
  EXPECT_EQ(dag.max_active_tasks, 4);
  EXPECT_EQ(dag.dagrun_timeout, hours(6));
  EXPECT_EQ(dag.on_success, "./notify.sh ok");
  EXPECT_EQ(dag.on_failure, "./notify.sh failed");
  EXPECT_EQ(dag.window, "nightly");
  EXPECT_EQ(dag.tags, (std::vector<std::string>{"etl", "orders"}));
  EXPECT_EQ(dag.params.at("region"), "eu");
  EXPECT_EQ(dag.params.at("limit"), "100");
  EXPECT_EQ(dag.params.at("list"), R"([1,"two","3"])");
  EXPECT_EQ(dag.params.at("nested"), R"({"a":true,"b":null})");
  EXPECT_EQ(dag.env.at("LANG"), "C.UTF-8");
  EXPECT_EQ(dag.env.at("EMPTY"), "");
  ASSERT_EQ(dag.tasks.size(), 4u);

  const Task& t = dag.tasks[1];
  EXPECT_EQ(t.task_id, "extract");
  EXPECT_EQ(t.command, "./extract.sh \"$NIGHTSHIFT_DS\"");
  EXPECT_EQ(t.depends_on, std::vector<std::string>{"list_files"});
  EXPECT_EQ(t.trigger_rule, TriggerRule::kNoneFailedMinOneSuccess);
  EXPECT_EQ(t.retries, 3);
  EXPECT_EQ(t.retry_delay, seconds(10));
  EXPECT_TRUE(t.retry_exponential_backoff);
  EXPECT_EQ(t.max_retry_delay, minutes(10));
  EXPECT_EQ(t.execution_timeout, minutes(90));
  EXPECT_EQ(t.pool, "db");
  EXPECT_EQ(t.priority_weight, 7);
  EXPECT_EQ(t.env.at("TARGET"), "warehouse");
  EXPECT_EQ(t.cwd, "scripts");
  EXPECT_EQ(t.window, "weekend");
  EXPECT_EQ(t.executor, "slurm");
  EXPECT_EQ(t.map.kind, MapSpec::Kind::kItems);
  EXPECT_EQ(t.map.items, (std::vector<std::string>{"a", "b", R"({"c":1})"}));
  EXPECT_TRUE(t.cache.enabled);
  EXPECT_EQ(t.cache.inputs, std::vector<std::string>{"data/*.csv"});
  EXPECT_EQ(t.cache.outputs, std::vector<std::string>{"out/report.csv"});
  EXPECT_EQ(t.location.line, 22);
  EXPECT_EQ(t.location.column, 5);

  EXPECT_EQ(dag.tasks[2].map.kind, MapSpec::Kind::kRange);
  EXPECT_EQ(dag.tasks[2].map.range, 1000000);
  EXPECT_EQ(dag.tasks[2].map.chunk, 100000);
  EXPECT_EQ(dag.tasks[3].map.kind, MapSpec::Kind::kFrom);
  EXPECT_EQ(dag.tasks[3].map.from, "list_files");
  // Mapping over an upstream's output implies depending on it.
  EXPECT_EQ(dag.tasks[3].depends_on, std::vector<std::string>{"list_files"});
}

TEST(DagLoaderTest, ScheduleForms) {
  for (const char* schedule : {"\"@daily\"", "\"@every 15m\"", "\"*/5 * * * mon-fri\"", "\"@quarterly\"",
                               "\"@once\"", "\"0 0 29 2 *\"", "null"}) {
    SCOPED_TRACE(schedule);
    Dag dag = MustLoad(std::string("schedule: ") + schedule + "\ntasks:\n  - {task_id: a, command: x}\n");
    EXPECT_EQ(dag.schedule.has_value(), std::string(schedule) != "null");
  }
}

TEST(DagLoaderTest, DurationsAcceptBareSecondsAndUnits) {
  Dag dag = MustLoad(
      "tasks:\n"
      "  - {task_id: a, command: x, retry_delay: 90, execution_timeout: 1h30m, max_retry_delay: 250ms}\n");
  EXPECT_EQ(dag.tasks[0].retry_delay, seconds(90));
  EXPECT_EQ(dag.tasks[0].execution_timeout, minutes(90));
  EXPECT_EQ(dag.tasks[0].max_retry_delay, milliseconds(250));
}

TEST(DagLoaderTest, DependsOnAcceptsASingleNameAndIgnoresRepeats) {
  Dag dag = MustLoad(
      "tasks:\n"
      "  - {task_id: a, command: x}\n"
      "  - {task_id: b, command: x, depends_on: a}\n"
      "  - {task_id: c, command: x, depends_on: [a, b, a]}\n");
  EXPECT_EQ(dag.tasks[1].depends_on, std::vector<std::string>{"a"});
  EXPECT_EQ(dag.tasks[2].depends_on, (std::vector<std::string>{"a", "b"}));
}

TEST(DagLoaderTest, MapFromAlreadyInDependsOnIsNotAddedTwice) {
  Dag dag = MustLoad(
      "tasks:\n"
      "  - {task_id: a, command: x}\n"
      "  - {task_id: b, command: x, depends_on: [a], map: {from: a}}\n");
  EXPECT_EQ(dag.tasks[1].depends_on, std::vector<std::string>{"a"});
}

TEST(DagLoaderTest, MapRangeDefaultsToChunksOfOne) {
  Dag dag = MustLoad("tasks:\n  - {task_id: a, command: x, map: {range: 10}}\n");
  EXPECT_EQ(dag.tasks[0].map.range, 10);
  EXPECT_EQ(dag.tasks[0].map.chunk, 1);
}

TEST(DagLoaderTest, EmptyCacheMappingEnablesTheCache) {
  Dag dag = MustLoad("tasks:\n  - {task_id: a, command: x, cache: {}}\n");
  EXPECT_TRUE(dag.tasks[0].cache.enabled);
  EXPECT_TRUE(dag.tasks[0].cache.inputs.empty());
}

TEST(DagLoaderTest, BooleansInYamlAndAnsibleSpelling) {
  Dag dag = MustLoad("catchup: yes\nis_paused_upon_creation: True\ntasks:\n  - {task_id: a, command: x}\n");
  EXPECT_TRUE(dag.catchup);
  EXPECT_TRUE(dag.is_paused_upon_creation);
}

// --- default_args --------------------------------------------------------------------------

TEST(DagLoaderTest, DefaultArgsApplyToEveryTaskUnlessOverridden) {
  Dag dag = MustLoad(R"(default_args:
  retries: 2
  retry_delay: 30s
  pool: db
  env: {A: "1", B: "2"}
  command: ./run.sh
  window: nightly
tasks:
  - task_id: uses_defaults
  - task_id: overrides
    command: ./other.sh
    retries: 5
    env: {C: "3"}
    window: null
)");
  ASSERT_EQ(dag.tasks.size(), 2u);
  const Task& a = dag.tasks[0];
  EXPECT_EQ(a.command, "./run.sh");
  EXPECT_EQ(a.retries, 2);
  EXPECT_EQ(a.retry_delay, seconds(30));
  EXPECT_EQ(a.pool, "db");
  EXPECT_EQ(a.env.size(), 2u);
  EXPECT_EQ(a.window, "nightly");
  const Task& b = dag.tasks[1];
  EXPECT_EQ(b.command, "./other.sh");
  EXPECT_EQ(b.retries, 5);
  EXPECT_EQ(b.retry_delay, seconds(30));
  EXPECT_EQ(b.pool, "db");
  // A field written in the task replaces the default as a whole.
  EXPECT_EQ(b.env, (std::map<std::string, std::string>{{"C", "3"}}));
  // null brings back the built-in default (no window of its own: the DAG's applies).
  EXPECT_FALSE(b.window.has_value());
}

TEST(DagLoaderTest, DefaultArgsUnknownKeyIsAnError) {
  ExpectError(
      "default_args:\n"
      "  retires: 2\n"
      "tasks:\n"
      "  - {task_id: a, command: x}\n",
      2, 3, "unknown field \"retires\" (did you mean \"retries\"?)");
}

TEST(DagLoaderTest, DefaultArgsCannotSetTaskId) {
  ExpectError(
      "default_args:\n"
      "  task_id: a\n"
      "tasks:\n"
      "  - {task_id: a, command: x}\n",
      2, 3, "default_args: task_id cannot have a default; every task names its own");
}

TEST(DagLoaderTest, BadDefaultIsReportedOnceAtDefaultArgs) {
  ExpectError(
      "default_args:\n"
      "  retries: many\n"
      "tasks:\n"
      "  - {task_id: a, command: x}\n"
      "  - {task_id: b, command: x}\n",
      2, 12, "retries: expected an integer, got \"many\"");
}

TEST(DagLoaderTest, YamlMergeKeysWork) {
  Dag dag = MustLoad(R"(tasks:
  - &base
    task_id: a
    command: ./run.sh
    retries: 4
  - <<: *base
    task_id: b
)");
  ASSERT_EQ(dag.tasks.size(), 2u);
  EXPECT_EQ(dag.tasks[1].task_id, "b");
  EXPECT_EQ(dag.tasks[1].command, "./run.sh");
  EXPECT_EQ(dag.tasks[1].retries, 4);
}

// --- one test per error kind ---------------------------------------------------------------

TEST(DagLoaderErrorTest, YamlSyntax) {
  ExpectError(
      "tasks:\n"
      "  - task_id: a\n"
      "    command: [echo\n"
      "  - task_id: b\n",
      4, 12, "YAML syntax error: end of sequence flow not found");
}

TEST(DagLoaderErrorTest, YamlSyntaxIllegalMapValue) {
  ExpectError("dag_id: a: b\n", 1, 10, "YAML syntax error: illegal map value");
}

TEST(DagLoaderErrorTest, SecondDocument) {
  ExpectError("tasks:\n  - {task_id: a, command: x}\n---\ntasks: []\n", 3, 1,
              "only one YAML document per file is allowed, found a second one");
}

// yaml-cpp alone would loop forever on these, collecting empty documents.
TEST(DagLoaderErrorTest, StrayComma) {
  ExpectError(",\ntasks: []\n", 1, 1, "YAML syntax error: unexpected \",\"");
  ExpectError("[a], b\n", 1, 4, "YAML syntax error: unexpected \",\"");
}

TEST(DagLoaderErrorTest, EmptyFile) {
  ExpectError("# nothing yet\n", 1, 1, "the file is empty; a DAG needs at least a \"tasks\" list");
}

TEST(DagLoaderErrorTest, TopLevelNotAMapping) {
  ExpectError("- a\n- b\n", 1, 1, "DAG file: expected a mapping, got a list");
}

TEST(DagLoaderErrorTest, UnknownTaskFieldWithSuggestion) {
  ExpectError(
      "tasks:\n"
      "  - task_id: a\n"
      "    command: x\n"
      "    retires: 3\n",
      4, 5, "unknown field \"retires\" (did you mean \"retries\"?)");
}

TEST(DagLoaderErrorTest, UnknownDagFieldWithSuggestion) {
  ExpectError(
      "schedul: \"@daily\"\n"
      "tasks:\n"
      "  - {task_id: a, command: x}\n",
      1, 1, "unknown field \"schedul\" (did you mean \"schedule\"?)");
}

TEST(DagLoaderErrorTest, UnknownFieldWithoutSuggestion) {
  ExpectError(
      "owner: me\n"
      "tasks:\n"
      "  - {task_id: a, command: x}\n",
      1, 1, "unknown field \"owner\"");
}

TEST(DagLoaderErrorTest, UnknownFieldFromAnotherToolPointsAtOurs) {
  ExpectError(
      "schedule_interval: \"@daily\"\n"
      "tasks:\n"
      "  - {task_id: a, command: x}\n",
      1, 1, "unknown field \"schedule_interval\" (did you mean \"schedule\"?)");
  ExpectError(
      "tasks:\n"
      "  - {task_id: a, command: x}\n"
      "  - {task_id: b, command: x, upstream: [a]}\n",
      3, 30, "unknown field \"upstream\" (did you mean \"depends_on\"?)");
}

TEST(DagLoaderErrorTest, DuplicateField) {
  ExpectError(
      "tasks:\n"
      "  - task_id: a\n"
      "    command: x\n"
      "    command: y\n",
      4, 5, "duplicate field \"command\" (first defined at line 3)");
}

TEST(DagLoaderErrorTest, WrongTypeInteger) {
  ExpectError(
      "tasks:\n"
      "  - task_id: a\n"
      "    command: x\n"
      "    retries: three\n",
      4, 14, "retries: expected an integer, got \"three\"");
}

TEST(DagLoaderErrorTest, WrongTypeBool) {
  ExpectError("catchup: maybe\ntasks:\n  - {task_id: a, command: x}\n", 1, 10,
              "catchup: expected true or false, got \"maybe\"");
}

TEST(DagLoaderErrorTest, WrongTypeString) {
  ExpectError("tasks:\n  - task_id: a\n    command: [echo, hi]\n", 3, 14,
              "command: expected a string, got a list");
}

TEST(DagLoaderErrorTest, WrongTypeList) {
  ExpectError("tags: etl\ntasks:\n  - {task_id: a, command: x}\n", 1, 7,
              "tags: expected a list, got \"etl\"");
}

TEST(DagLoaderErrorTest, WrongTypeMapping) {
  ExpectError("env: [A]\ntasks:\n  - {task_id: a, command: x}\n", 1, 6,
              "env: expected a mapping, got a list");
}

TEST(DagLoaderErrorTest, BadDuration) {
  ExpectError(
      "tasks:\n"
      "  - task_id: a\n"
      "    command: x\n"
      "    retry_delay: 5 minutes\n",
      4, 18,
      "retry_delay: invalid duration \"5 minutes\": unknown unit at position 2 (units: ms, s, m, h, d, w)");
}

TEST(DagLoaderErrorTest, ZeroTimeout) {
  ExpectError("tasks:\n  - {task_id: a, command: x, execution_timeout: 0s}\n", 2, 49,
              "execution_timeout: must be longer than 0s");
}

TEST(DagLoaderErrorTest, BadCron) {
  ExpectError(
      "schedule: \"0 25 * * *\"\n"
      "tasks:\n"
      "  - {task_id: a, command: x}\n",
      1, 11, "schedule: bad cron expression \"0 25 * * *\": hour 25 is out of range 0-23");
}

TEST(DagLoaderErrorTest, UnknownTimeZone) {
  ExpectError(
      "timezone: Europe/Berln\n"
      "tasks:\n"
      "  - {task_id: a, command: x}\n",
      1, 11, "timezone: unknown time zone \"Europe/Berln\" (did you mean \"Europe/Berlin\"?)");
}

TEST(DagLoaderErrorTest, UnknownTimeZoneFarFromAnyName) {
  ExpectError(
      "timezone: Mars/Olympus_Mons\ntasks:\n  - {task_id: a, command: x}\n", 1, 11,
      "timezone: unknown time zone \"Mars/Olympus_Mons\" (use an IANA name such as Europe/Berlin or UTC)");
}

TEST(DagLoaderErrorTest, BadStartDate) {
  DagLoadResult result = Load("start_date: 2026-13-01\ntasks:\n  - {task_id: a, command: x}\n");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].line, 1);
  EXPECT_EQ(result.errors[0].column, 13);
  // The reason is ParseTimestamp's; the field and the value are ours.
  EXPECT_TRUE(result.errors[0].message.starts_with("start_date: invalid timestamp \"2026-13-01\""))
      << result.errors[0].message;
}

TEST(DagLoaderErrorTest, EndDateBeforeStartDate) {
  ExpectError("start_date: 2026-02-01\nend_date: 2026-01-01\ntasks:\n  - {task_id: a, command: x}\n", 2, 11,
              "end_date: is before start_date");
}

TEST(DagLoaderErrorTest, DuplicateTaskId) {
  ExpectError(
      "tasks:\n"
      "  - task_id: load\n"
      "    command: x\n"
      "  - task_id: load\n"
      "    command: y\n",
      4, 14, "duplicate task_id \"load\" (first defined at line 2)");
}

TEST(DagLoaderErrorTest, UnknownDependsOn) {
  ExpectError(
      "tasks:\n"
      "  - task_id: transform\n"
      "    command: x\n"
      "  - task_id: load\n"
      "    command: y\n"
      "    depends_on:\n"
      "      - transform\n"
      "      - transfrom\n",
      8, 9, "depends_on: unknown task \"transfrom\" (did you mean \"transform\"?)");
}

TEST(DagLoaderErrorTest, Cycle) {
  ExpectError(
      "tasks:\n"
      "  - {task_id: start, command: x}\n"
      "  - {task_id: a, command: x, depends_on: [start, c]}\n"
      "  - {task_id: b, command: x, depends_on: [a]}\n"
      "  - {task_id: c, command: x, depends_on: [b]}\n",
      3, 5, "dependency cycle: a -> b -> c -> a");
}

TEST(DagLoaderErrorTest, CycleIsNamedFromItsFirstTaskInFileOrder) {
  // The cycle is entered at c by the walk from the root, but a comes first in the file.
  ExpectError(
      "tasks:\n"
      "  - {task_id: b, command: x, depends_on: [a]}\n"
      "  - {task_id: a, command: x, depends_on: [c]}\n"
      "  - {task_id: c, command: x, depends_on: [b]}\n",
      2, 5, "dependency cycle: b -> c -> a -> b");
}

TEST(DagLoaderErrorTest, SelfDependency) {
  ExpectError("tasks:\n  - {task_id: a, command: x, depends_on: [a]}\n", 2, 5, "dependency cycle: a -> a");
}

TEST(DagLoaderErrorTest, EveryCycleIsReported) {
  DagLoadResult result = Load(
      "tasks:\n"
      "  - {task_id: a, command: x, depends_on: [b]}\n"
      "  - {task_id: b, command: x, depends_on: [a]}\n"
      "  - {task_id: c, command: x, depends_on: [d]}\n"
      "  - {task_id: d, command: x, depends_on: [c]}\n");
  EXPECT_EQ(Lines(result), (std::vector<std::string>{
                               "dags/etl.yaml:2:5: dependency cycle: a -> b -> a",
                               "dags/etl.yaml:4:5: dependency cycle: c -> d -> c",
                           }));
}

TEST(DagLoaderErrorTest, UnknownWindow) {
  ExpectError("window: nigthly\ntasks:\n  - {task_id: a, command: x}\n", 1, 9,
              "window: unknown window \"nigthly\" (did you mean \"nightly\"?)");
}

TEST(DagLoaderErrorTest, UnknownTaskWindowListsTheKnownOnes) {
  ExpectError("tasks:\n  - {task_id: a, command: x, window: daytime}\n", 2, 38,
              "window: unknown window \"daytime\" (one of: nightly, weekend)");
}

TEST(DagLoaderErrorTest, UnknownWindowWithoutAnyWindows) {
  DagLoadResult result = LoadDagText("window: nightly\ntasks:\n  - {task_id: a, command: x}\n", kPath, {});
  EXPECT_EQ(Lines(result),
            std::vector<std::string>{
                "dags/etl.yaml:1:9: window: unknown window \"nightly\" (the config defines no windows)"});
}

TEST(DagLoaderErrorTest, UnknownPool) {
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    pool: dbb\n", 4, 11,
              "pool: unknown pool \"dbb\" (did you mean \"db\"?)");
}

TEST(DagLoaderErrorTest, EmptyTaskList) {
  ExpectError("tasks: []\n", 1, 8, "tasks: the list is empty; a DAG needs at least one task");
}

TEST(DagLoaderErrorTest, NullTaskList) {
  ExpectError("description: x\ntasks:\n", 2, 1, "tasks: the list is empty; a DAG needs at least one task");
}

TEST(DagLoaderErrorTest, MissingTaskList) {
  ExpectError("description: x\n", 1, 1, "missing field \"tasks\": a DAG needs at least one task");
}

TEST(DagLoaderErrorTest, TasksNotAList) {
  ExpectError("tasks: {a: b}\n", 1, 8, "tasks: expected a list of tasks, got a mapping");
}

TEST(DagLoaderErrorTest, TaskNotAMapping) {
  ExpectError("tasks:\n  - echo hi\n", 2, 5, "task: expected a mapping, got \"echo hi\"");
}

TEST(DagLoaderErrorTest, InvalidDagId) {
  ExpectError(
      "dag_id: my dag\ntasks:\n  - {task_id: a, command: x}\n", 1, 9,
      "invalid dag_id \"my dag\": use 1 to 200 letters, digits, \"_\", \".\" or \"-\", not only dots");
}

TEST(DagLoaderErrorTest, DagIdTooLong) {
  ExpectError("dag_id: " + std::string(201, 'a') + "\ntasks:\n  - {task_id: a, command: x}\n", 1, 9,
              "invalid dag_id \"" + std::string(60, 'a') +
                  "...\": use 1 to 200 letters, digits, \"_\", \".\" or \"-\", not only dots");
}

TEST(DagLoaderErrorTest, DagIdMadeOnlyOfDotsIsRefused) {
  // ".." would put the run's journal and logs outside logs/.
  for (const char* id : {"..", ".", "..."}) {
    SCOPED_TRACE(id);
    ExpectError(std::string("dag_id: \"") + id + "\"\ntasks:\n  - {task_id: a, command: x}\n", 1, 9,
                std::string("invalid dag_id \"") + id +
                    "\": use 1 to 200 letters, digits, \"_\", \".\" or \"-\", not only dots");
    ExpectError(std::string("tasks:\n  - {task_id: \"") + id + "\", command: x}\n", 2, 15,
                std::string("invalid task_id \"") + id +
                    "\": use 1 to 200 letters, digits, \"_\", \".\" or \"-\", not only dots");
  }
  // Dots among other characters are fine.
  EXPECT_EQ(MustLoad("dag_id: ..a.b..\ntasks:\n  - {task_id: .c, command: x}\n").dag_id, "..a.b..");
  DagLoadResult from_name = LoadDagText("tasks:\n  - {task_id: a, command: x}\n", "dags/...yaml", Context());
  EXPECT_FALSE(from_name.dag.has_value());
}

TEST(DagLoaderErrorTest, ScheduleThatNeverFires) {
  ExpectError("schedule: \"0 0 30 2 *\"\ntasks:\n  - {task_id: a, command: x}\n", 1, 11,
              "schedule: cron \"0 0 30 2 *\" never fires: February has no day 30");
}

TEST(DagLoaderErrorTest, InvalidDagIdFromFileName) {
  DagLoadResult result = LoadDagText("tasks:\n  - {task_id: a, command: x}\n", "dags/my dag.yaml", Context());
  EXPECT_EQ(Lines(result),
            std::vector<std::string>{
                "dags/my dag.yaml:1:1: invalid dag_id \"my dag\" (taken from the file name): use "
                "1 to 200 letters, digits, \"_\", \".\" or \"-\", not only dots, or set dag_id"});
}

TEST(DagLoaderErrorTest, InvalidTaskId) {
  ExpectError("tasks:\n  - {task_id: a/b, command: x}\n", 2, 15,
              "invalid task_id \"a/b\": use 1 to 200 letters, digits, \"_\", \".\" or \"-\", not only dots");
}

TEST(DagLoaderErrorTest, MissingCommand) {
  ExpectError("tasks:\n  - task_id: a\n    retries: 1\n", 2, 5, "task \"a\": missing field \"command\"");
}

TEST(DagLoaderErrorTest, EmptyCommandPointsAtTheKey) {
  ExpectError("tasks:\n  - task_id: a\n    command:\n    retries: 1\n", 3, 5, "command: must not be empty");
}

TEST(DagLoaderErrorTest, MissingTaskId) {
  ExpectError("tasks:\n  - command: x\n", 2, 5, "missing field \"task_id\"");
}

TEST(DagLoaderErrorTest, BadTriggerRuleWithSuggestion) {
  ExpectError("tasks:\n  - {task_id: a, command: x, trigger_rule: all_sucess}\n", 2, 44,
              "trigger_rule: unknown rule \"all_sucess\" (did you mean \"all_success\"?)");
}

TEST(DagLoaderErrorTest, BadTriggerRuleListsTheRules) {
  ExpectError(
      "tasks:\n  - {task_id: a, command: x, trigger_rule: whenever}\n", 2, 44,
      "trigger_rule: unknown rule \"whenever\" (one of: all_success, all_failed, all_done, one_success, "
      "one_failed, none_failed, none_failed_min_one_success, none_skipped, always)");
}

TEST(DagLoaderErrorTest, BadExecutor) {
  ExpectError("tasks:\n  - {task_id: a, command: x, executor: slrum}\n", 2, 40,
              "executor: unknown executor \"slrum\" (did you mean \"slurm\"?)");
}

TEST(DagLoaderErrorTest, MapNeedsAKind) {
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    map:\n      chunk: 5\n", 5, 7,
              "map: needs one of \"items\", \"range\" or \"from\"");
}

TEST(DagLoaderErrorTest, MapTakesOnlyOneKind) {
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    map:\n      items: [a]\n      range: 5\n", 6, 7,
              "map: use only one of \"items\", \"range\" and \"from\"");
}

TEST(DagLoaderErrorTest, MapChunkOnlyWithRange) {
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    map:\n      items: [a]\n      chunk: 5\n", 6, 7,
              "map.chunk: only allowed with \"range\"");
}

TEST(DagLoaderErrorTest, MapChunkAtLeastOne) {
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    map: {range: 10, chunk: 0}\n", 4, 29,
              "map.chunk: must be at least 1, got 0");
}

TEST(DagLoaderErrorTest, MapRangeAtLeastOne) {
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    map: {range: -5}\n", 4, 18,
              "map.range: must be at least 1, got -5");
}

TEST(DagLoaderErrorTest, MapTooManyInstances) {
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    map: {range: 100000000}\n", 4, 18,
              "map: range 100000000 in chunks of 1 makes 100000000 task instances, more than 100000; use a "
              "larger chunk");
}

TEST(DagLoaderErrorTest, MapItemsEmpty) {
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    map: {items: []}\n", 4, 18,
              "map.items: the list is empty");
}

TEST(DagLoaderErrorTest, MapUnknownField) {
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    map: {range: 10, chunks: 2}\n", 4, 22,
              "unknown field \"chunks\" (did you mean \"chunk\"?)");
}

TEST(DagLoaderErrorTest, MapFromUnknownTask) {
  ExpectError("tasks:\n  - {task_id: list, command: x}\n  - {task_id: b, command: x, map: {from: lst}}\n", 3,
              42, "map.from: unknown task \"lst\" (did you mean \"list\"?)");
}

TEST(DagLoaderErrorTest, MapFromItself) {
  ExpectError("tasks:\n  - {task_id: a, command: x, map: {from: a}}\n", 2, 42,
              "map.from: a task cannot map over its own output");
}

TEST(DagLoaderErrorTest, MapFromEdgeCanCloseACycle) {
  ExpectError(
      "tasks:\n"
      "  - {task_id: a, command: x, depends_on: [b]}\n"
      "  - {task_id: b, command: x, map: {from: a}}\n",
      2, 5, "dependency cycle: a -> b -> a");
}

TEST(DagLoaderErrorTest, NegativeRetries) {
  ExpectError("tasks:\n  - {task_id: a, command: x, retries: -1}\n", 2, 39,
              "retries: must be at least 0, got -1");
}

TEST(DagLoaderErrorTest, NegativePriorityWeight) {
  ExpectError("tasks:\n  - {task_id: a, command: x, priority_weight: -3}\n", 2, 47,
              "priority_weight: must be at least 0, got -3");
}

TEST(DagLoaderErrorTest, MaxActiveRunsAtLeastOne) {
  ExpectError("max_active_runs: 0\ntasks:\n  - {task_id: a, command: x}\n", 1, 18,
              "max_active_runs: must be at least 1, got 0");
}

TEST(DagLoaderErrorTest, IntegerTooLarge) {
  ExpectError("tasks:\n  - {task_id: a, command: x, retries: 99999999999}\n", 2, 39,
              "retries: must be at most 2147483647, got 99999999999");
}

TEST(DagLoaderErrorTest, EnvValueMustBeAScalar) {
  ExpectError("env:\n  PATHS: [a, b]\ntasks:\n  - {task_id: a, command: x}\n", 2, 10,
              "env.PATHS: expected a string, got a list");
}

TEST(DagLoaderErrorTest, EnvNameMustBeAVariableName) {
  ExpectError(
      "tasks:\n  - task_id: a\n    command: x\n    env: {MY-VAR: 1}\n", 4, 11,
      "env: invalid variable name \"MY-VAR\": use letters, digits and \"_\", not starting with a digit");
}

TEST(DagLoaderErrorTest, ParamNameMustBeAVariableName) {
  ExpectError("params: {my-param: 1}\ntasks:\n  - {task_id: a, command: x}\n", 1, 10,
              "params: invalid name \"my-param\": use letters, digits and \"_\" (it becomes "
              "NIGHTSHIFT_PARAM_<NAME>)");
}

TEST(DagLoaderErrorTest, SlurmMustBeAMapping) {
  ExpectError("slurm: batch\ntasks:\n  - {task_id: a, command: x}\n", 1, 8,
              "slurm: expected a mapping, got \"batch\"");
}

TEST(DagLoaderTest, TaskLimitsComeFromDefaultArgsOrTheTaskAsAWhole) {
  Dag dag = MustLoad(
      "default_args: {limits: {cpu_time: 1m, nice: 5}}\n"
      "tasks:\n"
      "  - {task_id: inherits, command: x}\n"
      "  - {task_id: own, command: x, limits: {open_files: 64, address_space: 2G}}\n"
      "  - {task_id: none, command: x, limits: null}\n");
  ASSERT_EQ(dag.tasks.size(), 3u);
  TaskLimits from_defaults;
  from_defaults.cpu_time = minutes(1);
  from_defaults.nice = 5;
  EXPECT_EQ(dag.tasks[0].limits, from_defaults);
  TaskLimits own;
  own.address_space = int64_t{2} << 30;
  own.open_files = 64;
  EXPECT_EQ(dag.tasks[1].limits, own);
  EXPECT_EQ(dag.tasks[2].limits, TaskLimits{});
}

TEST(DagLoaderErrorTest, BadTaskLimitsPointAtTheValue) {
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    limits: {cpu_time: forever}\n", 4, 24,
              "limits.cpu_time: invalid duration \"forever\": expected a number at position 1 (use e.g. 90, "
              "90s, 5m, 1h30m)");
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    limits: {open_files: 2}\n", 4, 26,
              "limits.open_files: must be at least 3, got 2");
  ExpectError("tasks:\n  - task_id: a\n    command: x\n    limits: {memory: 1G}\n", 4, 14,
              "unknown field \"memory\" (did you mean \"address_space\"?)");
  ExpectError("tasks:\n  - {task_id: a, command: x, limits: [1]}\n", 2, 38,
              "limits: expected a mapping such as {cpu_time: 10m, address_space: 4GB}, got a list");
}

TEST(DagLoaderErrorTest, RecursiveAliasInParamsDoesNotHang) {
  ExpectError("params:\n  loop: &a [1, *a]\ntasks:\n  - {task_id: a, command: x}\n", 2, 9,
              "params.loop: nested deeper than 64 levels");
}

TEST(DagLoaderErrorTest, ParamsNestedDeeperThanTheLimitAreRefused) {
  std::string deep = "params:\n  deep: " + std::string(65, '[') + std::string(65, ']') +
                     "\ntasks:\n  - {task_id: a, command: x}\n";
  ExpectError(deep, 2, 9, "params.deep: nested deeper than 64 levels");
  std::string fine = "params:\n  deep: " + std::string(64, '[') + std::string(64, ']') +
                     "\ntasks:\n  - {task_id: a, command: x}\n";
  EXPECT_EQ(MustLoad(fine).params.at("deep"), std::string(64, '[') + std::string(64, ']'));
}

// A Latin-1 "é" (0xE9), as an editor on another machine saves it, is not UTF-8: the file is
// refused where the byte is, instead of failing later when the run's snapshot is written.
TEST(DagLoaderErrorTest, InvalidUtf8IsAnImportErrorAtTheByte) {
  ExpectError("description: \"caf\xE9 au lait\"\ntasks:\n  - {task_id: a, command: x}\n", 1, 18,
              "not valid UTF-8 (byte 0xE9); save the file as UTF-8");
  // Columns count characters: the "é" written correctly before the bad byte counts once.
  ExpectError("tasks:\n  - {task_id: a, command: \"\xC3\xA9" "cho \xFF\"}\n", 2, 33,
              "not valid UTF-8 (byte 0xFF); save the file as UTF-8");
  // In a comment too: the whole file must be UTF-8.
  ExpectError("# r\xE9sum\xE9\ntasks:\n  - {task_id: a, command: x}\n", 1, 4,
              "not valid UTF-8 (byte 0xE9); save the file as UTF-8");
  EXPECT_EQ(Lines(Load("description: caf\xE9\ntasks: []\n")),
            std::vector<std::string>{std::string(kPath) + ":1:17: not valid UTF-8 (byte 0xE9); save the file as UTF-8"});
}

TEST(DagLoaderErrorTest, DeeplyNestedYamlIsAnErrorNotACrash) {
  std::string dashes = "\n    ";
  for (int i = 0; i < 200000; ++i) dashes += "- ";
  for (const std::string& nesting : {std::string(400000, '[') + std::string(400000, ']'), dashes + "x"}) {
    DagLoadResult result = Load("params:\n  deep: " + nesting + "\ntasks:\n  - {task_id: a, command: x}\n");
    EXPECT_FALSE(result.dag.has_value());
    ASSERT_EQ(result.errors.size(), 1u) << ::testing::PrintToString(Lines(result));
    EXPECT_EQ(result.errors[0].message, "nested deeper than 64 levels");
  }
}

TEST(DagLoaderErrorTest, AllErrorsOfAFileAreReportedInOrder) {
  DagLoadResult result = Load(R"(schedule: "61 * * * *"
timezone: Nowhere
tasks:
  - task_id: a
    command: x
    retries: lots
    pool: nope
  - task_id: b
    depends_on: [zz]
)");
  EXPECT_EQ(Lines(result),
            (std::vector<std::string>{
                "dags/etl.yaml:1:11: schedule: bad cron expression \"61 * * * *\": minute 61 is "
                "out of range 0-59",
                "dags/etl.yaml:2:11: timezone: unknown time zone \"Nowhere\" (use an IANA name "
                "such as Europe/Berlin or UTC)",
                "dags/etl.yaml:6:14: retries: expected an integer, got \"lots\"",
                "dags/etl.yaml:7:11: pool: unknown pool \"nope\" (one of: db, default)",
                "dags/etl.yaml:8:5: task \"b\": missing field \"command\"",
                "dags/etl.yaml:9:18: depends_on: unknown task \"zz\"",
            }));
}

// --- files ---------------------------------------------------------------------------------

TEST(DagLoaderTest, MissingFileIsAnImportError) {
  DagLoadResult result = LoadDagFile("/nonexistent/dir/x.yaml", Context());
  EXPECT_FALSE(result.dag.has_value());
  EXPECT_EQ(Lines(result),
            std::vector<std::string>{
                "/nonexistent/dir/x.yaml:1:1: cannot read the file: No such file or directory"});
}

TEST(DagLoaderTest, FormatImportError) {
  EXPECT_EQ(FormatImportError(ImportError{"dags/a.yaml", 3, 7, "boom"}), "dags/a.yaml:3:7: boom");
}

}  // namespace
}  // namespace nightshift

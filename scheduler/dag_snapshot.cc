#include "scheduler/dag_snapshot.h"

#include <nlohmann/json.hpp>

namespace nightshift {
namespace {

using json = nlohmann::json;

json OptMs(const std::optional<Duration>& d) { return d ? json(d->count()) : json(nullptr); }
json OptStr(const std::optional<std::string>& s) { return s ? json(*s) : json(nullptr); }
json OptTime(const std::optional<TimePoint>& t) {
  return t ? json(t->time_since_epoch().count()) : json(nullptr);
}

std::optional<Duration> ReadOptMs(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return Duration(j[key].get<int64_t>());
}
std::optional<std::string> ReadOptStr(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return j[key].get<std::string>();
}
std::optional<TimePoint> ReadOptTime(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return TimePoint(Duration(j[key].get<int64_t>()));
}

json OptInt(const std::optional<int>& v) { return v ? json(*v) : json(nullptr); }

json SlurmToJson(const SlurmTaskOptions& o) {
  return {{"partition", OptStr(o.partition)}, {"cpus_per_task", OptInt(o.cpus_per_task)},
          {"mem", OptStr(o.mem)},             {"time", OptStr(o.time)},
          {"gres", OptStr(o.gres)},           {"extra_args", o.extra_args},
          {"array", o.array}};
}

// Snapshots from before the Slurm options have none: they read as unset.
SlurmTaskOptions SlurmFromJson(const json& parent) {
  SlurmTaskOptions o;
  if (!parent.contains("slurm") || !parent["slurm"].is_object()) return o;
  const json& j = parent["slurm"];
  o.partition = ReadOptStr(j, "partition");
  if (j.contains("cpus_per_task") && !j["cpus_per_task"].is_null()) o.cpus_per_task = j["cpus_per_task"].get<int>();
  o.mem = ReadOptStr(j, "mem");
  o.time = ReadOptStr(j, "time");
  o.gres = ReadOptStr(j, "gres");
  if (j.contains("extra_args")) o.extra_args = j["extra_args"].get<std::vector<std::string>>();
  if (j.contains("array")) o.array = j["array"].get<bool>();
  return o;
}

json OptInt64(const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); }

json LimitsToJson(const TaskLimits& l) {
  return {{"log_size", OptInt64(l.log_size)},     {"cpu_time_ms", OptMs(l.cpu_time)},
          {"address_space", OptInt64(l.address_space)}, {"open_files", OptInt64(l.open_files)},
          {"nice", OptInt(l.nice)}};
}

// Snapshots from before limits existed have none: they read as unset.
TaskLimits LimitsFromJson(const json& parent) {
  TaskLimits l;
  if (!parent.contains("limits") || !parent["limits"].is_object()) return l;
  const json& j = parent["limits"];
  auto int64_field = [&j](const char* key) -> std::optional<int64_t> {
    if (!j.contains(key) || j[key].is_null()) return std::nullopt;
    return j[key].get<int64_t>();
  };
  l.log_size = int64_field("log_size");
  l.cpu_time = ReadOptMs(j, "cpu_time_ms");
  l.address_space = int64_field("address_space");
  l.open_files = int64_field("open_files");
  if (auto nice = int64_field("nice")) l.nice = static_cast<int>(*nice);
  return l;
}

json TaskToJson(const Task& t) {
  json j = {
      {"task_id", t.task_id},
      {"command", t.command},
      {"depends_on", t.depends_on},
      {"trigger_rule", std::string(ToString(t.trigger_rule))},
      {"retries", t.retries},
      {"retry_delay_ms", t.retry_delay.count()},
      {"retry_exponential_backoff", t.retry_exponential_backoff},
      {"max_retry_delay_ms", OptMs(t.max_retry_delay)},
      {"execution_timeout_ms", OptMs(t.execution_timeout)},
      {"pool", t.pool},
      {"priority_weight", t.priority_weight},
      {"env", t.env},
      {"cwd", t.cwd},
      {"window", OptStr(t.window)},
      {"executor", OptStr(t.executor)},
      {"map",
       {{"kind", static_cast<int>(t.map.kind)},
        {"items", t.map.items},
        {"range", t.map.range},
        {"chunk", t.map.chunk},
        {"from", t.map.from}}},
      {"cache", {{"enabled", t.cache.enabled}, {"inputs", t.cache.inputs}, {"outputs", t.cache.outputs}}},
      {"slurm", SlurmToJson(t.slurm)},
      {"limits", LimitsToJson(t.limits)},
  };
  return j;
}

Task TaskFromJson(const json& j) {
  Task t;
  t.task_id = j.at("task_id").get<std::string>();
  t.command = j.at("command").get<std::string>();
  t.depends_on = j.at("depends_on").get<std::vector<std::string>>();
  t.trigger_rule = ParseTriggerRule(j.at("trigger_rule").get<std::string>()).value_or(TriggerRule::kAllSuccess);
  t.retries = j.at("retries").get<int>();
  t.retry_delay = Duration(j.at("retry_delay_ms").get<int64_t>());
  t.retry_exponential_backoff = j.at("retry_exponential_backoff").get<bool>();
  t.max_retry_delay = ReadOptMs(j, "max_retry_delay_ms");
  t.execution_timeout = ReadOptMs(j, "execution_timeout_ms");
  t.pool = j.at("pool").get<std::string>();
  t.priority_weight = j.at("priority_weight").get<int>();
  t.env = j.at("env").get<std::map<std::string, std::string>>();
  t.cwd = j.at("cwd").get<std::string>();
  t.window = ReadOptStr(j, "window");
  t.executor = ReadOptStr(j, "executor");
  const json& m = j.at("map");
  t.map.kind = static_cast<MapSpec::Kind>(m.at("kind").get<int>());
  t.map.items = m.at("items").get<std::vector<std::string>>();
  t.map.range = m.at("range").get<int64_t>();
  t.map.chunk = m.at("chunk").get<int64_t>();
  t.map.from = m.at("from").get<std::string>();
  const json& c = j.at("cache");
  t.cache.enabled = c.at("enabled").get<bool>();
  t.cache.inputs = c.at("inputs").get<std::vector<std::string>>();
  t.cache.outputs = c.at("outputs").get<std::vector<std::string>>();
  t.slurm = SlurmFromJson(j);
  t.limits = LimitsFromJson(j);
  return t;
}

}  // namespace

std::string SnapshotDag(const Dag& dag) {
  json tasks = json::array();
  for (const Task& t : dag.tasks) tasks.push_back(TaskToJson(t));
  json j = {
      {"version", 1},
      {"dag_id", dag.dag_id},
      {"file_path", dag.file_path},
      {"description", dag.description},
      {"schedule", OptStr(dag.schedule)},
      {"timezone", dag.timezone},
      {"start_date", OptTime(dag.start_date)},
      {"end_date", OptTime(dag.end_date)},
      {"catchup", dag.catchup},
      {"max_active_runs", dag.max_active_runs},
      {"max_active_tasks", dag.max_active_tasks},
      {"dagrun_timeout_ms", OptMs(dag.dagrun_timeout)},
      {"on_success", OptStr(dag.on_success)},
      {"on_failure", OptStr(dag.on_failure)},
      {"window", OptStr(dag.window)},
      {"tags", dag.tags},
      {"params", dag.params},
      {"env", dag.env},
      {"slurm", SlurmToJson(dag.slurm)},
      {"tasks", tasks},
  };
  return j.dump();
}

Result<Dag> RestoreDag(std::string_view snapshot) {
  try {
    json j = json::parse(snapshot);
    Dag dag;
    dag.dag_id = j.at("dag_id").get<std::string>();
    dag.file_path = j.at("file_path").get<std::string>();
    dag.description = j.at("description").get<std::string>();
    dag.schedule = ReadOptStr(j, "schedule");
    dag.timezone = j.at("timezone").get<std::string>();
    dag.start_date = ReadOptTime(j, "start_date");
    dag.end_date = ReadOptTime(j, "end_date");
    dag.catchup = j.at("catchup").get<bool>();
    dag.max_active_runs = j.at("max_active_runs").get<int>();
    dag.max_active_tasks = j.at("max_active_tasks").get<int>();
    dag.dagrun_timeout = ReadOptMs(j, "dagrun_timeout_ms");
    dag.on_success = ReadOptStr(j, "on_success");
    dag.on_failure = ReadOptStr(j, "on_failure");
    dag.window = ReadOptStr(j, "window");
    dag.tags = j.at("tags").get<std::vector<std::string>>();
    dag.params = j.at("params").get<std::map<std::string, std::string>>();
    dag.env = j.at("env").get<std::map<std::string, std::string>>();
    dag.slurm = SlurmFromJson(j);
    for (const json& t : j.at("tasks")) dag.tasks.push_back(TaskFromJson(t));
    return dag;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("cannot read DAG snapshot: ") + e.what());
  }
}

}  // namespace nightshift

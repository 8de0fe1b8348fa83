#include "scheduler/dag_snapshot.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "core/utf8.h"
#include "scheduler/json_input.h"

namespace nightshift {
namespace {

using json = nlohmann::json;

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

// Version 2 leaves out every task field that has its default value (a default-constructed
// Task's): most tasks set a few, and writing all of them made a 10,000-task DAG's snapshot
// 6.2 MB, written with every run and parsed again after a restart. Version 1 snapshots, with
// every field, read the same way.
const Task& DefaultTask() {
  static const Task task;
  return task;
}

Task TaskFromJson(const json& j) {
  const Task& d = DefaultTask();
  Task t;
  t.task_id = j.at("task_id").get<std::string>();
  t.command = j.at("command").get<std::string>();
  t.depends_on = j.value("depends_on", d.depends_on);
  if (j.contains("trigger_rule")) {
    t.trigger_rule = ParseTriggerRule(j.at("trigger_rule").get<std::string>()).value_or(TriggerRule::kAllSuccess);
  }
  t.retries = j.value("retries", d.retries);
  t.retry_delay = Duration(j.value("retry_delay_ms", d.retry_delay.count()));
  t.retry_exponential_backoff = j.value("retry_exponential_backoff", d.retry_exponential_backoff);
  t.max_retry_delay = ReadOptMs(j, "max_retry_delay_ms");
  t.execution_timeout = ReadOptMs(j, "execution_timeout_ms");
  t.pool = j.value("pool", d.pool);
  t.priority_weight = j.value("priority_weight", d.priority_weight);
  t.env = j.value("env", d.env);
  t.cwd = j.value("cwd", d.cwd);
  t.window = ReadOptStr(j, "window");
  t.executor = ReadOptStr(j, "executor");
  if (j.contains("map")) {
    const json& m = j.at("map");
    t.map.kind = static_cast<MapSpec::Kind>(m.at("kind").get<int>());
    t.map.items = m.at("items").get<std::vector<std::string>>();
    t.map.range = m.at("range").get<int64_t>();
    t.map.chunk = m.at("chunk").get<int64_t>();
    t.map.from = m.at("from").get<std::string>();
  }
  if (j.contains("cache")) {
    const json& c = j.at("cache");
    t.cache.enabled = c.at("enabled").get<bool>();
    t.cache.inputs = c.at("inputs").get<std::vector<std::string>>();
    t.cache.outputs = c.at("outputs").get<std::vector<std::string>>();
  }
  t.slurm = SlurmFromJson(j);
  t.limits = LimitsFromJson(j);
  return t;
}

// The snapshot is written directly rather than through an nlohmann::json tree: a run of a
// 10,000-task DAG starts with a snapshot of several megabytes, and building a tree would be most
// of a run's creation cost. The text is what nlohmann's dump() gives (keys in byte order, the same
// escapes); RestoreDag reads it with nlohmann, and dag_snapshot_test checks the round trip.

class Writer {
 public:
  std::string Take() { return std::move(out_); }

  // Strings reach here from DAG files, which the loader refuses unless they are UTF-8; a string
  // that is not (a Dag built in code) has each bad byte written as U+FFFD, as nlohmann's
  // replace handler does, so that the snapshot is always JSON and writing it never fails.
  void Str(std::string_view s) {
    out_ += '"';
    while (std::optional<size_t> bad = FindInvalidUtf8(s)) {
      Escaped(s.substr(0, *bad));
      out_ += "\xEF\xBF\xBD";
      s.remove_prefix(*bad + 1);
    }
    Escaped(s);
    out_ += '"';
  }
  void Escaped(std::string_view s) {
    for (char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      switch (c) {
        case '"':
          out_ += "\\\"";
          break;
        case '\\':
          out_ += "\\\\";
          break;
        case '\b':
          out_ += "\\b";
          break;
        case '\f':
          out_ += "\\f";
          break;
        case '\n':
          out_ += "\\n";
          break;
        case '\r':
          out_ += "\\r";
          break;
        case '\t':
          out_ += "\\t";
          break;
        default:
          if (c < 0x20) {
            static const char kHex[] = "0123456789abcdef";
            out_ += "\\u00";
            out_ += kHex[c >> 4];
            out_ += kHex[c & 0xF];
          } else {
            out_ += ch;
          }
      }
    }
  }
  void Int(int64_t v) { out_ += std::to_string(v); }
  void Bool(bool v) { out_ += v ? "true" : "false"; }
  void Null() { out_ += "null"; }
  void OptStr(const std::optional<std::string>& v) { v ? Str(*v) : Null(); }
  template <typename T>
  void OptInt(const std::optional<T>& v) {
    v ? Int(static_cast<int64_t>(*v)) : Null();
  }
  void OptMs(const std::optional<Duration>& d) { d ? Int(d->count()) : Null(); }
  void OptTime(const std::optional<TimePoint>& t) { t ? Int(t->time_since_epoch().count()) : Null(); }
  void Strings(const std::vector<std::string>& v) {
    out_ += '[';
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out_ += ',';
      Str(v[i]);
    }
    out_ += ']';
  }
  void StringMap(const std::map<std::string, std::string>& m) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : m) {
      if (!first) out_ += ',';
      first = false;
      Str(k);
      out_ += ':';
      Str(v);
    }
    out_ += '}';
  }
  // Keys must come in std::map order (byte order), as nlohmann's object keeps them.
  void Begin() {
    out_ += '{';
    first_.push_back(true);
  }
  void Key(std::string_view key) {
    if (!first_.back()) out_ += ',';
    first_.back() = false;
    out_ += '"';
    out_ += key;
    out_ += "\":";
  }
  void End() {
    out_ += '}';
    first_.pop_back();
  }
  void Raw(char c) { out_ += c; }

 private:
  std::string out_;
  std::vector<bool> first_;
};

void WriteSlurm(Writer& w, const SlurmTaskOptions& o) {
  w.Begin();
  w.Key("array"), w.Bool(o.array);
  w.Key("cpus_per_task"), w.OptInt(o.cpus_per_task);
  w.Key("extra_args"), w.Strings(o.extra_args);
  w.Key("gres"), w.OptStr(o.gres);
  w.Key("mem"), w.OptStr(o.mem);
  w.Key("partition"), w.OptStr(o.partition);
  w.Key("time"), w.OptStr(o.time);
  w.End();
}

// A task's fields in key order; a field at its default value (DefaultTask) is left out.
void WriteTask(Writer& w, const Task& t) {
  const Task& d = DefaultTask();
  w.Begin();
  if (t.cache != d.cache) {
    w.Key("cache");
    w.Begin();
    w.Key("enabled"), w.Bool(t.cache.enabled);
    w.Key("inputs"), w.Strings(t.cache.inputs);
    w.Key("outputs"), w.Strings(t.cache.outputs);
    w.End();
  }
  w.Key("command"), w.Str(t.command);
  if (t.cwd != d.cwd) w.Key("cwd"), w.Str(t.cwd);
  if (!t.depends_on.empty()) w.Key("depends_on"), w.Strings(t.depends_on);
  if (!t.env.empty()) w.Key("env"), w.StringMap(t.env);
  if (t.execution_timeout) w.Key("execution_timeout_ms"), w.OptMs(t.execution_timeout);
  if (t.executor) w.Key("executor"), w.OptStr(t.executor);
  if (t.limits != d.limits) {
    w.Key("limits");
    w.Begin();
    w.Key("address_space"), w.OptInt(t.limits.address_space);
    w.Key("cpu_time_ms"), w.OptMs(t.limits.cpu_time);
    w.Key("log_size"), w.OptInt(t.limits.log_size);
    w.Key("nice"), w.OptInt(t.limits.nice);
    w.Key("open_files"), w.OptInt(t.limits.open_files);
    w.End();
  }
  if (t.map != d.map) {
    w.Key("map");
    w.Begin();
    w.Key("chunk"), w.Int(t.map.chunk);
    w.Key("from"), w.Str(t.map.from);
    w.Key("items"), w.Strings(t.map.items);
    w.Key("kind"), w.Int(static_cast<int>(t.map.kind));
    w.Key("range"), w.Int(t.map.range);
    w.End();
  }
  if (t.max_retry_delay) w.Key("max_retry_delay_ms"), w.OptMs(t.max_retry_delay);
  if (t.pool != d.pool) w.Key("pool"), w.Str(t.pool);
  if (t.priority_weight != d.priority_weight) w.Key("priority_weight"), w.Int(t.priority_weight);
  if (t.retries != d.retries) w.Key("retries"), w.Int(t.retries);
  if (t.retry_delay != d.retry_delay) w.Key("retry_delay_ms"), w.Int(t.retry_delay.count());
  if (t.retry_exponential_backoff != d.retry_exponential_backoff) {
    w.Key("retry_exponential_backoff"), w.Bool(t.retry_exponential_backoff);
  }
  if (t.slurm != d.slurm) w.Key("slurm"), WriteSlurm(w, t.slurm);
  w.Key("task_id"), w.Str(t.task_id);
  if (t.trigger_rule != d.trigger_rule) w.Key("trigger_rule"), w.Str(ToString(t.trigger_rule));
  if (t.window) w.Key("window"), w.OptStr(t.window);
  w.End();
}

}  // namespace

std::string SnapshotDag(const Dag& dag) {
  Writer w;
  w.Begin();
  w.Key("catchup"), w.Bool(dag.catchup);
  w.Key("dag_id"), w.Str(dag.dag_id);
  w.Key("dagrun_timeout_ms"), w.OptMs(dag.dagrun_timeout);
  w.Key("description"), w.Str(dag.description);
  w.Key("end_date"), w.OptTime(dag.end_date);
  w.Key("env"), w.StringMap(dag.env);
  w.Key("file_path"), w.Str(dag.file_path);
  w.Key("max_active_runs"), w.Int(dag.max_active_runs);
  w.Key("max_active_tasks"), w.Int(dag.max_active_tasks);
  w.Key("on_failure"), w.OptStr(dag.on_failure);
  w.Key("on_success"), w.OptStr(dag.on_success);
  w.Key("params"), w.StringMap(dag.params);
  w.Key("schedule"), w.OptStr(dag.schedule);
  w.Key("slurm"), WriteSlurm(w, dag.slurm);
  w.Key("start_date"), w.OptTime(dag.start_date);
  w.Key("tags"), w.Strings(dag.tags);
  w.Key("tasks");
  w.Raw('[');
  for (size_t i = 0; i < dag.tasks.size(); ++i) {
    if (i) w.Raw(',');
    WriteTask(w, dag.tasks[i]);
  }
  w.Raw(']');
  w.Key("timezone"), w.Str(dag.timezone);
  w.Key("version"), w.Int(2);
  w.Key("window"), w.OptStr(dag.window);
  w.End();
  return w.Take();
}

Result<Dag> RestoreDag(std::string_view snapshot) {
  Result<json> parsed = ParseJsonInput(snapshot);
  if (!parsed.ok()) return Status::Corruption("cannot read DAG snapshot: " + parsed.status().message());
  try {
    const json& j = *parsed;
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

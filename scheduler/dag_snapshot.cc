#include "scheduler/dag_snapshot.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

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

// Version 2 leaves out every task field that has its default value (a default-constructed
// Task's): most tasks set a few, and writing all of them made a 10,000-task DAG's snapshot
// 6.2 MB, written with every run and parsed again after a restart. Version 1 snapshots, with
// every field, read the same way.
const Task& DefaultTask() {
  static const Task task;
  return task;
}

json TaskToJson(const Task& t) {
  const Task& d = DefaultTask();
  json j = {{"task_id", t.task_id}, {"command", t.command}};
  if (!t.depends_on.empty()) j["depends_on"] = t.depends_on;
  if (t.trigger_rule != d.trigger_rule) j["trigger_rule"] = std::string(ToString(t.trigger_rule));
  if (t.retries != d.retries) j["retries"] = t.retries;
  if (t.retry_delay != d.retry_delay) j["retry_delay_ms"] = t.retry_delay.count();
  if (t.retry_exponential_backoff != d.retry_exponential_backoff) {
    j["retry_exponential_backoff"] = t.retry_exponential_backoff;
  }
  if (t.max_retry_delay) j["max_retry_delay_ms"] = t.max_retry_delay->count();
  if (t.execution_timeout) j["execution_timeout_ms"] = t.execution_timeout->count();
  if (t.pool != d.pool) j["pool"] = t.pool;
  if (t.priority_weight != d.priority_weight) j["priority_weight"] = t.priority_weight;
  if (!t.env.empty()) j["env"] = t.env;
  if (t.cwd != d.cwd) j["cwd"] = t.cwd;
  if (t.window) j["window"] = *t.window;
  if (t.executor) j["executor"] = *t.executor;
  if (t.map != d.map) {
    j["map"] = {{"kind", static_cast<int>(t.map.kind)},
                {"items", t.map.items},
                {"range", t.map.range},
                {"chunk", t.map.chunk},
                {"from", t.map.from}};
  }
  if (t.cache != d.cache) {
    j["cache"] = {{"enabled", t.cache.enabled}, {"inputs", t.cache.inputs}, {"outputs", t.cache.outputs}};
  }
  if (t.slurm != d.slurm) j["slurm"] = SlurmToJson(t.slurm);
  if (t.limits != d.limits) j["limits"] = LimitsToJson(t.limits);
  return j;
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

// ---- A direct writer ------------------------------------------------------------------------
// Builds the same text nlohmann's dump() gives for the json above (keys in std::map order, the
// same escapes), without building the tree: a run of a 10,000-task DAG starts with a snapshot
// of several megabytes, and the tree made it most of a run's creation cost.
// (dag_snapshot_test checks the two agree.)

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // cut short
    for (size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid, as nlohmann judges.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

class Writer {
 public:
  // False once a string was not valid UTF-8 (nlohmann refuses those; the caller falls back).
  bool ok() const { return ok_; }
  std::string Take() { return std::move(out_); }

  void Str(std::string_view s) {
    if (!ValidUtf8(s)) ok_ = false;
    out_ += '"';
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
    out_ += '"';
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
  bool ok_ = true;
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

// The fields TaskToJson writes, in key order.
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
  if (w.ok()) return w.Take();
  return SnapshotDagAsTree(dag);  // invalid UTF-8: nlohmann says so as it always did
}

std::string SnapshotDagAsTree(const Dag& dag) {
  json tasks = json::array();
  for (const Task& t : dag.tasks) tasks.push_back(TaskToJson(t));
  json j = {
      {"version", 2},
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

#include "dags/dag_loader.h"

#include <algorithm>
#include <climits>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "core/cron.h"
#include "core/ids.h"
#include "core/strings.h"
#include "dags/limits_reader.h"
#include "dags/yaml_reader.h"

namespace nightshift {
namespace {

constexpr std::string_view kDagFields[] = {"dag_id",
                                           "description",
                                           "schedule",
                                           "timezone",
                                           "start_date",
                                           "end_date",
                                           "catchup",
                                           "is_paused_upon_creation",
                                           "max_active_runs",
                                           "max_active_tasks",
                                           "dagrun_timeout",
                                           "on_success",
                                           "on_failure",
                                           "window",
                                           "tags",
                                           "params",
                                           "env",
                                           "default_args",
                                           "tasks",
                                           "slurm"};

constexpr std::string_view kTaskFields[] = {"task_id",
                                            "command",
                                            "depends_on",
                                            "trigger_rule",
                                            "retries",
                                            "retry_delay",
                                            "retry_exponential_backoff",
                                            "max_retry_delay",
                                            "execution_timeout",
                                            "pool",
                                            "priority_weight",
                                            "env",
                                            "cwd",
                                            "window",
                                            "executor",
                                            "map",
                                            "cache",
                                            "slurm",
                                            "limits"};

constexpr std::string_view kMapFields[] = {"items", "range", "chunk", "from"};
constexpr std::string_view kCacheFields[] = {"inputs", "outputs"};
constexpr std::string_view kSlurmFields[] = {"partition", "cpus_per_task", "mem",   "time",
                                             "gres",      "extra_args",    "array"};

// What Airflow, Dagu and cron users tend to write instead of our names.
constexpr YamlAlias kDagAliases[] = {{"id", "dag_id"},
                                     {"name", "dag_id"},
                                     {"schedule_interval", "schedule"},
                                     {"cron", "schedule"},
                                     {"tz", "timezone"},
                                     {"steps", "tasks"},
                                     {"doc_md", "description"},
                                     {"max_active_runs_per_dag", "max_active_runs"}};
constexpr YamlAlias kTaskAliases[] = {{"id", "task_id"},
                                      {"name", "task_id"},
                                      {"cmd", "command"},
                                      {"run", "command"},
                                      {"script", "command"},
                                      {"bash_command", "command"},
                                      {"depends", "depends_on"},
                                      {"upstream", "depends_on"},
                                      {"dependencies", "depends_on"},
                                      {"timeout", "execution_timeout"},
                                      {"dir", "cwd"},
                                      {"working_dir", "cwd"},
                                      {"priority", "priority_weight"}};

// A mapped task makes one task instance per item or chunk; beyond this many the run's bookkeeping
// (rows, log files, dashboard cells) would swamp everything else, and it is almost always a
// forgotten `chunk`.
constexpr int64_t kMaxMapInstances = 100000;

// Names that become part of environment variable names (env keys, NIGHTSHIFT_PARAM_<NAME>).
bool IsValidVariableName(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name.front()))) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; });
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

// " (did you mean "x"?)" when one name is close, else the whole list, so that the user never has
// to go and look up what is allowed.
std::string HintFrom(std::string_view word, const std::vector<std::string>& names, std::string_view none) {
  std::string hint = DidYouMean(word, names);
  if (!hint.empty()) return hint;
  if (names.empty()) return " (" + std::string(none) + ")";
  return " (one of: " + JoinNames(names) + ")";
}

// Where a task's parts were written, for the checks that need every task first.
struct TaskSource {
  YamlPosition entry;
  YamlPosition task_id;
  std::vector<YamlPosition> depends_on;  // parallel to Task::depends_on
  YamlPosition map_from;
  bool has_task_id = false;
  bool has_command = false;
};

class DagReader {
 public:
  DagReader(const std::string& path, const DagLoadContext& context) : path_(path), context_(context) {}

  DagLoadResult Read(std::string_view text) {
    if (std::optional<YAML::Node> root = ParseYamlDocument(text, diagnostics_)) ReadDag(*root);
    DagLoadResult result;
    for (const YamlProblem& problem : diagnostics_.Sorted()) {
      result.errors.push_back(
          ImportError{path_, problem.position.line, problem.position.column, problem.message});
    }
    if (result.errors.empty()) result.dag = std::move(dag_);
    return result;
  }

 private:
  void Error(YamlPosition at, std::string message) { diagnostics_.Add(at, std::move(message)); }

  void ReadDag(const YAML::Node& root) {
    if (root.IsNull()) {
      Error(YamlPosition{}, "the file is empty; a DAG needs at least a \"tasks\" list");
      return;
    }
    const YamlMap top = YamlMap::Read(root, "DAG file", kDagFields, "", diagnostics_, kDagAliases);
    if (!top.is_map()) return;
    dag_.file_path = path_;

    ReadDagId(top);
    ReadTimezoneAndSchedule(top);
    ReadDates(top);
    for (const YamlField& field : top.fields()) ReadDagField(field);

    TaskSource base_source;
    Task base;
    if (const YamlField* defaults = top.Find("default_args"); defaults != nullptr && !defaults->is_null()) {
      ReadDefaultArgs(*defaults, base, base_source);
    }
    const YamlField* tasks = top.Find("tasks");
    if (tasks == nullptr) {
      Error(top.position(), "missing field \"tasks\": a DAG needs at least one task");
    } else if (tasks->is_null() || (tasks->value.IsSequence() && tasks->value.size() == 0)) {
      Error(tasks->value_position, "tasks: the list is empty; a DAG needs at least one task");
    } else if (!tasks->value.IsSequence()) {
      Error(tasks->value_position, "tasks: expected a list of tasks, got " + DescribeNode(tasks->value));
    } else {
      // One allocation, rather than moving every task read so far each time the vector grows.
      tasks_.reserve(tasks->value.size());
      sources_.reserve(tasks->value.size());
      for (const YAML::Node& entry : tasks->value) ReadTask(entry, base, base_source);
      CheckTasks();
    }
  }

  void ReadDagId(const YamlMap& top) {
    const YamlField* field = top.Find("dag_id");
    if (field != nullptr && !field->is_null()) {
      std::optional<std::string> id = ReadNonEmptyString(*field, diagnostics_);
      if (!id) return;
      if (!IsValidId(*id)) {
        Error(field->value_position, "invalid dag_id " + Quote(*id) + ": " + std::string(kIdRule));
        return;
      }
      dag_.dag_id = *id;
      return;
    }
    const std::string stem = std::filesystem::path(path_).stem().string();
    if (!IsValidId(stem)) {
      Error(top.position(), "invalid dag_id " + Quote(stem) + " (taken from the file name): " +
                                std::string(kIdRule) + ", or set dag_id");
      return;
    }
    dag_.dag_id = stem;
  }

  // The time zone first: the schedule and the dates are read in it.
  void ReadTimezoneAndSchedule(const YamlMap& top) {
    if (const YamlField* field = top.Find("timezone"); field != nullptr && !field->is_null()) {
      if (std::optional<std::string> zone = ReadNonEmptyString(*field, diagnostics_)) {
        if (IsKnownTimeZone(*zone)) {
          dag_.timezone = *zone;
        } else {
          Error(field->value_position, "timezone: unknown time zone " + Quote(*zone) + TimeZoneHint(*zone));
          timezone_ok_ = false;
        }
      } else {
        timezone_ok_ = false;
      }
    }
    if (const YamlField* field = top.Find("schedule"); field != nullptr && !field->is_null()) {
      if (std::optional<std::string> expression = ReadNonEmptyString(*field, diagnostics_)) {
        // With a bad time zone the schedule is still checked, in UTC, so both mistakes show at once.
        Result<CronSchedule> schedule =
            CronSchedule::Parse(*expression, timezone_ok_ ? dag_.timezone : "UTC");
        if (schedule.ok()) {
          dag_.schedule = *expression;
        } else {
          Error(field->value_position, "schedule: " + schedule.status().message());
        }
      }
    }
  }

  void ReadDates(const YamlMap& top) {
    const std::string zone = timezone_ok_ ? dag_.timezone : "UTC";
    auto read = [&](std::string_view name, std::optional<TimePoint>& out) -> const YamlField* {
      const YamlField* field = top.Find(name);
      if (field == nullptr || field->is_null()) return nullptr;
      std::optional<std::string> text = ReadNonEmptyString(*field, diagnostics_);
      if (!text) return nullptr;
      Result<TimePoint> when = ParseTimestamp(*text, zone);
      if (!when.ok()) {
        Error(field->value_position, field->label + ": " + when.status().message());
        return nullptr;
      }
      out = *when;
      return field;
    };
    read("start_date", dag_.start_date);
    const YamlField* end = read("end_date", dag_.end_date);
    if (end != nullptr && dag_.start_date && dag_.end_date && *dag_.end_date < *dag_.start_date) {
      Error(end->value_position, "end_date: is before start_date");
    }
  }

  void ReadDagField(const YamlField& field) {
    const std::string& name = field.name;
    if (field.is_null()) return;  // null leaves a field at its default
    if (name == "description") {
      if (auto text = ReadString(field, diagnostics_)) dag_.description = *text;
    } else if (name == "catchup") {
      if (auto value = ReadBool(field, diagnostics_)) dag_.catchup = *value;
    } else if (name == "is_paused_upon_creation") {
      if (auto value = ReadBool(field, diagnostics_)) dag_.is_paused_upon_creation = *value;
    } else if (name == "max_active_runs") {
      if (auto value = ReadInt(field, diagnostics_, 1, INT_MAX))
        dag_.max_active_runs = static_cast<int>(*value);
    } else if (name == "max_active_tasks") {
      if (auto value = ReadInt(field, diagnostics_, 1, INT_MAX))
        dag_.max_active_tasks = static_cast<int>(*value);
    } else if (name == "dagrun_timeout") {
      if (auto value = ReadDuration(field, diagnostics_, /*positive=*/true)) dag_.dagrun_timeout = *value;
    } else if (name == "on_success") {
      if (auto text = ReadNonEmptyString(field, diagnostics_)) dag_.on_success = *text;
    } else if (name == "on_failure") {
      if (auto text = ReadNonEmptyString(field, diagnostics_)) dag_.on_failure = *text;
    } else if (name == "window") {
      if (auto window = ReadWindow(field)) dag_.window = *window;
    } else if (name == "tags") {
      if (auto tags = ReadStringList(field, diagnostics_)) dag_.tags = *tags;
    } else if (name == "params") {
      ReadParams(field);
    } else if (name == "env") {
      ReadEnv(field, dag_.env);
    } else if (name == "slurm") {
      ReadSlurm(field, dag_.slurm);
    }
    // dag_id, timezone, schedule, dates, default_args and tasks are read on their own, in order.
  }

  void ReadParams(const YamlField& field) {
    const YamlMap params = YamlMap::ReadFree(field.value, "params", "params.", diagnostics_);
    for (const YamlField& param : params.fields()) {
      if (!IsValidVariableName(param.name)) {
        Error(param.key_position, "params: invalid name " + Quote(param.name) +
                                      ": use letters, digits and \"_\" (it becomes NIGHTSHIFT_PARAM_<NAME>)");
        continue;
      }
      if (auto value = ReadScalarOrJson(param, diagnostics_)) dag_.params[param.name] = *value;
    }
  }

  void ReadEnv(const YamlField& field, std::map<std::string, std::string>& env) {
    const YamlMap map = YamlMap::ReadFree(field.value, field.label, field.label + ".", diagnostics_);
    env.clear();
    for (const YamlField& variable : map.fields()) {
      if (!IsValidVariableName(variable.name)) {
        Error(variable.key_position, field.label + ": invalid variable name " + Quote(variable.name) +
                                         ": use letters, digits and \"_\", not starting with a digit");
        continue;
      }
      if (variable.is_null()) {
        env[variable.name] = "";
      } else if (auto value = ReadString(variable, diagnostics_)) {
        env[variable.name] = *value;
      }
    }
  }

  // The Slurm executor's sbatch options (per DAG, or per task where they replace the DAG's
  // field by field when the executor merges them). Written as a whole: a task's `slurm:` replaces
  // one from default_args.
  void ReadSlurm(const YamlField& field, SlurmTaskOptions& out) {
    if (field.is_null()) {
      out = SlurmTaskOptions{};
      return;
    }
    if (!field.value.IsMap()) {
      Error(field.value_position, "slurm: expected a mapping, got " + DescribeNode(field.value));
      return;
    }
    const YamlMap slurm = YamlMap::Read(field.value, "slurm", kSlurmFields, "slurm.", diagnostics_);
    SlurmTaskOptions options;
    for (const YamlField& entry : slurm.fields()) {
      if (entry.is_null()) continue;
      if (entry.name == "partition") {
        if (auto text = ReadNonEmptyString(entry, diagnostics_)) options.partition = *text;
      } else if (entry.name == "cpus_per_task") {
        if (auto value = ReadInt(entry, diagnostics_, 1, 1 << 20)) options.cpus_per_task = static_cast<int>(*value);
      } else if (entry.name == "mem" || entry.name == "time" || entry.name == "gres") {
        // Numbers are fine too ("mem: 4000" is megabytes to sbatch), so read them as text.
        if (auto text = ReadNonEmptyString(entry, diagnostics_)) {
          (entry.name == "mem" ? options.mem : entry.name == "time" ? options.time : options.gres) = *text;
        }
      } else if (entry.name == "extra_args") {
        if (auto list = ReadStringList(entry, diagnostics_)) options.extra_args = std::move(*list);
      } else if (entry.name == "array") {
        if (auto value = ReadBool(entry, diagnostics_)) options.array = *value;
      }
    }
    out = std::move(options);
  }

  std::optional<std::string> ReadWindow(const YamlField& field) {
    std::optional<std::string> name = ReadNonEmptyString(field, diagnostics_);
    if (!name) return std::nullopt;
    if (context_.windows.count(*name) == 0) {
      const std::vector<std::string> known(context_.windows.begin(), context_.windows.end());
      Error(field.value_position, field.label + ": unknown window " + Quote(*name) +
                                      HintFrom(*name, known, "the config defines no windows"));
      return std::nullopt;
    }
    return name;
  }

  void ReadDefaultArgs(const YamlField& field, Task& base, TaskSource& source) {
    const YamlMap defaults =
        YamlMap::Read(field.value, "default_args", kTaskFields, "", diagnostics_, kTaskAliases);
    for (const YamlField& arg : defaults.fields()) {
      if (arg.name == "task_id") {
        Error(arg.key_position, "default_args: task_id cannot have a default; every task names its own");
        continue;
      }
      ApplyTaskField(arg, base, source);
    }
  }

  void ReadTask(const YAML::Node& entry, const Task& base, const TaskSource& base_source) {
    const YamlMap fields = YamlMap::Read(entry, "task", kTaskFields, "", diagnostics_, kTaskAliases);
    if (!fields.is_map()) return;
    Task task = base;
    TaskSource source = base_source;
    source.entry = fields.position();
    task.location = SourceLocation{source.entry.line, source.entry.column};
    for (const YamlField& field : fields.fields()) ApplyTaskField(field, task, source);
    if (!source.has_task_id) {
      Error(source.entry, "missing field \"task_id\"");
    } else if (!source.has_command && !task.task_id.empty()) {
      Error(source.entry, "task " + Quote(task.task_id) + ": missing field \"command\"");
    }
    tasks_.push_back(std::move(task));
    sources_.push_back(std::move(source));
  }

  // One task field, from the task's entry or from default_args. A field written in the task
  // replaces the default as a whole (env and map included), as in Airflow; null means the
  // built-in default.
  void ApplyTaskField(const YamlField& field, Task& task, TaskSource& source) {
    const std::string& name = field.name;
    const Task defaults;
    if (name == "task_id") {
      source.has_task_id = true;
      source.task_id = field.value_position;
      if (auto id = ReadNonEmptyString(field, diagnostics_)) {
        if (IsValidId(*id)) {
          task.task_id = *id;
        } else {
          Error(field.value_position, "invalid task_id " + Quote(*id) + ": " + std::string(kIdRule));
        }
      }
    } else if (name == "command") {
      source.has_command = true;
      if (auto command = ReadNonEmptyString(field, diagnostics_)) task.command = *command;
    } else if (field.is_null()) {
      ResetTaskField(name, task, source, defaults);
    } else if (name == "depends_on") {
      ReadDependsOn(field, task, source);
    } else if (name == "trigger_rule") {
      if (auto text = ReadNonEmptyString(field, diagnostics_)) {
        if (std::optional<TriggerRule> rule = ParseTriggerRule(*text)) {
          task.trigger_rule = *rule;
        } else {
          const auto& names = TriggerRuleNames();
          Error(field.value_position,
                "trigger_rule: unknown rule " + Quote(*text) +
                    HintFrom(*text, std::vector<std::string>(names.begin(), names.end()), ""));
        }
      }
    } else if (name == "retries") {
      if (auto value = ReadInt(field, diagnostics_, 0, INT_MAX)) task.retries = static_cast<int>(*value);
    } else if (name == "retry_delay") {
      if (auto value = ReadDuration(field, diagnostics_)) task.retry_delay = *value;
    } else if (name == "retry_exponential_backoff") {
      if (auto value = ReadBool(field, diagnostics_)) task.retry_exponential_backoff = *value;
    } else if (name == "max_retry_delay") {
      if (auto value = ReadDuration(field, diagnostics_, /*positive=*/true)) task.max_retry_delay = *value;
    } else if (name == "execution_timeout") {
      if (auto value = ReadDuration(field, diagnostics_, /*positive=*/true)) task.execution_timeout = *value;
    } else if (name == "pool") {
      if (auto pool = ReadNonEmptyString(field, diagnostics_)) {
        if (context_.pools.count(*pool) != 0) {
          task.pool = *pool;
        } else {
          const std::vector<std::string> known(context_.pools.begin(), context_.pools.end());
          Error(field.value_position,
                "pool: unknown pool " + Quote(*pool) + HintFrom(*pool, known, "the config defines no pools"));
        }
      }
    } else if (name == "priority_weight") {
      if (auto value = ReadInt(field, diagnostics_, 0, INT_MAX))
        task.priority_weight = static_cast<int>(*value);
    } else if (name == "env") {
      ReadEnv(field, task.env);
    } else if (name == "cwd") {
      if (auto cwd = ReadNonEmptyString(field, diagnostics_)) task.cwd = *cwd;
    } else if (name == "window") {
      if (auto window = ReadWindow(field)) task.window = *window;
    } else if (name == "executor") {
      if (auto executor = ReadNonEmptyString(field, diagnostics_)) {
        if (*executor == "local" || *executor == "slurm") {
          task.executor = *executor;
        } else {
          Error(field.value_position, "executor: unknown executor " + Quote(*executor) +
                                          HintFrom(*executor, {"local", "slurm"}, ""));
        }
      }
    } else if (name == "map") {
      ReadMap(field, task, source);
    } else if (name == "cache") {
      ReadCache(field, task);
    } else if (name == "slurm") {
      ReadSlurm(field, task.slurm);
    } else if (name == "limits") {
      if (auto limits = ReadTaskLimits(field, diagnostics_)) task.limits = *limits;
    }
  }

  void ResetTaskField(const std::string& name, Task& task, TaskSource& source, const Task& defaults) {
    if (name == "depends_on") {
      task.depends_on.clear();
      source.depends_on.clear();
    } else if (name == "trigger_rule") {
      task.trigger_rule = defaults.trigger_rule;
    } else if (name == "retries") {
      task.retries = defaults.retries;
    } else if (name == "retry_delay") {
      task.retry_delay = defaults.retry_delay;
    } else if (name == "retry_exponential_backoff") {
      task.retry_exponential_backoff = defaults.retry_exponential_backoff;
    } else if (name == "max_retry_delay") {
      task.max_retry_delay.reset();
    } else if (name == "execution_timeout") {
      task.execution_timeout.reset();
    } else if (name == "pool") {
      task.pool = defaults.pool;
    } else if (name == "priority_weight") {
      task.priority_weight = defaults.priority_weight;
    } else if (name == "env") {
      task.env.clear();
    } else if (name == "cwd") {
      task.cwd = defaults.cwd;
    } else if (name == "window") {
      task.window.reset();
    } else if (name == "executor") {
      task.executor.reset();
    } else if (name == "map") {
      task.map = MapSpec{};
    } else if (name == "cache") {
      task.cache = CacheSpec{};
    } else if (name == "slurm") {
      task.slurm = SlurmTaskOptions{};
    } else if (name == "limits") {
      task.limits = TaskLimits{};
    }
  }

  // A list of task_ids; a single name may be written without brackets.
  void ReadDependsOn(const YamlField& field, Task& task, TaskSource& source) {
    std::vector<std::string> names;
    std::vector<YamlPosition> positions;
    if (field.value.IsScalar()) {
      names.push_back(field.value.Scalar());
      positions.push_back(field.value_position);
    } else if (auto list = ReadStringList(field, diagnostics_, &positions)) {
      names = std::move(*list);
    } else {
      return;
    }
    task.depends_on.clear();
    source.depends_on.clear();
    // A set, not a search of the list: a sink of a wide DAG names thousands of upstreams.
    std::unordered_set<std::string_view> seen;
    for (size_t i = 0; i < names.size(); ++i) {
      // Naming an upstream twice means nothing more than naming it once.
      if (!seen.insert(names[i]).second) continue;
      task.depends_on.push_back(names[i]);
      source.depends_on.push_back(positions[i]);
    }
  }

  void ReadMap(const YamlField& field, Task& task, TaskSource& source) {
    const YamlMap map = YamlMap::Read(field.value, "map", kMapFields, "map.", diagnostics_);
    if (!map.is_map()) return;
    MapSpec spec;
    const YamlField* kind_field = nullptr;
    bool ok = true;
    for (const YamlField& entry : map.fields()) {
      if (entry.name == "chunk") continue;
      if (kind_field != nullptr) {
        Error(entry.key_position, "map: use only one of \"items\", \"range\" and \"from\"");
        ok = false;
        continue;
      }
      kind_field = &entry;
    }
    if (kind_field == nullptr) {
      Error(map.position(), "map: needs one of \"items\", \"range\" or \"from\"");
      return;
    }
    const YamlField* chunk = map.Find("chunk");
    if (chunk != nullptr && kind_field->name != "range") {
      Error(chunk->key_position, "map.chunk: only allowed with \"range\"");
      ok = false;
    }
    if (kind_field->name == "items") {
      spec.kind = MapSpec::Kind::kItems;
      if (!kind_field->value.IsSequence()) {
        Error(kind_field->value_position,
              "map.items: expected a list, got " + DescribeNode(kind_field->value));
        return;
      }
      if (kind_field->value.size() == 0) {
        Error(kind_field->value_position, "map.items: the list is empty");
        return;
      }
      if (static_cast<int64_t>(kind_field->value.size()) > kMaxMapInstances) {
        Error(kind_field->value_position,
              "map.items: more than " + std::to_string(kMaxMapInstances) + " items; split the task");
        return;
      }
      size_t index = 0;
      for (const YAML::Node& item : kind_field->value) {
        const std::string label = "map.items[" + std::to_string(index++) + "]";
        if (auto text = NodeToScalarOrJson(item, label, diagnostics_)) {
          spec.items.push_back(*text);
        } else {
          ok = false;
        }
      }
    } else if (kind_field->name == "range") {
      spec.kind = MapSpec::Kind::kRange;
      std::optional<int64_t> range = ReadInt(*kind_field, diagnostics_, 1);
      std::optional<int64_t> size =
          chunk != nullptr ? ReadInt(*chunk, diagnostics_, 1) : std::optional<int64_t>(1);
      if (!range || !size) return;
      spec.range = *range;
      spec.chunk = *size;
      const int64_t instances = spec.range / spec.chunk + (spec.range % spec.chunk != 0 ? 1 : 0);
      if (instances > kMaxMapInstances) {
        Error(kind_field->value_position, "map: range " + std::to_string(spec.range) + " in chunks of " +
                                              std::to_string(spec.chunk) + " makes " +
                                              std::to_string(instances) + " task instances, more than " +
                                              std::to_string(kMaxMapInstances) + "; use a larger chunk");
        return;
      }
    } else {
      spec.kind = MapSpec::Kind::kFrom;
      std::optional<std::string> from = ReadNonEmptyString(*kind_field, diagnostics_);
      if (!from) return;
      spec.from = *from;
      source.map_from = kind_field->value_position;
    }
    if (ok) task.map = std::move(spec);
  }

  void ReadCache(const YamlField& field, Task& task) {
    const YamlMap cache = YamlMap::Read(field.value, "cache", kCacheFields, "cache.", diagnostics_);
    if (!cache.is_map()) return;
    CacheSpec spec;
    spec.enabled = true;
    for (const YamlField& entry : cache.fields()) {
      if (entry.is_null()) continue;
      std::vector<std::string>& out = entry.name == "inputs" ? spec.inputs : spec.outputs;
      if (auto list = ReadStringList(entry, diagnostics_)) out = std::move(*list);
    }
    task.cache = std::move(spec);
  }

  // Checks that need every task: unique ids, known upstreams, map sources, no cycles.
  void CheckTasks() {
    std::map<std::string, size_t> index;  // task_id -> first task with it
    std::vector<std::string> ids;
    for (size_t i = 0; i < tasks_.size(); ++i) {
      const std::string& id = tasks_[i].task_id;
      if (id.empty()) continue;
      auto [it, inserted] = index.emplace(id, i);
      if (!inserted) {
        Error(sources_[i].task_id, "duplicate task_id " + Quote(id) + " (first defined at line " +
                                       std::to_string(sources_[it->second].task_id.line) + ")");
      } else {
        ids.push_back(id);
      }
    }
    for (size_t i = 0; i < tasks_.size(); ++i) {
      Task& task = tasks_[i];
      TaskSource& source = sources_[i];
      for (size_t j = 0; j < task.depends_on.size(); ++j) {
        if (index.count(task.depends_on[j]) == 0) {
          Error(source.depends_on[j], "depends_on: unknown task " + Quote(task.depends_on[j]) +
                                          DidYouMean(task.depends_on[j], ids));
        }
      }
      if (task.map.kind != MapSpec::Kind::kFrom) continue;
      // Mapping over an upstream's output needs that output, so the edge is implied, as
      // Airflow's expand() implies it; writing it in depends_on as well is fine.
      if (task.map.from == task.task_id) {
        Error(source.map_from, "map.from: a task cannot map over its own output");
      } else if (index.count(task.map.from) == 0) {
        Error(source.map_from,
              "map.from: unknown task " + Quote(task.map.from) + DidYouMean(task.map.from, ids));
      } else if (std::find(task.depends_on.begin(), task.depends_on.end(), task.map.from) ==
                 task.depends_on.end()) {
        task.depends_on.push_back(task.map.from);
        source.depends_on.push_back(source.map_from);
      }
    }
    CheckCycles(index);
    dag_.tasks = std::move(tasks_);  // the last use of tasks_
  }

  // Finds the strongly connected components (Tarjan, without recursion so that a long chain
  // cannot exhaust the stack) and reports one cycle per component.
  void CheckCycles(const std::map<std::string, size_t>& index) {
    const size_t n = tasks_.size();
    std::vector<std::vector<size_t>> downstream(n);  // edges upstream -> downstream, in file order
    for (size_t i = 0; i < n; ++i) {
      auto self = index.find(tasks_[i].task_id);
      if (self == index.end() || self->second != i) continue;  // unnamed or a duplicate
      for (const std::string& upstream : tasks_[i].depends_on) {
        auto it = index.find(upstream);
        if (it != index.end()) downstream[it->second].push_back(i);
      }
    }
    for (auto& edges : downstream) std::sort(edges.begin(), edges.end());

    constexpr size_t kUnvisited = SIZE_MAX;
    std::vector<size_t> order(n, kUnvisited), low(n, 0), component(n, kUnvisited);
    std::vector<bool> on_stack(n, false);
    std::vector<size_t> stack;
    size_t counter = 0;
    size_t components = 0;
    for (size_t root = 0; root < n; ++root) {
      if (order[root] != kUnvisited) continue;
      std::vector<std::pair<size_t, size_t>> frames = {{root, 0}};  // node, next edge
      order[root] = low[root] = counter++;
      stack.push_back(root);
      on_stack[root] = true;
      while (!frames.empty()) {
        auto& [node, edge] = frames.back();
        if (edge < downstream[node].size()) {
          const size_t next = downstream[node][edge++];
          if (order[next] == kUnvisited) {
            order[next] = low[next] = counter++;
            stack.push_back(next);
            on_stack[next] = true;
            frames.emplace_back(next, 0);
          } else if (on_stack[next]) {
            low[node] = std::min(low[node], order[next]);
          }
          continue;
        }
        const size_t done = node;
        frames.pop_back();
        if (!frames.empty()) low[frames.back().first] = std::min(low[frames.back().first], low[done]);
        if (low[done] == order[done]) {
          size_t member;
          do {
            member = stack.back();
            stack.pop_back();
            on_stack[member] = false;
            component[member] = components;
          } while (member != done);
          ++components;
        }
      }
    }

    std::vector<std::vector<size_t>> members(components);
    for (size_t i = 0; i < n; ++i) {
      if (component[i] != kUnvisited) members[component[i]].push_back(i);
    }
    for (const std::vector<size_t>& group : members) {
      const size_t first = group.front();  // members are in file order
      const bool self_loop =
          std::find(downstream[first].begin(), downstream[first].end(), first) != downstream[first].end();
      if (group.size() < 2 && !self_loop) continue;
      ReportCycle(first, component, downstream);
    }
  }

  // The shortest way from `start` back to itself inside its component, taking edges in file
  // order so the message is the same every time.
  void ReportCycle(size_t start, const std::vector<size_t>& component,
                   const std::vector<std::vector<size_t>>& downstream) {
    const size_t n = tasks_.size();
    std::vector<size_t> parent(n, SIZE_MAX);
    std::deque<size_t> queue = {start};
    std::vector<bool> seen(n, false);
    seen[start] = true;
    size_t last = SIZE_MAX;  // the node whose edge closes the cycle
    while (!queue.empty() && last == SIZE_MAX) {
      const size_t node = queue.front();
      queue.pop_front();
      for (size_t next : downstream[node]) {
        if (component[next] != component[start]) continue;
        if (next == start) {
          last = node;
          break;
        }
        if (!seen[next]) {
          seen[next] = true;
          parent[next] = node;
          queue.push_back(next);
        }
      }
    }
    std::vector<size_t> path;
    for (size_t node = last; node != SIZE_MAX && node != start; node = parent[node]) path.push_back(node);
    path.push_back(start);
    std::reverse(path.begin(), path.end());
    std::string text;
    for (size_t node : path) text += tasks_[node].task_id + " -> ";
    text += tasks_[start].task_id;
    Error(sources_[start].entry, "dependency cycle: " + text);
  }

  const std::string& path_;
  const DagLoadContext& context_;
  YamlDiagnostics diagnostics_;
  Dag dag_;
  bool timezone_ok_ = true;
  std::vector<Task> tasks_;
  std::vector<TaskSource> sources_;
};

}  // namespace

DagLoadResult LoadDagText(std::string_view text, const std::string& path, const DagLoadContext& context) {
  try {
    return DagReader(path, context).Read(text);
  } catch (const std::exception& e) {
    // Nothing above should throw; if yaml-cpp does anyway, the file is an import error, not a crash.
    DagLoadResult result;
    result.errors.push_back(ImportError{path, 1, 1, std::string("cannot load the DAG: ") + e.what()});
    return result;
  }
}

DagLoadResult LoadDagFile(const std::string& path, const DagLoadContext& context) {
  std::string text;
  if (Status read = ReadWholeFile(path, text); !read.ok()) {
    DagLoadResult result;
    result.errors.push_back(ImportError{path, 1, 1, "cannot read the file: " + read.message()});
    return result;
  }
  return LoadDagText(text, path, context);
}

std::string FormatImportError(const ImportError& error) {
  return error.filename + ":" + std::to_string(error.line) + ":" + std::to_string(error.column) + ": " +
         error.message;
}

}  // namespace nightshift

// A DAG as loaded from its YAML file (contract section 1). Plain data: the loader in dags/
// fills it, the scheduler reads it. Defaults here are the documented defaults.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/duration.h"
#include "core/task_limits.h"
#include "core/time.h"

namespace nightshift {

enum class TriggerRule {
  kAllSuccess,
  kAllFailed,
  kAllDone,
  kOneSuccess,
  kOneFailed,
  kNoneFailed,
  kNoneFailedMinOneSuccess,
  kNoneSkipped,
  kAlways,
};
std::string_view ToString(TriggerRule rule);
std::optional<TriggerRule> ParseTriggerRule(std::string_view text);
// Every rule's name, in the order above (for "did you mean" and docs).
const std::vector<std::string_view>& TriggerRuleNames();

// Where something was written in its file; 1-based like editors count.
struct SourceLocation {
  int line = 0;
  int column = 0;
};

struct MapSpec {
  enum class Kind { kNone, kItems, kRange, kFrom };
  Kind kind = Kind::kNone;
  std::vector<std::string> items;  // kItems
  int64_t range = 0;               // kRange: 0..range-1 ...
  int64_t chunk = 1;               // ... cut into chunks of this size
  std::string from;                // kFrom: upstream task_id whose output is a JSON array

  bool operator==(const MapSpec&) const = default;
};

struct CacheSpec {
  bool enabled = false;
  std::vector<std::string> inputs;   // globs, relative to the task's cwd
  std::vector<std::string> outputs;  // paths that must exist for a hit

  bool operator==(const CacheSpec&) const = default;
};

// Per-DAG and per-task sbatch options for the Slurm executor (`slurm:` in a DAG file). Unset
// fields fall back to the DAG's, then to the config's; extra_args add up (config, DAG, task).
struct SlurmTaskOptions {
  std::optional<std::string> partition;
  std::optional<int> cpus_per_task;
  std::optional<std::string> mem;   // as sbatch takes it: "4G", "500M"
  std::optional<std::string> time;  // as sbatch takes it: "01:00:00", "30"
  std::optional<std::string> gres;
  std::vector<std::string> extra_args;
  bool array = false;  // a mapped task's instances as one job array

  bool operator==(const SlurmTaskOptions&) const = default;
};

struct Task {
  std::string task_id;
  std::string command;
  std::vector<std::string> depends_on;
  TriggerRule trigger_rule = TriggerRule::kAllSuccess;
  int retries = 0;
  Duration retry_delay = std::chrono::minutes(5);  // Airflow's default
  bool retry_exponential_backoff = false;
  std::optional<Duration> max_retry_delay;
  std::optional<Duration> execution_timeout;
  std::string pool = "default";
  int priority_weight = 1;
  std::map<std::string, std::string> env;
  std::string cwd = ".";              // relative to the DAG file's folder
  std::optional<std::string> window;  // overrides the DAG's window when set
  std::optional<std::string> executor;  // "local" | "slurm"; the daemon's default when unset
  MapSpec map;
  CacheSpec cache;
  SlurmTaskOptions slurm;
  TaskLimits limits;  // fields set here override the config's `limits:`
  SourceLocation location;  // of the task's entry in the file
};

struct Dag {
  std::string dag_id;
  std::string file_path;  // as found in the DAGs folder
  std::string description;
  std::optional<std::string> schedule;  // null: manual runs only
  std::string timezone = "UTC";
  std::optional<TimePoint> start_date;
  std::optional<TimePoint> end_date;
  bool catchup = false;
  bool is_paused_upon_creation = false;
  int max_active_runs = 16;   // Airflow's default
  int max_active_tasks = 16;  // Airflow's default
  std::optional<Duration> dagrun_timeout;
  std::optional<std::string> on_success;
  std::optional<std::string> on_failure;
  std::optional<std::string> window;
  std::vector<std::string> tags;
  // Param defaults as a task sees them in NIGHTSHIFT_PARAM_<NAME>: scalars as written,
  // lists and maps as JSON text.
  std::map<std::string, std::string> params;
  std::map<std::string, std::string> env;
  SlurmTaskOptions slurm;   // defaults for every task's `slurm:`
  std::vector<Task> tasks;  // in file order

  const Task* FindTask(std::string_view task_id) const;
};

}  // namespace nightshift

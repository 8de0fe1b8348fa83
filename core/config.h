// The daemon's configuration (contract section 2) as plain data. app/config.cc reads it from
// nightshift.yaml; every default lives here, in one place, and docs/config.md repeats them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/duration.h"
#include "core/task_limits.h"
#include "core/window.h"

namespace nightshift {

struct SlurmConfig {
  std::optional<std::string> partition;
  std::optional<std::string> account;
  std::optional<std::string> qos;
  std::vector<std::string> extra_args;
  Duration poll_interval = std::chrono::seconds(2);
  std::optional<std::string> shared_dir;
};

struct Config {
  // Relative paths are resolved against the config file's folder by the loader.
  std::string dags_folder = "./dags";
  std::string state_dir = "./.nightshift";  // state.db, logs/, api-token
  std::string listen = "127.0.0.1:8080";
  std::string executor = "local";  // local | slurm
  int parallelism = 32;            // running task processes in all
  std::map<std::string, int> pools = {{"default", 128}};  // "default" is always present
  std::map<std::string, Window> windows;
  // Retention of finished runs and their logs.
  int retention_max_runs_per_dag = 500;
  Duration retention_max_age = std::chrono::hours(24 * 30);
  // Auth. Empty token_file means <state_dir>/api-token.
  std::string token_file;
  bool read_requires_token = false;
  // Graceful shutdown: how long SIGTERM waits for running tries before exiting.
  Duration shutdown_grace = std::chrono::seconds(30);
  // on_close: kill sends SIGTERM, then SIGKILL after this long.
  Duration kill_grace = std::chrono::seconds(10);
  SlurmConfig slurm;
  // Every try's limits unless its task sets its own (`limits:` in the DAG file). An unset
  // log_size is kDefaultTaskLogSize; the rest are not applied when unset.
  TaskLimits limits;

  std::string config_path;  // the file it was read from; empty for defaults

  std::string DatabasePath() const { return state_dir + "/state.db"; }
  std::string LogsDir() const { return state_dir + "/logs"; }
  std::string TokenFile() const { return token_file.empty() ? state_dir + "/api-token" : token_file; }
};

}  // namespace nightshift

// The CLI commands that talk to a running daemon over its REST API (contract section 3):
// dags list/show/trigger/pause/unpause, runs list, tasks logs. Each returns the process exit
// code: 0 on success, 1 when the daemon cannot be reached or answers with an error (one line
// "nightshift: ..." on stderr), 2 on bad input found before anything was sent.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace nightshift {

// The flags every remote command takes besides --config.
struct RemoteOptions {
  std::string server;  // --server URL; empty: http://<config listen>
  std::string token;   // --token; empty: the config's token file, read when a request needs it
};

int ListDagsCommand(const Config& config, const RemoteOptions& remote);
int ShowDagCommand(const Config& config, const RemoteOptions& remote, const std::string& dag_id);

struct TriggerOptions {
  std::string dag_id;
  std::string conf;                 // --conf: a JSON object, or empty
  std::vector<std::string> params;  // --param k=v, merged into conf as strings
  std::string run_id;               // --run-id; empty: the daemon picks manual__<logical_date>
  bool wait = false;                // --wait: follow the run and exit 0/1 by its outcome
};
int TriggerDagCommand(const Config& config, const RemoteOptions& remote, const TriggerOptions& options);

int SetPausedCommand(const Config& config, const RemoteOptions& remote, const std::string& dag_id, bool paused);

struct RunsListOptions {
  std::string dag_id;  // empty: every DAG
  std::string state;   // empty: any state
  int limit = 25;
};
int ListRunsCommand(const Config& config, const RemoteOptions& remote, const RunsListOptions& options);

struct TaskLogsOptions {
  std::string dag_id;
  std::string run_id;
  std::string task_id;
  std::optional<int> try_number;  // --try; default: the task instance's latest try
  int map_index = -1;             // --map-index; -1: an unmapped task
  bool follow = false;            // -f: keep reading until the try (and, without --try, the task) ends
};
int TaskLogsCommand(const Config& config, const RemoteOptions& remote, const TaskLogsOptions& options);

// The trigger's conf as JSON text: --conf (which must be a JSON object) with every --param
// k=v set on it as a string, a param winning over --conf on the same key.
Result<std::string> BuildTriggerConf(const std::string& conf_json, const std::vector<std::string>& params);

}  // namespace nightshift

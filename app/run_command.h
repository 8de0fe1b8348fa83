// `nightshift run FILE.yaml`: one run of one DAG in the foreground, without a daemon or a
// listener, through the same scheduler and executor the daemon uses.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"

namespace nightshift {

struct RunCommandOptions {
  std::string dag_file;
  int parallelism = 0;                       // -j; 0: the number of CPUs
  std::map<std::string, std::string> params;  // --param k=v, applied as the run's conf
  std::vector<std::string> tasks;            // --task: only these tasks
  std::string state_dir = ".nightshift";
  bool respect_windows = false;
  bool no_cache = false;
};

// Returns the exit code: 0 when the run succeeded, 1 when it failed, 2 on bad input.
int RunDagOnce(const RunCommandOptions& options, const Config& config);

}  // namespace nightshift

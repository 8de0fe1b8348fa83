// The cache key of a task with `cache:` (like make's "is the target up to date", by content).
//
// In the key: the command; every environment variable the task is given by Nightshift (the
// DAG's and task's env, params after conf, the map item or chunk, upstream outputs); and the
// path and contents of every file its `inputs` globs match (a glob that matches nothing counts
// too, so a file appearing later changes the key).
// Not in the key: the run id, try number, logical date, NIGHTSHIFT_DS and the output path
// (they differ between runs by nature), the daemon's own environment, and modification times.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/dag.h"
#include "core/status.h"
#include "executor/executor.h"

namespace nightshift {

// Hex SHA-256 of what the try would run with. Input globs are relative to spec.cwd.
// `unwritten`: the content of files the try will read that are written only once its pass is
// committed (a big upstream output, NIGHTSHIFT_INPUT_<UP>_FILE), by path; hashed as if read.
Result<std::string> ComputeCacheKey(const CacheSpec& cache, const TaskSpec& spec,
                                    const std::map<std::string, std::string_view>& unwritten = {});

// Whether every `outputs` path exists (relative to cwd); the first missing one in *missing.
bool CacheOutputsPresent(const CacheSpec& cache, const std::string& cwd, std::string* missing);

}  // namespace nightshift

// Reads a `limits:` mapping (nightshift.yaml's, and a task's in a DAG file) with the same
// FILE:LINE:COLUMN problems as every other field.
#pragma once

#include <optional>

#include "core/task_limits.h"
#include "dags/yaml_reader.h"

namespace nightshift {

// The fields written in `field` (log_size, cpu_time, address_space, open_files, nice); a field
// left out or null stays unset. nullopt after recording a problem.
std::optional<TaskLimits> ReadTaskLimits(const YamlField& field, YamlDiagnostics& diagnostics);

}  // namespace nightshift

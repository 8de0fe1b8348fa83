// Reads nightshift.yaml (contract section 2) with the same FILE:LINE:COLUMN errors as DAG files.
#pragma once

#include <string>
#include <string_view>

#include "core/config.h"
#include "core/status.h"

namespace nightshift {

// Loads the config at `path`. Relative dags_folder, state_dir and token_file are resolved
// against the config file's folder. Unknown fields, wrong types, bad durations, bad windows
// and unknown time zones are errors; the Status message holds one "FILE:LINE:COLUMN: message"
// line per problem.
Result<Config> LoadConfig(const std::string& path);
Result<Config> LoadConfigText(std::string_view text, const std::string& path);

}  // namespace nightshift

// Fan-out arithmetic for `map:` (contract sections 1 and 4): how many instances a mapped task
// has and what each one is given. Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dag.h"
#include "core/status.h"

namespace nightshift {

// ceil(range / chunk); 0 for range 0. chunk must be >= 1.
int64_t ChunkCount(int64_t range, int64_t chunk);
// [start, end) of chunk `index`: the last one is shorter when chunk does not divide range.
std::pair<int64_t, int64_t> ChunkBounds(int64_t range, int64_t chunk, int64_t index);

// The instances a task has when its run is created: the number of items or chunks, or nullopt
// for an unmapped task and for `from` (which expands at run time).
std::optional<int64_t> StaticMapCount(const Task& task);

// The items a `from` task maps over, from its upstream's output (JSON text): each item as the
// task sees it in NIGHTSHIFT_MAP_ITEM (strings as they are, anything else as JSON). The output
// must be a JSON array; anything else is an error naming what it was.
Result<std::vector<std::string>> ItemsFromOutput(std::string_view upstream_task, std::string_view output_json);

// A JSON value as an environment variable: strings as they are, anything else as JSON text.
std::string JsonToEnvValue(std::string_view json_text);

}  // namespace nightshift

#include "scheduler/map_expansion.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "scheduler/json_input.h"

namespace nightshift {
namespace {
using json = nlohmann::json;

std::string ItemText(const json& item) { return item.is_string() ? item.get<std::string>() : DumpJson(item); }

}  // namespace

int64_t ChunkCount(int64_t range, int64_t chunk) {
  if (range <= 0 || chunk <= 0) return 0;
  return range / chunk + (range % chunk != 0 ? 1 : 0);
}

std::pair<int64_t, int64_t> ChunkBounds(int64_t range, int64_t chunk, int64_t index) {
  const int64_t start = index * chunk;
  return {start, std::min(range, start + chunk)};
}

std::optional<int64_t> StaticMapCount(const Task& task) {
  switch (task.map.kind) {
    case MapSpec::Kind::kItems: return static_cast<int64_t>(task.map.items.size());
    case MapSpec::Kind::kRange: return ChunkCount(task.map.range, task.map.chunk);
    case MapSpec::Kind::kNone:
    case MapSpec::Kind::kFrom: return std::nullopt;
  }
  return std::nullopt;
}

Result<std::vector<std::string>> ItemsFromOutput(std::string_view upstream_task, std::string_view output_json) {
  Result<json> parsed = ParseJsonInput(output_json);
  if (!parsed.ok()) {
    return Status::InvalidArgument("map from " + std::string(upstream_task) + ": its output is " +
                                   parsed.status().message());
  }
  const json& value = *parsed;
  if (!value.is_array()) {
    return Status::InvalidArgument("map from " + std::string(upstream_task) + ": its output must be a JSON array, got " +
                                   std::string(value.type_name()));
  }
  std::vector<std::string> items;
  items.reserve(value.size());
  for (const json& item : value) items.push_back(ItemText(item));
  return items;
}

std::string JsonToEnvValue(std::string_view json_text) {
  Result<json> value = ParseJsonInput(json_text);
  return value.ok() ? ItemText(*value) : std::string(json_text);
}

}  // namespace nightshift

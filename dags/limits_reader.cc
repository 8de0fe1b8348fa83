#include "dags/limits_reader.h"

#include <climits>
#include <string>
#include <string_view>

namespace nightshift {
namespace {

constexpr std::string_view kLimitFields[] = {"log_size", "cpu_time", "address_space", "open_files", "nice"};
constexpr YamlAlias kLimitAliases[] = {{"cpu", "cpu_time"},
                                       {"cpu_seconds", "cpu_time"},
                                       {"memory", "address_space"},
                                       {"mem", "address_space"},
                                       {"vmem", "address_space"},
                                       {"nofile", "open_files"},
                                       {"max_open_files", "open_files"},
                                       {"niceness", "nice"},
                                       {"log_max_size", "log_size"},
                                       {"max_log_size", "log_size"}};

std::optional<int64_t> ReadByteSize(const YamlField& field, int64_t min, YamlDiagnostics& diagnostics) {
  if (!field.value.IsScalar()) {
    diagnostics.Add(field.value_position, field.label + ": expected a size such as 100MB or 4GiB, got " +
                                              DescribeNode(field.value));
    return std::nullopt;
  }
  Result<int64_t> size = ParseByteSize(field.value.Scalar());
  if (!size.ok()) {
    diagnostics.Add(field.value_position, field.label + ": " + size.status().message());
    return std::nullopt;
  }
  if (*size < min) {
    diagnostics.Add(field.value_position, field.label + ": must be at least " + FormatByteSize(min) +
                                              ", got " + field.value.Scalar());
    return std::nullopt;
  }
  return *size;
}

}  // namespace

std::optional<TaskLimits> ReadTaskLimits(const YamlField& field, YamlDiagnostics& diagnostics) {
  if (!field.value.IsMap()) {
    diagnostics.Add(field.value_position, field.label +
                                              ": expected a mapping such as {cpu_time: 10m, "
                                              "address_space: 4GB}, got " +
                                              DescribeNode(field.value));
    return std::nullopt;
  }
  const size_t errors_before = diagnostics.size();
  const YamlMap map =
      YamlMap::Read(field.value, field.label, kLimitFields, field.label + ".", diagnostics, kLimitAliases);
  TaskLimits limits;
  for (const YamlField& entry : map.fields()) {
    if (entry.is_null()) continue;
    if (entry.name == "log_size") {
      if (auto size = ReadByteSize(entry, 1, diagnostics)) limits.log_size = *size;
    } else if (entry.name == "cpu_time") {
      if (auto duration = ReadDuration(entry, diagnostics, /*positive=*/true)) limits.cpu_time = *duration;
    } else if (entry.name == "address_space") {
      // Less than this cannot even start /bin/sh: most likely a unit was left out.
      if (auto size = ReadByteSize(entry, int64_t{1} << 20, diagnostics)) limits.address_space = *size;
    } else if (entry.name == "open_files") {
      // stdin, stdout and stderr are open before the command runs.
      if (auto value = ReadInt(entry, diagnostics, 3, INT_MAX)) limits.open_files = *value;
    } else if (entry.name == "nice") {
      if (auto value = ReadInt(entry, diagnostics, -20, 19)) limits.nice = static_cast<int>(*value);
    }
  }
  if (diagnostics.size() != errors_before) return std::nullopt;
  return limits;
}

}  // namespace nightshift

#include "core/task_limits.h"

#include <cctype>
#include <cmath>
#include <limits>

#include "core/strings.h"

namespace nightshift {
namespace {

struct SizeUnit {
  std::string_view name;  // lower case
  double bytes;
};
constexpr SizeUnit kSizeUnits[] = {
    {"", 1},        {"b", 1},         {"k", 1 << 10},     {"kib", 1 << 10}, {"kb", 1e3},
    {"m", 1 << 20}, {"mib", 1 << 20}, {"mb", 1e6},        {"g", 1 << 30},   {"gib", 1 << 30},
    {"gb", 1e9},    {"t", 1LL << 40}, {"tib", 1LL << 40}, {"tb", 1e12},
};

}  // namespace

TaskLimits TaskLimits::OverriddenBy(const TaskLimits& over) const {
  TaskLimits out = *this;
  if (over.log_size) out.log_size = over.log_size;
  if (over.cpu_time) out.cpu_time = over.cpu_time;
  if (over.address_space) out.address_space = over.address_space;
  if (over.open_files) out.open_files = over.open_files;
  if (over.nice) out.nice = over.nice;
  return out;
}

std::string TaskLimits::DescribeProcessLimits() const {
  std::string out;
  auto add = [&out](std::string_view name, const std::string& value) {
    if (!out.empty()) out += ", ";
    out.append(name).append("=").append(value);
  };
  if (cpu_time) add("cpu_time", FormatDuration(*cpu_time));
  if (address_space) add("address_space", FormatByteSize(*address_space));
  if (open_files) add("open_files", std::to_string(*open_files));
  if (nice) add("nice", std::to_string(*nice));
  return out;
}

Result<int64_t> ParseByteSize(std::string_view text) {
  auto invalid = [&](const std::string& why) {
    return Status::InvalidArgument("invalid size \"" + std::string(text) + "\": " + why);
  };
  size_t end = 0;
  while (end < text.size() && (std::isdigit(static_cast<unsigned char>(text[end])) || text[end] == '.'))
    ++end;
  const std::string number(text.substr(0, end));
  if (number.empty() || number.front() == '.' || number.back() == '.' ||
      number.find('.') != number.rfind('.')) {
    return invalid("expected a number, then a unit (e.g. 1048576, 512K, 100MB, 4GiB)");
  }
  if (number.size() > 20) return invalid("too large");  // and std::stod cannot overflow
  std::string_view unit_text = text.substr(end);
  while (!unit_text.empty() && unit_text.front() == ' ') unit_text.remove_prefix(1);
  const std::string unit = Lower(unit_text);
  for (const SizeUnit& candidate : kSizeUnits) {
    if (unit != candidate.name) continue;
    const double bytes = std::ceil(std::stod(number) * candidate.bytes);
    if (!(bytes < static_cast<double>(std::numeric_limits<int64_t>::max()))) return invalid("too large");
    return static_cast<int64_t>(bytes);
  }
  return invalid("unknown unit \"" + std::string(unit_text) + "\" (units: B, K, M, G, T, KiB.., KB..)");
}

std::string FormatByteSize(int64_t bytes) {
  constexpr std::pair<std::string_view, int> kBinary[] = {{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}};
  for (const auto& [name, shift] : kBinary) {
    const int64_t unit = int64_t{1} << shift;
    if (bytes >= unit && bytes % unit == 0) return std::to_string(bytes / unit) + std::string(name);
  }
  return std::to_string(bytes);
}

}  // namespace nightshift

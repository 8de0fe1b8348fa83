#include "core/duration.h"

#include <cctype>
#include <cstdint>
#include <limits>

namespace nightshift {
namespace {

struct Unit {
  std::string_view name;
  int64_t ms;
};
// Ordered largest first; "ms" precedes "m" so the longer suffix wins.
constexpr Unit kUnits[] = {{"w", 7LL * 86400000}, {"d", 86400000}, {"h", 3600000},
                           {"ms", 1},             {"m", 60000},    {"s", 1000}};
// The longest duration accepted, about 10,000 years: far beyond any real delay or timeout, yet
// small enough that adding it to any instant, or doubling it for backoff, cannot overflow.
constexpr int64_t kMaxDays = 3650000;
constexpr int64_t kMaxMs = kMaxDays * 86400000;

}  // namespace

Result<Duration> ParseDuration(std::string_view text) {
  auto invalid = [&](const std::string& why) {
    return Status::InvalidArgument("invalid duration \"" + std::string(text) + "\": " + why);
  };
  if (text.empty()) return invalid("empty");
  size_t i = 0;
  int64_t total = 0;
  int64_t last_unit_ms = std::numeric_limits<int64_t>::max();
  bool bare = true;
  while (i < text.size()) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
      return invalid("expected a number at position " + std::to_string(i + 1) +
                     " (use e.g. 90, 90s, 5m, 1h30m)");
    }
    int64_t number = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (number > kMaxMs) return invalid("too large");
      number = number * 10 + (text[i] - '0');
      ++i;
    }
    if (i == text.size()) {
      if (!bare) return invalid("missing unit after " + std::to_string(number));
      if (number > kMaxMs / 1000) return invalid("too large");
      return Duration(number * 1000);
    }
    bare = false;
    int matched = -1;
    for (int u = 0; u < static_cast<int>(std::size(kUnits)); ++u) {
      if (text.substr(i).starts_with(kUnits[u].name)) {
        matched = u;
        break;
      }
    }
    if (matched < 0) return invalid("unknown unit at position " + std::to_string(i + 1) + " (units: ms, s, m, h, d, w)");
    if (kUnits[matched].ms >= last_unit_ms) return invalid("units must go from largest to smallest, each once");
    last_unit_ms = kUnits[matched].ms;
    if (number > (kMaxMs - total) / kUnits[matched].ms) return invalid("too large");
    total += number * kUnits[matched].ms;
    i += kUnits[matched].name.size();
  }
  return Duration(total);
}

std::string FormatDuration(Duration d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  constexpr Unit kFormat[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
  for (const Unit& u : kFormat) {
    if (ms >= u.ms) {
      out += std::to_string(ms / u.ms) + std::string(u.name);
      ms %= u.ms;
    }
  }
  return out;
}

}  // namespace nightshift

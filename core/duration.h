// Durations as users write them: 90 (seconds), "90s", "5m", "1h30m", "2d", "250ms".
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "core/status.h"

namespace nightshift {

using Duration = std::chrono::milliseconds;

// Parses a duration. A bare number means seconds. Units: ms, s, m, h, d, w; they may be
// combined largest first ("1h30m"). Negative or empty input, or more than 3650000d (about
// 10,000 years), is an error.
Result<Duration> ParseDuration(std::string_view text);

// The shortest text ParseDuration reads back to the same value, e.g. "1h30m", "250ms", "0s".
std::string FormatDuration(Duration d);

}  // namespace nightshift

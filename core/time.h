// Instants and their text form. Every instant in Nightshift is UTC milliseconds since the epoch;
// time zones only matter for cron, windows and display.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace nightshift {

using TimePoint = std::chrono::sys_time<std::chrono::milliseconds>;

// RFC 3339 in UTC with millisecond precision only when non-zero: "2026-11-28T22:00:00Z".
std::string FormatRfc3339(TimePoint t);
// RFC 3339 with the offset of `timezone` at that instant: "2026-11-28T22:00:00+01:00".
// Falls back to UTC when the zone is unknown.
std::string FormatRfc3339In(TimePoint t, std::string_view timezone);

// Parses "2026-01-01" (midnight) or "2026-01-01T02:00:00" / "2026-01-01 02:00" (local time in
// `timezone`), or a full RFC 3339 timestamp with "Z" or an offset (timezone then ignored).
Result<TimePoint> ParseTimestamp(std::string_view text, std::string_view timezone);

// True when `name` is an IANA time zone known to the system's tzdata (e.g. "Europe/Berlin", "UTC").
bool IsKnownTimeZone(std::string_view name);

// The clock the scheduler reads; tests replace it with a fake one.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override;
};

}  // namespace nightshift

// A DAG's schedule as a hostile file could write it. The input is up to three lines:
//   TIME ZONE\nCRON EXPRESSION\nINSTANT
// The expression is parsed in that zone and, when it parses, asked for the fire times around
// the instant (parsed as start_date is; a fixed 2026 instant when it does not parse).
// Whatever Next() returns must lie after the instant, whatever Previous() returns at or before.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/cron.h"
#include "core/time.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nightshift::TimePoint;
  using nightshift::fuzz::NextLine;
  std::string_view rest = nightshift::fuzz::AsText(data, size);
  const std::string_view timezone = NextLine(rest);
  const std::string_view expression = NextLine(rest);
  const std::string_view instant = NextLine(rest);

  nightshift::Result<nightshift::CronSchedule> schedule =
      nightshift::CronSchedule::Parse(expression, timezone);
  if (!schedule.ok()) return 0;
  TimePoint at = *nightshift::ParseTimestamp("2026-03-29T00:30:00Z", "UTC");
  if (nightshift::Result<TimePoint> parsed = nightshift::ParseTimestamp(instant, timezone); parsed.ok())
    at = *parsed;
  if (schedule->is_interval() || schedule->is_once()) schedule->set_anchor(at - std::chrono::hours(1));

  if (std::optional<TimePoint> next = schedule->Next(at); next && *next <= at) std::abort();
  if (std::optional<TimePoint> previous = schedule->Previous(at); previous && *previous > at) std::abort();
  return 0;
}

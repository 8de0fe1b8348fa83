// A DAG's schedule: a 5-field cron expression evaluated in a time zone, an @preset, or
// "@every <duration>". Evaluation is DST-correct (see Next()).
#pragma once

#include <bitset>
#include <optional>
#include <string>
#include <string_view>

#include "core/duration.h"
#include "core/status.h"
#include "core/time.h"

namespace nightshift {

class CronSchedule {
 public:
  // Parses `expression`:
  //   "MIN HOUR DOM MONTH DOW" with *, lists (1,5), ranges (1-5), steps (*/15, 1-30/5),
  //   month names JAN-DEC and day names SUN-SAT (case-insensitive), DOW 0-7 (0 and 7 = Sunday);
  //   @yearly/@annually, @monthly, @weekly, @daily/@midnight, @hourly;
  //   "@every 15m" (any duration ParseDuration reads, at least 1s).
  // `timezone` is an IANA name; an unknown one is an error.
  // Errors read like: `bad cron expression "0 25 * * *": hour 25 is out of range 0-23`.
  static Result<CronSchedule> Parse(std::string_view expression, std::string_view timezone = "UTC");

  // The first fire time strictly after `after`.
  // Cron: evaluated on the local wall clock of the time zone. A local time that does not exist
  // (spring forward, e.g. 02:30 on 2026-03-29 in Europe/Berlin) fires once, at the first valid
  // instant after the gap (03:00 local). A local time that occurs twice (fall back) fires once,
  // at its first occurrence. When both day-of-month and day-of-week are restricted (neither is
  // "*"), a day matches if either matches (cron's OR rule).
  // @every: fires at anchor + k * interval (the anchor is the DAG's start_date, or the epoch).
  // Returns nullopt only when no time matches within the next 5 years (e.g. "0 0 30 2 *").
  std::optional<TimePoint> Next(TimePoint after) const;

  // The latest fire time at or before `at` (nullopt if none within 5 years back). Used to find
  // the most recent interval when catchup is off.
  std::optional<TimePoint> Previous(TimePoint at) const;

  bool is_interval() const { return interval_.has_value(); }
  const std::string& expression() const { return expression_; }
  const std::string& timezone() const { return timezone_; }
  void set_anchor(TimePoint anchor) { anchor_ = anchor; }

 private:
  CronSchedule() = default;
  bool MatchesDay(int day_of_month, int month, int day_of_week) const;

  std::string expression_;
  std::string timezone_ = "UTC";
  std::optional<Duration> interval_;  // set for "@every"
  TimePoint anchor_{};
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_of_month_;  // 1..31
  std::bitset<13> months_;         // 1..12
  std::bitset<7> days_of_week_;    // 0 = Sunday
  bool dom_restricted_ = false;
  bool dow_restricted_ = false;
};

}  // namespace nightshift

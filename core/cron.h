// A DAG's schedule: a 5-field cron expression evaluated in a time zone, an @preset, "@once", or
// "@every <duration>". Evaluation is DST-correct (see Next()).
#pragma once

#include <bitset>
#include <chrono>
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
  //   @yearly/@annually, @quarterly, @monthly, @weekly, @daily/@midnight, @hourly;
  //   "@every 15m" (any duration ParseDuration reads, at least 1s);
  //   @once: a single fire time, the anchor (see set_anchor()).
  // `timezone` is an IANA name; an unknown one is an error.
  // Errors read like: `bad cron expression "0 25 * * *": hour 25 is out of range 0-23`. An
  // expression that can never fire is an error too: `cron "0 0 30 2 *" never fires: February
  // has no day 30` (February 29 counts: "0 0 29 2 *" fires in leap years).
  static Result<CronSchedule> Parse(std::string_view expression, std::string_view timezone = "UTC");

  // The first fire time strictly after `after`.
  // Cron: evaluated on the local wall clock of the time zone. When both day-of-month and
  // day-of-week are restricted (neither is "*"), a day matches if either matches (cron's OR
  // rule). Across DST changes there are two policies, as in Vixie cron and Airflow:
  // - Hour field "*" or a step ("*/2", "1-23/2"): every real instant whose wall-clock reading
  //   matches fires, exactly once. A repeated autumn hour fires twice (once per real hour); a
  //   skipped spring hour fires nothing. "0 * * * *" in Berlin fires at 00:00Z, 01:00Z and
  //   02:00Z on 2026-10-25 (02:00 CEST, 02:00 CET, 03:00 CET).
  // - Any other hour field (fixed hours: "2", "1,13", "3-5"): a local time that does not exist
  //   (spring forward, e.g. 02:30 on 2026-03-29 in Europe/Berlin) fires once, at the first
  //   valid instant after the gap (03:00 local). A local time that occurs twice (fall back)
  //   fires once, at its first occurrence.
  // @every: fires at anchor + k * interval (the anchor is the DAG's start_date, or the epoch).
  // @once: the anchor, if set and after `after`; otherwise nothing.
  // Returns nullopt only when no time matches within the next 5 years.
  std::optional<TimePoint> Next(TimePoint after) const;

  // The latest fire time at or before `at` (nullopt if none within 5 years back). Used to find
  // the most recent interval when catchup is off.
  std::optional<TimePoint> Previous(TimePoint at) const;

  bool is_interval() const { return interval_.has_value(); }
  bool is_once() const { return once_; }
  const std::string& expression() const { return expression_; }
  const std::string& timezone() const { return timezone_; }
  // The DAG's start_date: where @every counts from and when @once fires.
  void set_anchor(TimePoint anchor) {
    anchor_ = anchor;
    anchored_ = true;
  }

 private:
  CronSchedule() = default;
  bool MatchesDay(int day_of_month, int month, int day_of_week) const;
  // Why no day can ever match, or empty when some can.
  std::string NeverFiresReason() const;
  // Wall-clock readings as seconds since 1970-01-01 00:00 on that clock, with no zone.
  // NextWallMinute: the first matching minute after `after` and at or before `last`;
  // PreviousWallMinute: the last one at or before `at` and at or after `first`.
  std::optional<std::chrono::seconds> NextWallMinute(std::chrono::seconds after,
                                                     std::chrono::seconds last) const;
  std::optional<std::chrono::seconds> PreviousWallMinute(std::chrono::seconds at,
                                                         std::chrono::seconds first) const;

  std::string expression_;
  std::string timezone_ = "UTC";
  std::optional<Duration> interval_;  // set for "@every"
  TimePoint anchor_{};
  bool anchored_ = false;
  bool once_ = false;                      // "@once"
  bool hours_follow_the_instant_ = false;  // hour field "*" or a step; see Next()
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_of_month_;  // 1..31
  std::bitset<13> months_;         // 1..12
  std::bitset<7> days_of_week_;    // 0 = Sunday
  bool dom_restricted_ = false;
  bool dow_restricted_ = false;
};

}  // namespace nightshift

#include "core/cron.h"

#include <date/tz.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace nightshift {
namespace {

TimePoint At(std::string_view rfc3339) {
  Result<TimePoint> t = ParseTimestamp(rfc3339, "UTC");
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? *t : TimePoint{};
}

// Instants compare as text so a failure shows readable times.
std::string Fmt(std::optional<TimePoint> t) { return t ? FormatRfc3339(*t) : "none"; }

CronSchedule MustParse(std::string_view expr, std::string_view tz = "UTC") {
  Result<CronSchedule> s = CronSchedule::Parse(expr, tz);
  EXPECT_TRUE(s.ok()) << expr << ": " << s.status().message();
  if (!s.ok()) std::abort();
  return *s;
}

std::string ParseError(std::string_view expr, std::string_view tz = "UTC") {
  Result<CronSchedule> s = CronSchedule::Parse(expr, tz);
  EXPECT_FALSE(s.ok()) << expr << " parsed but should not";
  return s.ok() ? "" : s.status().message();
}

// Every fire time in (from, to], in order.
std::vector<std::string> FiresBetween(const CronSchedule& s, TimePoint from, TimePoint to) {
  std::vector<std::string> out;
  for (std::optional<TimePoint> t = s.Next(from); t && *t <= to; t = s.Next(*t)) {
    out.push_back(FormatRfc3339(*t));
    if (out.size() > 10000) break;
  }
  return out;
}

TEST(CronTest, DailyInUtcFiresStrictlyAfter) {
  CronSchedule s = MustParse("0 2 * * *");
  EXPECT_FALSE(s.is_interval());
  EXPECT_EQ(s.expression(), "0 2 * * *");
  EXPECT_EQ(s.timezone(), "UTC");
  EXPECT_EQ(Fmt(s.Next(At("2026-11-28T01:00:00Z"))), "2026-11-28T02:00:00Z");
  // Exactly at a fire time, the next one is the following day's.
  EXPECT_EQ(Fmt(s.Next(At("2026-11-28T02:00:00Z"))), "2026-11-29T02:00:00Z");
  EXPECT_EQ(Fmt(s.Next(At("2026-11-28T01:59:59.999Z"))), "2026-11-28T02:00:00Z");
}

TEST(CronTest, EvaluatedOnTheLocalWallClock) {
  CronSchedule s = MustParse("0 2 * * *", "Europe/Berlin");
  EXPECT_EQ(Fmt(s.Next(At("2026-01-10T00:00:00Z"))), "2026-01-10T01:00:00Z");  // CET, +01:00
  EXPECT_EQ(Fmt(s.Next(At("2026-07-09T23:00:00Z"))), "2026-07-10T00:00:00Z");  // CEST, +02:00
  CronSchedule tokyo = MustParse("0 9 * * MON", "Asia/Tokyo");
  // Monday 09:00 in Tokyo is Monday 00:00 UTC.
  EXPECT_EQ(Fmt(tokyo.Next(At("2026-11-28T00:00:00Z"))), "2026-11-30T00:00:00Z");
}

TEST(CronTest, SpringForwardGapFiresOnceAfterTheGap) {
  // 2026-03-29 02:00-03:00 does not exist in Berlin; 02:30 fires at 03:00 CEST = 01:00Z.
  CronSchedule s = MustParse("30 2 * * *", "Europe/Berlin");
  EXPECT_EQ(Fmt(s.Next(At("2026-03-28T12:00:00Z"))), "2026-03-29T01:00:00Z");
  EXPECT_EQ(Fmt(s.Next(At("2026-03-29T01:00:00Z"))), "2026-03-30T00:30:00Z");
  EXPECT_EQ(FiresBetween(s, At("2026-03-28T12:00:00Z"), At("2026-03-29T23:59:59Z")),
            std::vector<std::string>{"2026-03-29T01:00:00Z"});

  // Several times inside the gap still fire only once, and 03:00 (the same instant) adds none.
  CronSchedule many = MustParse("0,15,30,45 2,3 * * *", "Europe/Berlin");
  EXPECT_EQ(FiresBetween(many, At("2026-03-28T23:00:00Z"), At("2026-03-29T01:50:00Z")),
            (std::vector<std::string>{"2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z", "2026-03-29T01:30:00Z",
                                      "2026-03-29T01:45:00Z"}));
}

TEST(CronTest, FallBackRepeatedHourFiresOnceAtFirstOccurrence) {
  // 2026-10-25 02:00-03:00 happens twice in Berlin (00:00Z-01:00Z CEST, 01:00Z-02:00Z CET).
  CronSchedule s = MustParse("30 2 * * *", "Europe/Berlin");
  EXPECT_EQ(FiresBetween(s, At("2026-10-24T12:00:00Z"), At("2026-10-25T12:00:00Z")),
            std::vector<std::string>{"2026-10-25T00:30:00Z"});
  // From inside the second occurrence it does not fire again that day.
  EXPECT_EQ(Fmt(s.Next(At("2026-10-25T01:15:00Z"))), "2026-10-26T01:30:00Z");
  EXPECT_EQ(Fmt(s.Previous(At("2026-10-25T01:45:00Z"))), "2026-10-25T00:30:00Z");
}

TEST(CronTest, EveryIsAnchoredAtTheStart) {
  CronSchedule s = MustParse("@every 15m");
  EXPECT_TRUE(s.is_interval());
  s.set_anchor(At("2026-01-01T00:05:00Z"));
  // Before the anchor the first fire is the anchor itself.
  EXPECT_EQ(Fmt(s.Next(At("2025-12-01T00:00:00Z"))), "2026-01-01T00:05:00Z");
  EXPECT_EQ(Fmt(s.Next(At("2026-01-01T00:05:00Z"))), "2026-01-01T00:20:00Z");
  EXPECT_EQ(Fmt(s.Next(At("2026-01-01T00:21:00Z"))), "2026-01-01T00:35:00Z");
  EXPECT_EQ(Fmt(s.Next(At("2026-01-02T00:04:59Z"))), "2026-01-02T00:05:00Z");
  EXPECT_EQ(Fmt(s.Previous(At("2026-01-01T00:34:59Z"))), "2026-01-01T00:20:00Z");
  EXPECT_EQ(Fmt(s.Previous(At("2026-01-01T00:35:00Z"))), "2026-01-01T00:35:00Z");
  EXPECT_EQ(Fmt(s.Previous(At("2026-01-01T00:04:59Z"))), "none");

  // Without an anchor, the epoch: whole hours.
  CronSchedule hourly = MustParse("@every 1h");
  EXPECT_EQ(Fmt(hourly.Next(At("2026-01-01T00:30:00Z"))), "2026-01-01T01:00:00Z");
  // A bare number is seconds, and DST does not bend an interval.
  CronSchedule ninety = MustParse("@every 90", "Europe/Berlin");
  EXPECT_EQ(Fmt(ninety.Next(At("2026-03-29T00:59:00Z"))), "2026-03-29T01:00:00Z");
  EXPECT_EQ(Fmt(ninety.Next(At("2026-03-29T01:00:00Z"))), "2026-03-29T01:01:30Z");
}

TEST(CronTest, DayOfMonthOrDayOfWeekWhenBothRestricted) {
  // Friday the 13th is NOT what cron means: every 13th and every Friday.
  CronSchedule s = MustParse("0 0 13 * FRI");
  EXPECT_EQ(FiresBetween(s, At("2026-01-01T00:00:00Z"), At("2026-01-24T00:00:00Z")),
            (std::vector<std::string>{"2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z",
                                      "2026-01-16T00:00:00Z", "2026-01-23T00:00:00Z"}));
  // With one side "*", the other alone decides.
  EXPECT_EQ(FiresBetween(MustParse("0 0 13 * *"), At("2026-01-01T00:00:00Z"), At("2026-02-28T00:00:00Z")),
            (std::vector<std::string>{"2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"}));
  EXPECT_EQ(FiresBetween(MustParse("0 0 * * FRI"), At("2026-01-01T00:00:00Z"), At("2026-01-10T00:00:00Z")),
            (std::vector<std::string>{"2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"}));
}

TEST(CronTest, LeapDay) {
  CronSchedule s = MustParse("0 0 29 2 *");
  EXPECT_EQ(Fmt(s.Next(At("2026-03-01T00:00:00Z"))), "2028-02-29T00:00:00Z");
  EXPECT_EQ(Fmt(s.Previous(At("2028-02-28T00:00:00Z"))), "2024-02-29T00:00:00Z");
}

TEST(CronTest, ExpressionThatNeverFiresIsAnError) {
  EXPECT_EQ(ParseError("0 0 30 2 *"), "cron \"0 0 30 2 *\" never fires: February has no day 30");
  EXPECT_EQ(ParseError("0 0 31 4 *"), "cron \"0 0 31 4 *\" never fires: April has no day 31");
  EXPECT_EQ(ParseError("59 23 31 11 *"), "cron \"59 23 31 11 *\" never fires: November has no day 31");
  EXPECT_EQ(ParseError("0 0 31 2,4,6 *"),
            "cron \"0 0 31 2,4,6 *\" never fires: February, April, June have no day 31");
  EXPECT_EQ(ParseError("0 0 30,31 FEB *", "Europe/Berlin"),
            "cron \"0 0 30,31 FEB *\" never fires: February has no day 30");
  // A leap day is real, one allowed month that has the day is enough, and with a weekday
  // restricted too, cron's OR rule lets every such weekday fire.
  for (const char* expr : {"0 0 29 2 *", "0 0 31 2,3 *", "0 0 30 2 MON", "0 0 31 */2 *", "0 0 30 * *"}) {
    EXPECT_TRUE(CronSchedule::Parse(expr).ok()) << expr;
  }
  EXPECT_EQ(Fmt(MustParse("0 0 30 2 MON").Next(At("2026-02-01T00:00:00Z"))), "2026-02-02T00:00:00Z");
}

TEST(CronTest, EveryMinuteAcrossYearsIsFast) {
  CronSchedule s = MustParse("* * * * *", "Europe/Berlin");
  const auto started = std::chrono::steady_clock::now();
  TimePoint t = At("2026-12-31T22:58:30Z");
  for (int i = 0; i < 2000; ++i) t = *s.Next(t);
  EXPECT_EQ(FormatRfc3339(t), "2027-01-02T08:18:00Z");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
}

TEST(CronTest, MonthAndDayNamesAnyCase) {
  CronSchedule upper = MustParse("0 9 * JAN-MAR MON-FRI");
  CronSchedule lower = MustParse("0 9 * jan-mar mon-fri");
  CronSchedule numbers = MustParse("0 9 * 1-3 1-5");
  for (const char* from : {"2026-01-02T10:00:00Z", "2026-03-31T10:00:00Z", "2026-06-01T00:00:00Z"}) {
    EXPECT_EQ(Fmt(upper.Next(At(from))), Fmt(numbers.Next(At(from)))) << from;
    EXPECT_EQ(Fmt(lower.Next(At(from))), Fmt(numbers.Next(At(from)))) << from;
  }
  // Friday 10:00 -> Monday; March 31 is the last day allowed, then next January.
  EXPECT_EQ(Fmt(upper.Next(At("2026-01-02T10:00:00Z"))), "2026-01-05T09:00:00Z");
  EXPECT_EQ(Fmt(upper.Next(At("2026-03-31T10:00:00Z"))), "2027-01-01T09:00:00Z");
  // Both 0 and 7 are Sunday.
  EXPECT_EQ(Fmt(MustParse("0 0 * * 7").Next(At("2026-01-01T00:00:00Z"))), "2026-01-04T00:00:00Z");
  EXPECT_EQ(Fmt(MustParse("0 0 * * SUN").Next(At("2026-01-01T00:00:00Z"))), "2026-01-04T00:00:00Z");
  EXPECT_EQ(Fmt(MustParse("0 0 * * 5-7").Next(At("2026-01-03T00:00:00Z"))), "2026-01-04T00:00:00Z");
  EXPECT_EQ(Fmt(MustParse("0 0 * * Sat,sUn").Next(At("2026-01-01T00:00:00Z"))), "2026-01-03T00:00:00Z");
}

TEST(CronTest, StepsRangesAndLists) {
  EXPECT_EQ(FiresBetween(MustParse("*/15 * * * *"), At("2026-01-01T00:00:00Z"), At("2026-01-01T01:00:00Z")),
            (std::vector<std::string>{"2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z",
                                      "2026-01-01T01:00:00Z"}));
  EXPECT_EQ(
      FiresBetween(MustParse("1-30/10 0 * * *"), At("2026-01-01T00:00:00Z"), At("2026-01-01T01:00:00Z")),
      (std::vector<std::string>{"2026-01-01T00:01:00Z", "2026-01-01T00:11:00Z", "2026-01-01T00:21:00Z"}));
  // "5/20" runs from 5 to the end of the field.
  EXPECT_EQ(
      FiresBetween(MustParse("5/20 0 * * *"), At("2026-01-01T00:00:00Z"), At("2026-01-01T01:00:00Z")),
      (std::vector<std::string>{"2026-01-01T00:05:00Z", "2026-01-01T00:25:00Z", "2026-01-01T00:45:00Z"}));
  EXPECT_EQ(FiresBetween(MustParse("0 */6 * * *"), At("2026-01-01T00:00:00Z"), At("2026-01-02T00:00:00Z")),
            (std::vector<std::string>{"2026-01-01T06:00:00Z", "2026-01-01T12:00:00Z", "2026-01-01T18:00:00Z",
                                      "2026-01-02T00:00:00Z"}));
  EXPECT_EQ(
      FiresBetween(MustParse("0 8,12-13 * * *"), At("2026-01-01T00:00:00Z"), At("2026-01-01T23:00:00Z")),
      (std::vector<std::string>{"2026-01-01T08:00:00Z", "2026-01-01T12:00:00Z", "2026-01-01T13:00:00Z"}));
  // A quarterly schedule with a month step over names.
  EXPECT_EQ(Fmt(MustParse("0 0 1 JAN-DEC/3 *").Next(At("2026-01-01T00:00:00Z"))), "2026-04-01T00:00:00Z");
}

TEST(CronTest, Presets) {
  const TimePoint from = At("2026-06-03T10:20:00Z");  // a Wednesday
  EXPECT_EQ(Fmt(MustParse("@yearly").Next(from)), "2027-01-01T00:00:00Z");
  EXPECT_EQ(Fmt(MustParse("@annually").Next(from)), "2027-01-01T00:00:00Z");
  EXPECT_EQ(Fmt(MustParse("@monthly").Next(from)), "2026-07-01T00:00:00Z");
  EXPECT_EQ(Fmt(MustParse("@weekly").Next(from)), "2026-06-07T00:00:00Z");  // Sunday
  EXPECT_EQ(Fmt(MustParse("@daily").Next(from)), "2026-06-04T00:00:00Z");
  EXPECT_EQ(Fmt(MustParse("@midnight").Next(from)), "2026-06-04T00:00:00Z");
  EXPECT_EQ(Fmt(MustParse("@hourly").Next(from)), "2026-06-03T11:00:00Z");
  EXPECT_EQ(Fmt(MustParse("@quarterly").Next(from)), "2026-07-01T00:00:00Z");
  EXPECT_EQ(FiresBetween(MustParse("@quarterly", "Europe/Berlin"), from, At("2027-06-01T00:00:00Z")),
            (std::vector<std::string>{"2026-06-30T22:00:00Z", "2026-09-30T22:00:00Z", "2026-12-31T23:00:00Z",
                                      "2027-03-31T22:00:00Z"}));
  EXPECT_EQ(Fmt(MustParse("@quarterly").Previous(from)), "2026-04-01T00:00:00Z");
  EXPECT_EQ(Fmt(MustParse("@DAILY").Next(from)), "2026-06-04T00:00:00Z");
  EXPECT_EQ(Fmt(MustParse("@daily", "Europe/Berlin").Next(from)), "2026-06-03T22:00:00Z");
  EXPECT_EQ(MustParse("@daily").expression(), "@daily");
}

TEST(CronTest, Previous) {
  CronSchedule s = MustParse("0 2 * * *");
  // "At or before": a fire time is its own previous.
  EXPECT_EQ(Fmt(s.Previous(At("2026-11-28T02:00:00Z"))), "2026-11-28T02:00:00Z");
  EXPECT_EQ(Fmt(s.Previous(At("2026-11-28T01:59:59Z"))), "2026-11-27T02:00:00Z");
  EXPECT_EQ(Fmt(MustParse("@monthly").Previous(At("2026-03-15T00:00:00Z"))), "2026-03-01T00:00:00Z");
  EXPECT_EQ(Fmt(MustParse("0 9 * * MON-FRI").Previous(At("2026-01-04T12:00:00Z"))), "2026-01-02T09:00:00Z");
  // Across the spring gap the skipped 02:30 is remembered at 03:00 CEST.
  CronSchedule berlin = MustParse("30 2 * * *", "Europe/Berlin");
  EXPECT_EQ(Fmt(berlin.Previous(At("2026-03-29T12:00:00Z"))), "2026-03-29T01:00:00Z");
  EXPECT_EQ(Fmt(berlin.Previous(At("2026-03-29T00:59:59Z"))), "2026-03-28T01:30:00Z");
  // Previous and Next agree: Next(Previous(t) - 1ms) == Previous(t).
  for (const char* expr : {"*/7 3-5 * * *", "0 0 13 * FRI", "15 2 * * SUN", "0 12 1 */2 *"}) {
    CronSchedule c = MustParse(expr, "Europe/Berlin");
    TimePoint t = At("2026-10-25T03:17:00Z");
    for (int i = 0; i < 50; ++i) {
      std::optional<TimePoint> prev = c.Previous(t);
      ASSERT_TRUE(prev.has_value()) << expr;
      EXPECT_EQ(Fmt(c.Next(*prev - std::chrono::milliseconds(1))), Fmt(prev)) << expr;
      t = *prev - std::chrono::milliseconds(1);
    }
  }
}

std::vector<std::string> SplitFields(std::string_view expr) {
  const std::string cron(expr);
  std::vector<std::string> fields;
  for (size_t i = 0; i < cron.size();) {
    size_t j = cron.find(' ', i);
    if (j == std::string::npos) j = cron.size();
    fields.push_back(cron.substr(i, j - i));
    i = j + 1;
  }
  return fields;
}

// Only the shapes the references below meet: "*", "*/N", a number or a comma list of numbers.
bool FieldMatches(const std::string& field, int v) {
  if (field == "*") return true;
  if (field.rfind("*/", 0) == 0) return v % std::stoi(field.substr(2)) == 0;
  for (size_t i = 0; i <= field.size();) {
    size_t j = field.find(',', i);
    if (j == std::string::npos) j = field.size();
    if (std::stoi(field.substr(i, j - i)) == v) return true;
    i = j + 1;
  }
  return false;
}

bool DayMatches(const std::vector<std::string>& fields, std::chrono::sys_days day) {
  const std::chrono::year_month_day ymd(day);
  const int dow = static_cast<int>(std::chrono::weekday(day).c_encoding());
  const bool dom_ok = FieldMatches(fields[2], static_cast<int>(static_cast<unsigned>(ymd.day())));
  const bool dow_ok = FieldMatches(fields[4], dow);
  const bool day_ok = (fields[2] != "*" && fields[4] != "*") ? (dom_ok || dow_ok) : (dom_ok && dow_ok);
  return day_ok && FieldMatches(fields[3], static_cast<int>(static_cast<unsigned>(ymd.month())));
}

// Whether the wall-clock reading `local` (seconds on the zone's clock) matches `fields`.
bool WallClockMatches(const std::vector<std::string>& fields, std::chrono::seconds local) {
  const std::chrono::sys_days day = std::chrono::floor<std::chrono::days>(std::chrono::sys_seconds(local));
  const std::chrono::hh_mm_ss<std::chrono::seconds> time(local - day.time_since_epoch());
  return time.seconds().count() == 0 && DayMatches(fields, day) &&
         FieldMatches(fields[1], static_cast<int>(time.hours().count())) &&
         FieldMatches(fields[0], static_cast<int>(time.minutes().count()));
}

// The reference for schedules whose hours follow real time: every whole UTC minute in
// (from, to] whose wall-clock reading in `zone` matches, found one minute at a time.
std::vector<std::string> BruteForceRealTime(std::string_view expr, const date::time_zone* zone,
                                            TimePoint from, TimePoint to) {
  const std::vector<std::string> fields = SplitFields(expr);
  std::vector<std::string> out;
  date::sys_info span = zone->get_info(date::sys_seconds(std::chrono::floor<std::chrono::seconds>(from)));
  for (date::sys_seconds t = std::chrono::floor<std::chrono::minutes>(from) + std::chrono::minutes(1);
       TimePoint(t) <= to; t += std::chrono::minutes(1)) {
    if (t >= span.end) span = zone->get_info(t);
    if (WallClockMatches(fields, t.time_since_epoch() + span.offset))
      out.push_back(FormatRfc3339(TimePoint(t)));
  }
  return out;
}

// A slow but obvious reference for fixed-hour schedules: every local minute of the span whose
// fields match, mapped to an instant the way ParseTimestamp maps local times (gap -> after the
// gap, repeat -> first).
std::vector<std::string> BruteForce(std::string_view expr, std::string_view tz,
                                    std::chrono::sys_days first_day, int days, TimePoint from, TimePoint to) {
  const std::vector<std::string> fields = SplitFields(expr);
  std::vector<TimePoint> fires;
  for (int d = 0; d < days; ++d) {
    const std::chrono::sys_days day = first_day + std::chrono::days(d);
    const std::chrono::year_month_day ymd(day);
    if (!DayMatches(fields, day)) continue;
    for (int h = 0; h < 24; ++h) {
      for (int m = 0; m < 60; ++m) {
        if (!FieldMatches(fields[1], h) || !FieldMatches(fields[0], m)) continue;
        char local[32];
        std::snprintf(local, sizeof(local), "%04d-%02u-%02uT%02d:%02d", static_cast<int>(ymd.year()),
                      static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), h, m);
        Result<TimePoint> t = ParseTimestamp(local, tz);
        EXPECT_TRUE(t.ok());
        if (t.ok() && *t > from && *t <= to) fires.push_back(*t);
      }
    }
  }
  std::sort(fires.begin(), fires.end());
  fires.erase(std::unique(fires.begin(), fires.end()), fires.end());
  std::vector<std::string> out;
  for (TimePoint t : fires) out.push_back(FormatRfc3339(t));
  return out;
}

TEST(CronTest, MatchesABruteForceReferenceAroundDstChanges) {
  struct Case {
    const char* tz;
    std::chrono::sys_days transition_day;
  };
  using std::chrono::April;
  using std::chrono::March;
  using std::chrono::November;
  using std::chrono::October;
  const Case cases[] = {
      {"Europe/Berlin", std::chrono::year(2026) / March / 29},
      {"Europe/Berlin", std::chrono::year(2026) / October / 25},
      {"America/New_York", std::chrono::year(2026) / March / 8},
      {"America/New_York", std::chrono::year(2026) / November / 1},
      // Lord Howe Island shifts by only 30 minutes.
      {"Australia/Lord_Howe", std::chrono::year(2026) / April / 5},
      {"Australia/Lord_Howe", std::chrono::year(2026) / October / 4},
  };
  for (const char* expr : {"*/10 * * * *", "30 2 * * *", "0,15,30,45 1,2,3 * * *", "45 1 * * 0",
                           "0 * 8,25 * 5", "59 23 * * *", "0 0 * * *"}) {
    for (const Case& c : cases) {
      CronSchedule s = MustParse(expr, c.tz);
      const TimePoint from = TimePoint(c.transition_day - std::chrono::days(1));
      const TimePoint to = TimePoint(c.transition_day + std::chrono::days(2));
      const bool real_time = SplitFields(expr)[1].find_first_of("*/") != std::string::npos;
      const std::vector<std::string> want =
          real_time ? BruteForceRealTime(expr, date::locate_zone(c.tz), from, to)
                    : BruteForce(expr, c.tz, c.transition_day - std::chrono::days(2), 5, from, to);
      EXPECT_EQ(FiresBetween(s, from, to), want) << expr << " in " << c.tz;
      // And backwards.
      std::vector<std::string> back;
      for (std::optional<TimePoint> t = s.Previous(to); t && *t > from;
           t = s.Previous(*t - std::chrono::milliseconds(1))) {
        back.insert(back.begin(), FormatRfc3339(*t));
      }
      EXPECT_EQ(back, want) << expr << " in " << c.tz << " (Previous)";
    }
  }
}

TEST(CronTest, HourlyFiresEveryRealHourAcrossTheAutumnChange) {
  // 2026-10-25 in Berlin: 02:00 CEST (00:00Z), 02:00 CET (01:00Z), 03:00 CET (02:00Z). Six
  // real hours make six fire times, so catchup over the night processes six whole intervals.
  CronSchedule s = MustParse("0 * * * *", "Europe/Berlin");
  EXPECT_EQ(
      FiresBetween(s, At("2026-10-24T21:30:00Z"), At("2026-10-25T03:30:00Z")),
      (std::vector<std::string>{"2026-10-24T22:00:00Z", "2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z",
                                "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"}));
  EXPECT_EQ(Fmt(s.Previous(At("2026-10-25T01:59:00Z"))), "2026-10-25T01:00:00Z");
  EXPECT_EQ(Fmt(MustParse("@hourly", "Europe/Berlin").Next(At("2026-10-25T00:00:00Z"))),
            "2026-10-25T01:00:00Z");
  // A step in the hour field follows real time too: 02:00 comes twice.
  EXPECT_EQ(FiresBetween(MustParse("0 */2 * * *", "Europe/Berlin"), At("2026-10-24T21:30:00Z"),
                         At("2026-10-25T03:30:00Z")),
            (std::vector<std::string>{"2026-10-24T22:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z",
                                      "2026-10-25T03:00:00Z"}));
}

TEST(CronTest, HourlyInventsNoTimeInTheSpringGap) {
  // 2026-03-29 in Berlin: 01:59 CET (00:59Z) is followed by 03:00 CEST (01:00Z). 03:00 is not a
  // :30, so nothing fires then; the hour 02:xx does not exist and fires nothing.
  CronSchedule s = MustParse("30 * * * *", "Europe/Berlin");
  EXPECT_EQ(FiresBetween(s, At("2026-03-28T22:45:00Z"), At("2026-03-29T02:45:00Z")),
            (std::vector<std::string>{"2026-03-28T23:30:00Z", "2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z",
                                      "2026-03-29T02:30:00Z"}));
  EXPECT_EQ(Fmt(s.Previous(At("2026-03-29T01:29:00Z"))), "2026-03-29T00:30:00Z");
  // A fixed hour keeps its policy: 02:30 does not exist that day and fires at 03:00 CEST.
  EXPECT_EQ(Fmt(MustParse("30 2 * * *", "Europe/Berlin").Next(At("2026-03-29T00:00:00Z"))),
            "2026-03-29T01:00:00Z");
}

// Every zone with a UTC offset change in 2026-2027, Lord Howe's 30-minute one included: the
// fire times of wildcard and step hours match the fields on the wall clock, strictly
// increase, and miss no real matching minute (checked minute by minute a day either side of
// each change; between changes the offset is constant).
TEST(CronTest, WildcardHoursFollowRealTimeInEveryZoneWithDst) {
  const date::sys_seconds begin{date::sys_days{date::year(2026) / 1 / 1}};
  const date::sys_seconds end{date::sys_days{date::year(2028) / 1 / 1}};
  const char* const kExpressions[] = {"0 * * * *", "30 * * * *", "*/15 * * * *", "0 */2 * * *"};
  int zones_with_changes = 0;
  bool saw_lord_howe = false;
  for (const date::time_zone& zone : date::get_tzdb().zones) {
    std::vector<date::sys_seconds> changes;
    for (date::sys_info span = zone.get_info(begin); span.end < end; span = zone.get_info(span.end)) {
      if (zone.get_info(span.end).offset != span.offset) changes.push_back(span.end);
    }
    if (changes.empty()) continue;
    ++zones_with_changes;
    saw_lord_howe |= zone.name() == "Australia/Lord_Howe";
    for (const char* expr : kExpressions) {
      SCOPED_TRACE(std::string(expr) + " in " + std::string(zone.name()));
      const CronSchedule s = MustParse(expr, zone.name());
      const std::vector<std::string> fields = SplitFields(expr);
      if (std::string_view(expr) == "0 */2 * * *") {
        // The whole two years, fire by fire (the sparsest expression keeps this quick).
        std::optional<TimePoint> previous;
        size_t bad = 0;
        for (std::optional<TimePoint> t = s.Next(TimePoint(begin)); t && *t < TimePoint(end);
             t = s.Next(*t)) {
          const auto sys = std::chrono::floor<std::chrono::seconds>(*t);
          const std::chrono::seconds local =
              sys.time_since_epoch() + zone.get_info(date::sys_seconds(sys)).offset;
          if (!WallClockMatches(fields, local) || (previous && *previous >= *t)) ++bad;
          previous = t;
        }
        EXPECT_EQ(bad, 0u);
      }
      for (date::sys_seconds change : changes) {
        const TimePoint from(change - date::days(1));
        const TimePoint to(change + date::days(1));
        const std::vector<std::string> want = BruteForceRealTime(expr, &zone, from, to);
        EXPECT_EQ(FiresBetween(s, from, to), want) << "around " << FormatRfc3339(TimePoint(change));
        std::vector<std::string> back;
        for (std::optional<TimePoint> t = s.Previous(to); t && *t > from;
             t = s.Previous(*t - std::chrono::milliseconds(1))) {
          back.push_back(FormatRfc3339(*t));
        }
        std::reverse(back.begin(), back.end());
        EXPECT_EQ(back, want) << "around " << FormatRfc3339(TimePoint(change)) << " (Previous)";
      }
    }
  }
  EXPECT_GT(zones_with_changes, 50);
  EXPECT_TRUE(saw_lord_howe);
}

TEST(CronTest, OnceFiresAtItsAnchorOnly) {
  CronSchedule s = MustParse("@once", "Europe/Berlin");
  EXPECT_TRUE(s.is_once());
  EXPECT_EQ(Fmt(s.Next(At("2026-01-01T00:00:00Z"))), "none");  // no start_date: no fixed time
  s.set_anchor(At("2026-06-01T08:00:00Z"));
  EXPECT_EQ(Fmt(s.Next(At("2026-01-01T00:00:00Z"))), "2026-06-01T08:00:00Z");
  EXPECT_EQ(Fmt(s.Next(At("2026-06-01T08:00:00Z"))), "none");
  EXPECT_EQ(Fmt(s.Previous(At("2026-06-01T07:59:59Z"))), "none");
  EXPECT_EQ(Fmt(s.Previous(At("2027-01-01T00:00:00Z"))), "2026-06-01T08:00:00Z");
  EXPECT_EQ(Fmt(MustParse("@ONCE").Next(At("2026-01-01T00:00:00Z"))), "none");
}

TEST(CronTest, FieldErrorsSayWhatIsWrong) {
  EXPECT_EQ(ParseError("0 25 * * *"), "bad cron expression \"0 25 * * *\": hour 25 is out of range 0-23");
  EXPECT_EQ(ParseError("60 * * * *"), "bad cron expression \"60 * * * *\": minute 60 is out of range 0-59");
  EXPECT_EQ(ParseError("0 0 0 * *"),
            "bad cron expression \"0 0 0 * *\": day-of-month 0 is out of range 1-31");
  EXPECT_EQ(ParseError("0 0 32 * *"),
            "bad cron expression \"0 0 32 * *\": day-of-month 32 is out of range 1-31");
  EXPECT_EQ(ParseError("0 0 * 13 *"),
            "bad cron expression \"0 0 * 13 *\": month 13 is out of range 1-12 (or JAN-DEC)");
  EXPECT_EQ(ParseError("0 0 * * 8"),
            "bad cron expression \"0 0 * * 8\": day-of-week 8 is out of range 0-7 (or SUN-SAT)");
  EXPECT_EQ(ParseError("0 0 * * 99999999999"),
            "bad cron expression \"0 0 * * 99999999999\": day-of-week 99999999999 is out of range 0-7 (or "
            "SUN-SAT)");
  EXPECT_EQ(ParseError("x 0 * * *"), "bad cron expression \"x 0 * * *\": minute \"x\" is not a number 0-59");
  EXPECT_EQ(ParseError("0 0 * FOO *"),
            "bad cron expression \"0 0 * FOO *\": month \"FOO\" is not a number or a name (JAN-DEC)");
  EXPECT_EQ(ParseError("0 0 * * FRX"),
            "bad cron expression \"0 0 * * FRX\": day-of-week \"FRX\" is not a number or a name (SUN-SAT)");
  EXPECT_EQ(ParseError("0 22-2 * * *"),
            "bad cron expression \"0 22-2 * * *\": hour range 22-2 goes backwards; to wrap around write two "
            "ranges, e.g. 22-23,0-2");
  EXPECT_EQ(ParseError("1- * * * *"),
            "bad cron expression \"1- * * * *\": minute range \"1-\" needs a start and an end");
  EXPECT_EQ(ParseError("1,,2 * * * *"),
            "bad cron expression \"1,,2 * * * *\": minute field \"1,,2\" has an empty list item");
}

TEST(CronTest, StepErrors) {
  EXPECT_EQ(
      ParseError("*/0 * * * *"),
      "bad cron expression \"*/0 * * * *\": minute step \"0\" in \"*/0\" must be a number from 1 to 60");
  EXPECT_EQ(
      ParseError("*/x * * * *"),
      "bad cron expression \"*/x * * * *\": minute step \"x\" in \"*/x\" must be a number from 1 to 60");
  EXPECT_EQ(
      ParseError("0 */25 * * *"),
      "bad cron expression \"0 */25 * * *\": hour step \"25\" in \"*/25\" must be a number from 1 to 24");
  EXPECT_EQ(ParseError("*/ * * * *"),
            "bad cron expression \"*/ * * * *\": minute step \"\" in \"*/\" must be a number from 1 to 60");
  EXPECT_EQ(
      ParseError("/5 * * * *"),
      "bad cron expression \"/5 * * * *\": minute step \"/5\" needs a range before the slash, e.g. */5");
}

TEST(CronTest, ShapeAndPresetErrors) {
  EXPECT_EQ(ParseError("0 2 * *"),
            "bad cron expression \"0 2 * *\": needs 5 fields MIN HOUR DOM MONTH DOW, got 4");
  EXPECT_EQ(
      ParseError("0 0 2 * * *"),
      "bad cron expression \"0 0 2 * * *\": needs 5 fields MIN HOUR DOM MONTH DOW, got 6 (seconds and year "
      "fields are not supported)");
  EXPECT_EQ(
      ParseError(""),
      "bad cron expression \"\": empty; needs 5 fields MIN HOUR DOM MONTH DOW (e.g. \"0 2 * * *\") or a "
      "preset like @daily");
  EXPECT_EQ(
      ParseError("   "),
      "bad cron expression \"   \": empty; needs 5 fields MIN HOUR DOM MONTH DOW (e.g. \"0 2 * * *\") or a "
      "preset like @daily");
  EXPECT_EQ(ParseError("@fortnightly"),
            "bad cron expression \"@fortnightly\": unknown preset @fortnightly (known: @yearly, @annually, "
            "@quarterly, @monthly, @weekly, @daily, @midnight, @hourly, @once, \"@every <duration>\")");
  EXPECT_EQ(ParseError("@once 0"), "bad cron expression \"@once 0\": @once takes no fields after it");
  EXPECT_EQ(ParseError("@daily 0"), "bad cron expression \"@daily 0\": @daily takes no fields after it");
  EXPECT_EQ(ParseError("@every"),
            "bad cron expression \"@every\": @every needs exactly one duration, e.g. \"@every 15m\"");
  EXPECT_EQ(ParseError("@every 5x"),
            "bad cron expression \"@every 5x\": invalid duration \"5x\": unknown unit at position 2 (units: "
            "ms, s, m, "
            "h, d, w)");
  EXPECT_EQ(ParseError("@every 500ms"),
            "bad cron expression \"@every 500ms\": @every interval 500ms is too short; the minimum is 1s");
  EXPECT_EQ(ParseError("@every 0s"),
            "bad cron expression \"@every 0s\": @every interval 0s is too short; the minimum is 1s");
  EXPECT_EQ(ParseError("0 2 * * *", "Mars/Base"),
            "unknown time zone \"Mars/Base\" (expected an IANA name like Europe/Berlin or UTC)");
  // Blanks between fields are free.
  EXPECT_TRUE(CronSchedule::Parse("  0\t2  * *   * ").ok());
}

}  // namespace
}  // namespace nightshift

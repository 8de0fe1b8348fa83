#include "core/window.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace nightshift {
namespace {

using std::chrono::hours;

TimePoint At(std::string_view rfc3339) {
  Result<TimePoint> t = ParseTimestamp(rfc3339, "UTC");
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? *t : TimePoint{};
}

std::string Fmt(std::optional<TimePoint> t) { return t ? FormatRfc3339(*t) : "none"; }

Window MustParse(std::string_view tz, const std::vector<std::string>& open, std::string name = "w") {
  Result<Window> w = Window::Parse(std::move(name), tz, open, OnClose::kDrain);
  EXPECT_TRUE(w.ok()) << w.status().message();
  if (!w.ok()) std::abort();
  return *w;
}

std::string RangeError(std::string_view entry) {
  Result<WindowRange> r = Window::ParseRange(entry);
  EXPECT_FALSE(r.ok()) << entry << " parsed but should not";
  return r.ok() ? "" : r.status().message();
}

std::bitset<7> Days(std::initializer_list<int> days) {
  std::bitset<7> b;
  for (int d : days) b.set(d);
  return b;
}

// Open intervals of `w` within [from, to), as "start..end" text, found by walking NextChange.
std::vector<std::string> OpenSpans(const Window& w, TimePoint from, TimePoint to) {
  std::vector<std::string> out;
  std::optional<TimePoint> open = w.NextOpen(from);
  while (open && *open < to) {
    std::optional<TimePoint> close = w.NextChange(*open);
    out.push_back(FormatRfc3339(*open) + ".." + Fmt(close));
    if (!close || out.size() > 100) break;
    open = w.NextOpen(*close);
  }
  return out;
}

TEST(WindowRangeTest, ParsesDaysAndTimes) {
  Result<WindowRange> r = Window::ParseRange("mon-fri 22:00-06:00");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->days, Days({1, 2, 3, 4, 5}));
  EXPECT_EQ(r->start_second, 22 * 3600);
  EXPECT_EQ(r->end_second, 6 * 3600);

  r = Window::ParseRange("sat,sun 00:00-24:00");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->days, Days({0, 6}));
  EXPECT_EQ(r->start_second, 0);
  EXPECT_EQ(r->end_second, 86400);

  // Day ranges wrap around the week.
  r = Window::ParseRange("fri-mon 08:00-09:00");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->days, Days({5, 6, 0, 1}));

  // No days, or "daily": every day. Seconds are optional; a one-digit hour is fine.
  r = Window::ParseRange("22:00-06:00");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->days.all());
  r = Window::ParseRange("daily 09:00:30-17:00:15");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->days.all());
  EXPECT_EQ(r->start_second, 9 * 3600 + 30);
  EXPECT_EQ(r->end_second, 17 * 3600 + 15);
  r = Window::ParseRange("6:00-7:00");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->start_second, 6 * 3600);

  // Names in any case, long names, blanks after commas.
  r = Window::ParseRange("Sat, SUNDAY 10:00-11:00");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->days, Days({0, 6}));
  r = Window::ParseRange("mon,wed-thu 10:00-11:00");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->days, Days({1, 3, 4}));

  // Ending at 00:00 is ending at midnight, the same as 24:00.
  r = Window::ParseRange("22:00-00:00");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->end_second, 86400);
}

TEST(WindowRangeTest, ErrorsNameTheEntryAndTheProblem) {
  EXPECT_EQ(RangeError("mon-fri 25:00-06:00"),
            "bad range \"mon-fri 25:00-06:00\": hour 25 is out of range 0-23 (24:00 may end a range)");
  EXPECT_EQ(RangeError("10:00-24:30"),
            "bad range \"10:00-24:30\": hour 24 is out of range 0-23 (24:00 may end a range)");
  EXPECT_EQ(RangeError("24:00-06:00"),
            "bad range \"24:00-06:00\": 24:00 can only end a range; start the next day at 00:00 instead");
  EXPECT_EQ(RangeError("10:60-11:00"), "bad range \"10:60-11:00\": minute 60 is out of range 0-59");
  EXPECT_EQ(RangeError("10:00:61-11:00"), "bad range \"10:00:61-11:00\": second 61 is out of range 0-59");
  EXPECT_EQ(
      RangeError("funday 10:00-11:00"),
      "bad range \"funday 10:00-11:00\": unknown day \"funday\" (use mon, tue, wed, thu, fri, sat, sun, a "
      "range like mon-fri, or daily)");
  EXPECT_EQ(RangeError("mon-xyz 10:00-11:00"),
            "bad range \"mon-xyz 10:00-11:00\": unknown day \"xyz\" (use mon, tue, wed, thu, fri, sat, sun, "
            "a range "
            "like mon-fri, or daily)");
  EXPECT_EQ(RangeError("mon,,tue 10:00-11:00"),
            "bad range \"mon,,tue 10:00-11:00\": empty day in \"mon,,tue\"");
  EXPECT_EQ(RangeError("mon 10:00"),
            "bad range \"mon 10:00\": expected HH:MM-HH:MM after the days, e.g. \"mon-fri 22:00-06:00\"");
  EXPECT_EQ(
      RangeError("mon 22:00 - 06:00"),
      "bad range \"mon 22:00 - 06:00\": expected HH:MM-HH:MM after the days, e.g. \"mon-fri 22:00-06:00\"");
  EXPECT_EQ(RangeError("10-11"), "bad range \"10-11\": \"10\" is not a time; expected HH:MM or HH:MM:SS");
  EXPECT_EQ(RangeError("10:0-11:00"),
            "bad range \"10:0-11:00\": \"10:0\" is not a time; expected HH:MM or HH:MM:SS");
  EXPECT_EQ(RangeError(""),
            "bad range \"\": empty; expected [DAYS ]HH:MM-HH:MM, e.g. \"mon-fri 22:00-06:00\"");
}

TEST(WindowTest, ParseErrorsNameTheWindow) {
  Result<Window> w = Window::Parse("nightly", "Europe/Berlin", {"sat,sun 00:00-24:00", "mon-fri 25:00-06:00"},
                                   OnClose::kDrain);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().message(),
            "window nightly: bad range \"mon-fri 25:00-06:00\": hour 25 is out of range 0-23 (24:00 may end "
            "a range)");
  w = Window::Parse("nightly", "Mars/Base", {"22:00-06:00"}, OnClose::kDrain);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(
      w.status().message(),
      "window nightly: unknown time zone \"Mars/Base\" (expected an IANA name like Europe/Berlin or UTC)");
}

TEST(WindowTest, Accessors) {
  Result<Window> w = Window::Parse("nightly", "Europe/Berlin", {"mon-fri 22:00-06:00"}, OnClose::kKill);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->name(), "nightly");
  EXPECT_EQ(w->timezone(), "Europe/Berlin");
  EXPECT_EQ(w->on_close(), OnClose::kKill);
  ASSERT_EQ(w->ranges().size(), 1u);
  EXPECT_EQ(w->ranges()[0].start_second, 22 * 3600);
}

// The contract's example: weeknights plus whole weekends, in Berlin (CET, +01:00, in November).
TEST(WindowTest, NightlyAcrossMidnight) {
  Window w = MustParse("Europe/Berlin", {"mon-fri 22:00-06:00", "sat,sun 00:00-24:00"}, "nightly");
  EXPECT_FALSE(w.IsOpen(At("2026-11-24T20:59:59Z")));  // Tue 21:59:59
  EXPECT_TRUE(w.IsOpen(At("2026-11-24T21:00:00Z")));   // Tue 22:00
  EXPECT_TRUE(w.IsOpen(At("2026-11-25T04:59:59Z")));   // Wed 05:59:59, the tail of Tuesday's range
  EXPECT_FALSE(w.IsOpen(At("2026-11-25T05:00:00Z")));  // Wed 06:00
  EXPECT_FALSE(w.IsOpen(At("2026-11-25T11:00:00Z")));  // Wed noon
  EXPECT_TRUE(w.IsOpen(At("2026-11-28T11:00:00Z")));   // Sat noon
  // Sunday is not in mon-fri, so nothing spills into Monday morning.
  EXPECT_FALSE(w.IsOpen(At("2026-11-30T02:00:00Z")));  // Mon 03:00

  EXPECT_EQ(Fmt(w.NextChange(At("2026-11-25T11:00:00Z"))), "2026-11-25T21:00:00Z");
  EXPECT_EQ(Fmt(w.NextChange(At("2026-11-25T21:00:00Z"))), "2026-11-26T05:00:00Z");
  // Friday night runs straight into the weekend: no change at Sat 06:00 or at midnights.
  EXPECT_EQ(Fmt(w.NextChange(At("2026-11-27T21:00:00Z"))), "2026-11-29T23:00:00Z");
  EXPECT_EQ(Fmt(w.NextOpen(At("2026-11-30T00:00:00Z"))), "2026-11-30T21:00:00Z");
  // NextOpen of an open window is now.
  EXPECT_EQ(Fmt(w.NextOpen(At("2026-11-28T11:00:00.123Z"))), "2026-11-28T11:00:00.123Z");
}

TEST(WindowTest, DaysOfWeekAreTheWindowsZone) {
  // Monday in Tokyo (+09:00) starts Sunday 15:00 UTC.
  Window tokyo = MustParse("Asia/Tokyo", {"mon 00:00-24:00"});
  Window utc = MustParse("UTC", {"mon 00:00-24:00"});
  const TimePoint sunday_evening_utc = At("2026-11-29T16:00:00Z");
  EXPECT_TRUE(tokyo.IsOpen(sunday_evening_utc));
  EXPECT_FALSE(utc.IsOpen(sunday_evening_utc));
  EXPECT_EQ(Fmt(tokyo.NextOpen(At("2026-11-29T00:00:00Z"))), "2026-11-29T15:00:00Z");
  EXPECT_EQ(Fmt(utc.NextOpen(At("2026-11-29T00:00:00Z"))), "2026-11-30T00:00:00Z");
  EXPECT_EQ(Fmt(tokyo.NextChange(sunday_evening_utc)), "2026-11-30T15:00:00Z");
  EXPECT_EQ(Fmt(utc.NextChange(sunday_evening_utc)), "2026-11-30T00:00:00Z");
}

TEST(WindowTest, SpringForwardSkipsAWindowInsideTheGap) {
  // On 2026-03-29 Berlin's wall clock jumps from 02:00 to 03:00: 02:00-03:00 never happens.
  Window w = MustParse("Europe/Berlin", {"daily 02:00-03:00"});
  EXPECT_EQ(OpenSpans(w, At("2026-03-28T00:00:00Z"), At("2026-03-31T00:00:00Z")),
            (std::vector<std::string>{"2026-03-28T01:00:00Z..2026-03-28T02:00:00Z",     // CET
                                      "2026-03-30T00:00:00Z..2026-03-30T01:00:00Z"}));  // CEST
  EXPECT_FALSE(w.IsOpen(At("2026-03-29T00:59:59Z")));                                   // 01:59:59 CET
  EXPECT_FALSE(w.IsOpen(At("2026-03-29T01:00:00Z")));                                   // 03:00 CEST
  EXPECT_EQ(Fmt(w.NextOpen(At("2026-03-28T02:00:00Z"))), "2026-03-30T00:00:00Z");

  // A window spanning the gap is one real hour shorter.
  Window around = MustParse("Europe/Berlin", {"01:00-04:00"});
  EXPECT_EQ(Fmt(around.NextOpen(At("2026-03-28T23:30:00Z"))), "2026-03-29T00:00:00Z");
  EXPECT_EQ(Fmt(around.NextChange(At("2026-03-29T00:00:00Z"))), "2026-03-29T02:00:00Z");
  // One ending inside the gap closes when the clock jumps.
  Window into = MustParse("Europe/Berlin", {"01:00-02:30"});
  EXPECT_EQ(Fmt(into.NextChange(At("2026-03-29T00:00:00Z"))), "2026-03-29T01:00:00Z");
}

TEST(WindowTest, NightAcrossFallBackIsAnHourLonger) {
  Window w = MustParse("Europe/Berlin", {"22:00-06:00"});
  // An ordinary night: 22:00 CEST (20:00Z) to 06:00 CEST (04:00Z), 8 hours.
  EXPECT_EQ(Fmt(w.NextOpen(At("2026-10-23T12:00:00Z"))), "2026-10-23T20:00:00Z");
  EXPECT_EQ(Fmt(w.NextChange(At("2026-10-23T20:00:00Z"))), "2026-10-24T04:00:00Z");
  // The night of 2026-10-24/25 gains the repeated hour: 22:00 CEST to 06:00 CET, 9 hours.
  const std::optional<TimePoint> open = w.NextOpen(At("2026-10-24T12:00:00Z"));
  const std::optional<TimePoint> close = w.NextChange(*open);
  EXPECT_EQ(Fmt(open), "2026-10-24T20:00:00Z");
  EXPECT_EQ(Fmt(close), "2026-10-25T05:00:00Z");
  EXPECT_EQ(*close - *open, hours(9));
  // It stays open through the repeated hour.
  EXPECT_TRUE(w.IsOpen(At("2026-10-25T00:30:00Z")));
  EXPECT_TRUE(w.IsOpen(At("2026-10-25T01:30:00Z")));
}

TEST(WindowTest, RepeatedHourOpensTwiceOnTheWallClock) {
  // 02:30-04:00 on 2026-10-25 in Berlin: 02:30 CEST..(clock falls back to 02:00 CET)..02:30 CET..04:00 CET.
  Window w = MustParse("Europe/Berlin", {"02:30-04:00"});
  EXPECT_EQ(OpenSpans(w, At("2026-10-24T23:00:00Z"), At("2026-10-25T12:00:00Z")),
            (std::vector<std::string>{"2026-10-25T00:30:00Z..2026-10-25T01:00:00Z",
                                      "2026-10-25T01:30:00Z..2026-10-25T03:00:00Z"}));
  // The whole repeated hour as a window is open two real hours.
  Window hour = MustParse("Europe/Berlin", {"02:00-03:00"});
  EXPECT_EQ(OpenSpans(hour, At("2026-10-24T23:00:00Z"), At("2026-10-25T12:00:00Z")),
            std::vector<std::string>{"2026-10-25T00:00:00Z..2026-10-25T02:00:00Z"});
}

TEST(WindowTest, AlwaysOpenNeverChanges) {
  for (const std::vector<std::string>& open :
       {std::vector<std::string>{"00:00-24:00"}, std::vector<std::string>{"daily 00:00-24:00"},
        std::vector<std::string>{"mon-fri 00:00-24:00", "sat,sun 00:00-24:00"},
        std::vector<std::string>{"00:00-12:00", "12:00-24:00"}}) {
    Window w = MustParse("Europe/Berlin", open);
    // Including across a DST change.
    EXPECT_TRUE(w.IsOpen(At("2026-03-29T01:00:00Z")));
    EXPECT_EQ(Fmt(w.NextChange(At("2026-03-25T00:00:00Z"))), "none") << open[0];
    EXPECT_EQ(Fmt(w.NextOpen(At("2026-03-25T00:00:00Z"))), "2026-03-25T00:00:00Z");
  }
}

TEST(WindowTest, AdjacentDaysMakeNoFakeChangeAtMidnight) {
  Window w = MustParse("UTC", {"mon 00:00-24:00", "tue 00:00-24:00"});
  EXPECT_EQ(Fmt(w.NextChange(At("2026-11-30T10:00:00Z"))), "2026-12-02T00:00:00Z");  // Mon -> Wed 00:00
  EXPECT_EQ(Fmt(w.NextChange(At("2026-12-02T00:00:00Z"))), "2026-12-07T00:00:00Z");  // next Mon
  // A crossing range meeting the next day's range.
  Window joined = MustParse("UTC", {"fri 20:00-00:00", "sat 00:00-08:00"});
  EXPECT_EQ(Fmt(joined.NextChange(At("2026-11-27T20:00:00Z"))), "2026-11-28T08:00:00Z");
}

TEST(WindowTest, WeeklyWindowFromFarAway) {
  Window w = MustParse("UTC", {"sun 23:00-01:00"});
  EXPECT_EQ(Fmt(w.NextOpen(At("2026-11-30T01:00:00Z"))), "2026-12-06T23:00:00Z");
  EXPECT_TRUE(w.IsOpen(At("2026-12-07T00:59:59Z")));  // Monday, the tail of Sunday's range
  EXPECT_EQ(Fmt(w.NextChange(At("2026-12-06T23:00:00Z"))), "2026-12-07T01:00:00Z");
}

// NextChange agrees with a minute-by-minute scan of IsOpen, in several zones and around DST.
TEST(WindowTest, NextChangeMatchesAMinuteScan) {
  const std::vector<std::vector<std::string>> windows = {
      {"mon-fri 22:00-06:00", "sat,sun 00:00-24:00"},
      {"02:30-03:30"},
      {"sun 01:30-02:15", "wed 12:00-12:01"},
      {"fri-mon 23:00-01:00"},
      {"00:00-02:00", "02:00-05:00"},
  };
  for (const char* tz : {"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Tokyo"}) {
    for (const auto& open : windows) {
      Window w = MustParse(tz, open);
      for (const char* start : {"2026-03-27T00:00:00Z", "2026-10-23T00:00:00Z", "2026-03-06T00:00:00Z",
                                "2026-10-30T00:00:00Z", "2026-04-03T00:00:00Z"}) {
        TimePoint t = At(start);
        const TimePoint end = t + hours(24 * 5);
        std::optional<TimePoint> predicted = w.NextChange(t);
        bool state = w.IsOpen(t);
        for (TimePoint m = t + std::chrono::minutes(1); m < end; m += std::chrono::minutes(1)) {
          if (w.IsOpen(m) == state) continue;
          ASSERT_EQ(Fmt(predicted), FormatRfc3339(m)) << tz << " " << open[0] << " from " << FormatRfc3339(t);
          t = m;
          state = !state;
          predicted = w.NextChange(t);
        }
        // No change the scan missed.
        if (predicted) {
          EXPECT_GE(*predicted, end) << tz << " " << open[0] << " from " << FormatRfc3339(t);
        }
      }
    }
  }
}

TEST(WindowTest, NoRangesNeverOpens) {
  Window w = MustParse("UTC", {});
  EXPECT_FALSE(w.IsOpen(At("2026-11-30T01:00:00Z")));
  EXPECT_EQ(Fmt(w.NextChange(At("2026-11-30T01:00:00Z"))), "none");
  EXPECT_EQ(Fmt(w.NextOpen(At("2026-11-30T01:00:00Z"))), "none");
}

}  // namespace
}  // namespace nightshift

#include "core/time.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace nightshift {
namespace {

using std::chrono::milliseconds;

// The instant `seconds` after the epoch.
TimePoint Epoch(int64_t seconds) { return TimePoint(milliseconds(seconds * 1000)); }

std::string Parsed(std::string_view text, std::string_view tz) {
  Result<TimePoint> t = ParseTimestamp(text, tz);
  return t.ok() ? FormatRfc3339(*t) : "error: " + t.status().message();
}

TEST(TimeTest, FormatRfc3339InUtc) {
  EXPECT_EQ(FormatRfc3339(Epoch(0)), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(Epoch(1795903200)), "2026-11-28T22:00:00Z");
  // Milliseconds only when there are some.
  EXPECT_EQ(FormatRfc3339(Epoch(1795903200) + milliseconds(250)), "2026-11-28T22:00:00.250Z");
  EXPECT_EQ(FormatRfc3339(Epoch(1795903200) + milliseconds(7)), "2026-11-28T22:00:00.007Z");
  // Before the epoch still lands on the right day.
  EXPECT_EQ(FormatRfc3339(Epoch(0) - milliseconds(1)), "1969-12-31T23:59:59.999Z");
}

TEST(TimeTest, FormatRfc3339WithTheZonesOffset) {
  EXPECT_EQ(FormatRfc3339In(Epoch(1795903200), "Europe/Berlin"), "2026-11-28T23:00:00+01:00");
  EXPECT_EQ(FormatRfc3339In(Epoch(1783029600), "Europe/Berlin"), "2026-07-03T00:00:00+02:00");
  EXPECT_EQ(FormatRfc3339In(Epoch(1795903200), "Asia/Kolkata"), "2026-11-29T03:30:00+05:30");
  EXPECT_EQ(FormatRfc3339In(Epoch(1795903200), "America/New_York"), "2026-11-28T17:00:00-05:00");
  EXPECT_EQ(FormatRfc3339In(Epoch(1795903200), "UTC"), "2026-11-28T22:00:00+00:00");
  EXPECT_EQ(FormatRfc3339In(Epoch(1795903200) + milliseconds(5), "UTC"), "2026-11-28T22:00:00.005+00:00");
  // An unknown zone falls back to UTC rather than failing a log line or an API response.
  EXPECT_EQ(FormatRfc3339In(Epoch(1795903200), "Mars/Base"), "2026-11-28T22:00:00+00:00");
}

TEST(TimeTest, ParsesDatesAndLocalTimesInTheZone) {
  EXPECT_EQ(Parsed("2026-01-01", "UTC"), "2026-01-01T00:00:00Z");
  EXPECT_EQ(Parsed("2026-01-01", "Europe/Berlin"), "2025-12-31T23:00:00Z");
  EXPECT_EQ(Parsed("2026-01-01T02:00:00", "Europe/Berlin"), "2026-01-01T01:00:00Z");
  EXPECT_EQ(Parsed("2026-07-01T02:00:00", "Europe/Berlin"), "2026-07-01T00:00:00Z");
  EXPECT_EQ(Parsed("2026-01-01 02:00", "Europe/Berlin"), "2026-01-01T01:00:00Z");
  EXPECT_EQ(Parsed("2026-01-01T02:00", "Asia/Tokyo"), "2025-12-31T17:00:00Z");
  EXPECT_EQ(Parsed("  2026-01-01  ", "UTC"), "2026-01-01T00:00:00Z");
  EXPECT_EQ(Parsed("2026-01-01", ""), "2026-01-01T00:00:00Z");  // no zone means UTC
}

TEST(TimeTest, ParsesRfc3339AndIgnoresTheZone) {
  EXPECT_EQ(Parsed("2026-01-01T02:00:00Z", "Europe/Berlin"), "2026-01-01T02:00:00Z");
  EXPECT_EQ(Parsed("2026-01-01t02:00:00z", "UTC"), "2026-01-01T02:00:00Z");
  EXPECT_EQ(Parsed("2026-01-01T02:00:00+05:30", "Europe/Berlin"), "2025-12-31T20:30:00Z");
  EXPECT_EQ(Parsed("2026-01-01T02:00:00-05:00", "UTC"), "2026-01-01T07:00:00Z");
  EXPECT_EQ(Parsed("2026-07-01T02:00:00+0200", "UTC"), "2026-07-01T00:00:00Z");
  EXPECT_EQ(Parsed("2026-01-01T02:00:00.25Z", "UTC"), "2026-01-01T02:00:00.250Z");
  EXPECT_EQ(Parsed("2026-01-01T02:00:00.123456789Z", "UTC"), "2026-01-01T02:00:00.123Z");
  // With an offset, even an unknown zone does not matter.
  EXPECT_EQ(Parsed("2026-01-01T02:00:00Z", "Mars/Base"), "2026-01-01T02:00:00Z");
  // Round trip of what we print.
  for (const char* text : {"2026-11-28T22:00:00Z", "2026-11-28T22:00:00.250Z", "1969-12-31T23:59:59.999Z"}) {
    EXPECT_EQ(Parsed(text, "UTC"), text);
  }
  Result<TimePoint> t = ParseTimestamp(FormatRfc3339In(Epoch(1795903200), "Asia/Kolkata"), "UTC");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, Epoch(1795903200));
}

TEST(TimeTest, DstGapAndRepeatInLocalTimes) {
  // 02:30 does not exist on 2026-03-29 in Berlin: the first instant after the gap (03:00 CEST).
  EXPECT_EQ(Parsed("2026-03-29T02:30:00", "Europe/Berlin"), "2026-03-29T01:00:00Z");
  // 02:30 happens twice on 2026-10-25: the first one (CEST).
  EXPECT_EQ(Parsed("2026-10-25T02:30:00", "Europe/Berlin"), "2026-10-25T00:30:00Z");
}

TEST(TimeTest, ParseErrorsSayWhatIsWrong) {
  const std::string forms =
      "expected YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] or RFC 3339 like 2026-01-01T02:00:00+01:00";
  EXPECT_EQ(Parsed("", "UTC"), "error: invalid timestamp \"\": empty; " + forms);
  EXPECT_EQ(Parsed("yesterday", "UTC"), "error: invalid timestamp \"yesterday\": " + forms);
  EXPECT_EQ(Parsed("2026-13-01", "UTC"),
            "error: invalid timestamp \"2026-13-01\": month 13 is out of range 1-12");
  EXPECT_EQ(Parsed("2026-02-29", "UTC"), "error: invalid timestamp \"2026-02-29\": 2026-02 has no day 29");
  EXPECT_EQ(Parsed("2026-01-00", "UTC"), "error: invalid timestamp \"2026-01-00\": 2026-01 has no day 0");
  EXPECT_EQ(Parsed("2026-01-01T25:00", "UTC"),
            "error: invalid timestamp \"2026-01-01T25:00\": hour 25 is out of range 0-23");
  EXPECT_EQ(Parsed("2026-01-01T10:60", "UTC"),
            "error: invalid timestamp \"2026-01-01T10:60\": minute 60 is out of range 0-59");
  EXPECT_EQ(Parsed("2026-01-01T10", "UTC"),
            "error: invalid timestamp \"2026-01-01T10\": expected HH:MM after the date; " + forms);
  EXPECT_EQ(Parsed("2026-01-01T10:00:00+01:00x", "UTC"),
            "error: invalid timestamp \"2026-01-01T10:00:00+01:00x\": unexpected \"x\"; " + forms);
  EXPECT_EQ(Parsed("2026-01-01T10:00:00+25:00", "UTC"),
            "error: invalid timestamp \"2026-01-01T10:00:00+25:00\": offset out of range (at most +23:59)");
  EXPECT_EQ(Parsed("2026-01-01Z", "UTC"),
            "error: invalid timestamp \"2026-01-01Z\": unexpected \"Z\" after the date; " + forms);
  EXPECT_EQ(
      Parsed("2026-01-01T02:00", "Mars/Base"),
      "error: invalid timestamp \"2026-01-01T02:00\": unknown time zone \"Mars/Base\" (expected an IANA name "
      "like Europe/Berlin)");
}

TEST(TimeTest, KnownTimeZones) {
  EXPECT_TRUE(IsKnownTimeZone("UTC"));
  EXPECT_TRUE(IsKnownTimeZone("Europe/Berlin"));
  EXPECT_TRUE(IsKnownTimeZone("America/Argentina/Buenos_Aires"));
  EXPECT_FALSE(IsKnownTimeZone("Mars/Base"));
  EXPECT_FALSE(IsKnownTimeZone("europe/berlin"));
  EXPECT_FALSE(IsKnownTimeZone(""));
}

TEST(TimeTest, SystemClockIsNow) {
  SystemClock clock;
  const TimePoint before = std::chrono::floor<milliseconds>(std::chrono::system_clock::now());
  const TimePoint now = clock.Now();
  const TimePoint after = std::chrono::floor<milliseconds>(std::chrono::system_clock::now());
  EXPECT_LE(before, now);
  EXPECT_LE(now, after);
}

}  // namespace
}  // namespace nightshift

#include "core/duration.h"

#include <gtest/gtest.h>

#include <string>

namespace nightshift {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

Duration MustParse(std::string_view text) {
  Result<Duration> d = ParseDuration(text);
  EXPECT_TRUE(d.ok()) << text << ": " << d.status().message();
  return d.ok() ? *d : Duration(-1);
}

std::string ParseError(std::string_view text) {
  Result<Duration> d = ParseDuration(text);
  EXPECT_FALSE(d.ok()) << text << " parsed but should not";
  return d.ok() ? "" : d.status().message();
}

TEST(DurationTest, ParsesWhatUsersWrite) {
  EXPECT_EQ(MustParse("90"), seconds(90));  // a bare number is seconds
  EXPECT_EQ(MustParse("90s"), seconds(90));
  EXPECT_EQ(MustParse("5m"), minutes(5));
  EXPECT_EQ(MustParse("1h30m"), minutes(90));
  EXPECT_EQ(MustParse("250ms"), milliseconds(250));
  EXPECT_EQ(MustParse("1s500ms"), milliseconds(1500));
  EXPECT_EQ(MustParse("2d"), hours(48));
  EXPECT_EQ(MustParse("1w"), hours(24 * 7));
  EXPECT_EQ(MustParse("0"), seconds(0));
  EXPECT_EQ(MustParse("1d2h3m4s5ms"), hours(26) + minutes(3) + seconds(4) + milliseconds(5));
}

TEST(DurationTest, ErrorsSayWhatIsWrong) {
  EXPECT_EQ(ParseError(""), "invalid duration \"\": empty");
  EXPECT_EQ(ParseError("5x"),
            "invalid duration \"5x\": unknown unit at position 2 (units: ms, s, m, h, d, w)");
  EXPECT_EQ(ParseError("m5"),
            "invalid duration \"m5\": expected a number at position 1 (use e.g. 90, 90s, 5m, 1h30m)");
  EXPECT_EQ(ParseError("1m1h"),
            "invalid duration \"1m1h\": units must go from largest to smallest, each once");
  EXPECT_EQ(ParseError("1m1m"),
            "invalid duration \"1m1m\": units must go from largest to smallest, each once");
  EXPECT_EQ(ParseError("-5"),
            "invalid duration \"-5\": expected a number at position 1 (use e.g. 90, 90s, 5m, 1h30m)");
  EXPECT_EQ(ParseError("1h30"), "invalid duration \"1h30\": missing unit after 30");
  EXPECT_EQ(ParseError("99999999999999999999w"), "invalid duration \"99999999999999999999w\": too large");
}

TEST(DurationTest, FormatIsShortAndReadsBack) {
  EXPECT_EQ(FormatDuration(minutes(90)), "1h30m");
  EXPECT_EQ(FormatDuration(milliseconds(250)), "250ms");
  EXPECT_EQ(FormatDuration(milliseconds(0)), "0s");
  EXPECT_EQ(FormatDuration(hours(48)), "2d");
  EXPECT_EQ(FormatDuration(milliseconds(1500)), "1s500ms");
  for (Duration d : {Duration(0), Duration(1), Duration(999), Duration(61000), Duration(90061001)}) {
    EXPECT_EQ(MustParse(FormatDuration(d)), d) << FormatDuration(d);
  }
}

}  // namespace
}  // namespace nightshift

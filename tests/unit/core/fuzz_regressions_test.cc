// Inputs the libFuzzer targets (tests/fuzz) found crashing or misbehaving, kept as plain tests
// so the normal test run guards the fixes. Each input is also in the target's seed corpus.
#include <gtest/gtest.h>

#include <string>

#include "core/duration.h"
#include "core/window.h"

namespace nightshift {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;

std::string ParseError(std::string_view text) {
  Result<Duration> d = ParseDuration(text);
  EXPECT_FALSE(d.ok()) << text << " parsed to " << (d.ok() ? FormatDuration(*d) : "");
  return d.ok() ? "" : d.status().message();
}

// duration_fuzz: "15250284459w" passed the digit guard and overflowed int64 milliseconds
// (undefined behaviour; a DAG's retry_delay or an @every schedule could carry it).
TEST(FuzzRegressionsTest, HugeDurationIsAnErrorNotAnOverflow) {
  EXPECT_EQ(ParseError("15250284459w"), "invalid duration \"15250284459w\": too large");
  EXPECT_EQ(ParseError("9223372036854775807ms"), "invalid duration \"9223372036854775807ms\": too large");
  EXPECT_EQ(ParseError("1000000w1000000d"), "invalid duration \"1000000w1000000d\": too large");
}

// duration_fuzz: "7108717808w" parsed, but its own FormatDuration text ("49761024656d") did not
// (too large), so a value the loader accepted could not be written back. Durations now stop at
// 3650000d (about 10,000 years), and every accepted one reads back.
TEST(FuzzRegressionsTest, EveryAcceptedDurationReadsBack) {
  EXPECT_EQ(ParseError("7108717808w"), "invalid duration \"7108717808w\": too large");
  for (const char* text : {"3650000d", "521428w4d", "315360000000", "3649999d23h59m59s999ms"}) {
    Result<Duration> d = ParseDuration(text);
    ASSERT_TRUE(d.ok()) << text << ": " << d.status().message();
    Result<Duration> again = ParseDuration(FormatDuration(*d));
    ASSERT_TRUE(again.ok()) << text << " -> " << FormatDuration(*d) << ": " << again.status().message();
    EXPECT_EQ(*again, *d) << text;
  }
  EXPECT_EQ(*ParseDuration("3650000d"), hours(24) * 3650000);
  EXPECT_EQ(ParseError("3650000d1ms"), "invalid duration \"3650000d1ms\": too large");
  EXPECT_EQ(ParseError("315360000001"), "invalid duration \"315360000001\": too large");
  EXPECT_EQ(ParseError("521429w"), "invalid duration \"521429w\": too large");
  EXPECT_EQ(*ParseDuration("1ms"), milliseconds(1));
}

// window_fuzz: a clock part of many digits ("6:00:7777777777777730") was read into an int
// before its width was checked (signed overflow); a config's `open:` entry could carry it.
TEST(FuzzRegressionsTest, LongClockDigitsAreAShapeErrorNotAnOverflow) {
  Result<WindowRange> r = Window::ParseRange("6:00:7777777777777730-06:00");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(
      r.status().message(),
      "bad range \"6:00:7777777777777730-06:00\": \"6:00:7777777777777730\" is not a time; expected HH:MM "
      "or HH:MM:SS");
  r = Window::ParseRange("mon 22:00-99999999999:00");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(
      r.status().message(),
      "bad range \"mon 22:00-99999999999:00\": \"99999999999:00\" is not a time; expected HH:MM or HH:MM:SS");
  EXPECT_TRUE(Window::ParseRange("6:00:30-06:00:45").ok());
}

}  // namespace
}  // namespace nightshift

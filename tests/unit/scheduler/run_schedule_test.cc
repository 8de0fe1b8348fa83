#include "scheduler/run_schedule.h"

#include <gtest/gtest.h>

namespace nightshift {
namespace {

TimePoint T(const char* text) { return *ParseTimestamp(text, "UTC"); }

Dag Daily(bool catchup) {
  Dag dag;
  dag.dag_id = "d";
  dag.schedule = "0 2 * * *";
  dag.start_date = T("2026-11-01T00:00:00Z");
  dag.catchup = catchup;
  return dag;
}

TEST(RunScheduleTest, CatchupCreatesEveryEndedIntervalOldestFirst) {
  auto due = DueIntervals(Daily(true), std::nullopt, T("2026-11-04T03:00:00Z"), 100);
  ASSERT_EQ(due.size(), 3u);
  EXPECT_EQ(due[0].start, T("2026-11-01T02:00:00Z"));
  EXPECT_EQ(due[0].end, T("2026-11-02T02:00:00Z"));
  EXPECT_EQ(due[2].start, T("2026-11-03T02:00:00Z"));
  EXPECT_EQ(due[2].end, T("2026-11-04T02:00:00Z"));
}

TEST(RunScheduleTest, AnIntervalIsOwedOnlyOnceItHasEnded) {
  auto due = DueIntervals(Daily(true), std::nullopt, T("2026-11-02T01:59:59Z"), 100);
  EXPECT_TRUE(due.empty());
  due = DueIntervals(Daily(true), std::nullopt, T("2026-11-02T02:00:00Z"), 100);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].start, T("2026-11-01T02:00:00Z"));
}

TEST(RunScheduleTest, CatchupContinuesAfterTheLastRunAndRespectsMax) {
  auto due = DueIntervals(Daily(true), T("2026-11-02T02:00:00Z"), T("2026-11-10T03:00:00Z"), 2);
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].start, T("2026-11-03T02:00:00Z"));
  EXPECT_EQ(due[1].start, T("2026-11-04T02:00:00Z"));
}

TEST(RunScheduleTest, WithoutCatchupOnlyTheMostRecentInterval) {
  auto due = DueIntervals(Daily(false), std::nullopt, T("2026-11-28T12:00:00Z"), 100);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].start, T("2026-11-27T02:00:00Z"));
  EXPECT_EQ(due[0].end, T("2026-11-28T02:00:00Z"));
  // Already created: nothing more until the next interval ends.
  EXPECT_TRUE(DueIntervals(Daily(false), T("2026-11-27T02:00:00Z"), T("2026-11-28T12:00:00Z"), 100).empty());
  due = DueIntervals(Daily(false), T("2026-11-27T02:00:00Z"), T("2026-11-29T02:00:00Z"), 100);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].start, T("2026-11-28T02:00:00Z"));
}

TEST(RunScheduleTest, NothingBeforeStartDateOrAfterEndDate) {
  Dag dag = Daily(true);
  dag.start_date = T("2026-12-01T00:00:00Z");
  EXPECT_TRUE(DueIntervals(dag, std::nullopt, T("2026-11-28T12:00:00Z"), 100).empty());
  dag = Daily(true);
  dag.end_date = T("2026-11-02T12:00:00Z");
  auto due = DueIntervals(dag, std::nullopt, T("2026-11-20T00:00:00Z"), 100);
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[1].start, T("2026-11-02T02:00:00Z"));
}

TEST(RunScheduleTest, ManualDagsAreOwedNothing) {
  Dag dag = Daily(true);
  dag.schedule.reset();
  EXPECT_TRUE(DueIntervals(dag, std::nullopt, T("2026-11-28T12:00:00Z"), 100).empty());
  EXPECT_FALSE(NextIntervalEnd(dag, T("2026-11-28T12:00:00Z")).has_value());
}

TEST(RunScheduleTest, CronInTheDagsTimeZone) {
  Dag dag = Daily(false);
  dag.timezone = "Europe/Berlin";  // 02:00 Berlin = 01:00Z in winter
  auto due = DueIntervals(dag, std::nullopt, T("2026-11-28T12:00:00Z"), 100);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].start, T("2026-11-27T01:00:00Z"));
  EXPECT_EQ(NextIntervalEnd(dag, T("2026-11-28T12:00:00Z")), T("2026-11-29T01:00:00Z"));
}

TEST(RunScheduleTest, HourlyCatchupOverTheAutumnChangeCoversEveryRealHour) {
  // 2026-10-25 in Berlin the clock shows 02:00-03:00 twice; each real hour is its own interval.
  Dag dag = Daily(true);
  dag.schedule = "@hourly";
  dag.timezone = "Europe/Berlin";
  dag.start_date = T("2026-10-24T22:00:00Z");
  auto due = DueIntervals(dag, std::nullopt, T("2026-10-25T04:00:00Z"), 100);
  ASSERT_EQ(due.size(), 6u);
  for (size_t i = 0; i < due.size(); ++i) {
    EXPECT_EQ(due[i].start, T("2026-10-24T22:00:00Z") + std::chrono::hours(i)) << i;
    EXPECT_EQ(due[i].end - due[i].start, std::chrono::hours(1)) << i;
  }
}

TEST(RunScheduleTest, OnceIsOwedOneRunAtStartDate) {
  Dag dag = Daily(true);
  dag.schedule = "@once";
  dag.start_date = T("2026-11-01T06:00:00Z");
  EXPECT_TRUE(DueIntervals(dag, std::nullopt, T("2026-11-01T05:59:59Z"), 100).empty());
  EXPECT_EQ(NextIntervalEnd(dag, T("2026-11-01T05:00:00Z")), T("2026-11-01T06:00:00Z"));
  auto due = DueIntervals(dag, std::nullopt, T("2026-12-01T00:00:00Z"), 100);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].start, T("2026-11-01T06:00:00Z"));
  EXPECT_EQ(due[0].end, T("2026-11-01T06:00:00Z"));
  // Once that run exists (read back from the store after a restart too), never another.
  EXPECT_TRUE(DueIntervals(dag, due[0].start, T("2027-12-01T00:00:00Z"), 100).empty());
  EXPECT_FALSE(NextIntervalEnd(dag, T("2026-12-01T00:00:00Z")).has_value());
  // catchup makes no difference.
  dag.catchup = false;
  EXPECT_EQ(DueIntervals(dag, std::nullopt, T("2026-12-01T00:00:00Z"), 100).size(), 1u);
  dag.end_date = T("2026-10-01T00:00:00Z");
  EXPECT_TRUE(DueIntervals(dag, std::nullopt, T("2026-12-01T00:00:00Z"), 100).empty());
}

TEST(RunScheduleTest, OnceWithoutStartDateRunsAtOnce) {
  Dag dag = Daily(false);
  dag.schedule = "@once";
  dag.start_date.reset();
  auto due = DueIntervals(dag, std::nullopt, T("2026-11-28T12:00:00Z"), 100);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].start, T("2026-11-28T12:00:00Z"));
  EXPECT_TRUE(DueIntervals(dag, due[0].start, T("2026-11-29T12:00:00Z"), 100).empty());
}

}  // namespace
}  // namespace nightshift

// A state store that refuses commits (disk full, read-only, I/O error): the retry delay, the
// rate of log lines, what the API is told, and the loop that waits instead of spinning.
#include "scheduler/commit_health.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <string>
#include <vector>

#include "scheduler/scheduler_loop.h"
#include "tests/unit/scheduler/fakes.h"

namespace nightshift {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing_fakes::FakeClock;

const Status kFull = Status::Unavailable("COMMIT: database or disk is full");

TEST(CommitRetryDelayTest, GrowsFrom50msByDoublingToACapOf5s) {
  EXPECT_EQ(CommitRetryDelay(0), milliseconds(0));
  std::vector<int64_t> delays;
  for (int failures = 1; failures <= 9; ++failures) delays.push_back(CommitRetryDelay(failures).count());
  EXPECT_EQ(delays, (std::vector<int64_t>{50, 100, 200, 400, 800, 1600, 3200, 5000, 5000}));
  // However long the store stays full.
  EXPECT_EQ(CommitRetryDelay(1000000), milliseconds(5000));
}

TEST(CommitRetryDelayTest, AFullDiskForAMinuteCostsAFewDozenTriesNotAMillion) {
  int tries = 0;
  milliseconds waited{0};
  while (waited < seconds(60)) waited += CommitRetryDelay(++tries);
  EXPECT_LT(tries, 20);
}

TEST(CommitHealthTest, HealthyUntilACommitFails) {
  CommitHealth health;
  EXPECT_EQ(health.failures(), 0);
  EXPECT_EQ(health.Problem(), std::nullopt);
  EXPECT_EQ(health.RetryDelay(), milliseconds(0));
  EXPECT_EQ(health.RecordSuccess(), std::nullopt) << "nothing to say when nothing was wrong";
}

TEST(CommitHealthTest, TheProblemNamesTheErrorTheCountAndTheFirstFailure) {
  FakeClock clock;
  CommitHealth health;
  ASSERT_TRUE(health.RecordFailure(kFull, clock.now));
  clock.now += seconds(3);
  health.RecordFailure(kFull, clock.now);
  clock.now += seconds(1);
  health.RecordFailure(Status::Unavailable("COMMIT: disk I/O error"), clock.now);
  EXPECT_EQ(health.failures(), 3);
  EXPECT_EQ(health.RetryDelay(), milliseconds(200));
  EXPECT_EQ(health.Problem(), "state store cannot commit: COMMIT: disk I/O error (3 failures since 2026-11-28T12:00:00Z)");
}

TEST(CommitHealthTest, LogsTheFirstFailureAtOnceThenOneLinePerIntervalWithTheCount) {
  FakeClock clock;
  CommitHealth health;
  std::vector<std::string> lines;
  // A failure every 50 ms for 25 s: 500 failures.
  for (int i = 0; i < 500; ++i) {
    if (auto line = health.RecordFailure(kFull, clock.now)) lines.push_back(*line);
    clock.now += milliseconds(50);
  }
  ASSERT_EQ(lines.size(), 3u);  // at 0 s, 10 s and 20 s
  EXPECT_EQ(lines[0], "state store cannot commit: COMMIT: database or disk is full (1 failure since 2026-11-28T12:00:00Z)");
  EXPECT_EQ(lines[1],
            "state store cannot commit: COMMIT: database or disk is full (200 failures since 2026-11-28T12:00:00Z)");
  EXPECT_EQ(lines[2],
            "state store cannot commit: COMMIT: database or disk is full (200 failures since 2026-11-28T12:00:10Z)");
  EXPECT_EQ(health.failures(), 500);
}

TEST(CommitHealthTest, TheFirstSuccessClearsTheProblemAndResetsTheDelay) {
  FakeClock clock;
  CommitHealth health;
  for (int i = 0; i < 8; ++i) health.RecordFailure(kFull, clock.now);
  EXPECT_EQ(health.RetryDelay(), milliseconds(5000));
  EXPECT_EQ(health.RecordSuccess(), "state store commits again, after 8 failures since 2026-11-28T12:00:00Z");
  EXPECT_EQ(health.Problem(), std::nullopt);
  EXPECT_EQ(health.RetryDelay(), milliseconds(0));
  // A new problem starts over: logged at once, counted from one, delay from 50 ms.
  clock.now += seconds(1);
  EXPECT_EQ(health.RecordFailure(kFull, clock.now),
            "state store cannot commit: COMMIT: database or disk is full (1 failure since 2026-11-28T12:00:01Z)");
  EXPECT_EQ(health.RetryDelay(), milliseconds(50));
}

// The loop with a pass that fails while `full` is set. The fake clock decides when a retry is
// due; io.poll() runs only what is ready, so nothing here waits on real time.
class LoopTest : public ::testing::Test {
 protected:
  LoopTest()
      : loop_(io_,
              [this]() -> Result<std::optional<TimePoint>> {
                ++passes_;
                if (full_) return kFull;
                return std::optional<TimePoint>();
              },
              clock_) {}

  void Poll() {
    io_.restart();
    io_.poll();
  }

  boost::asio::io_context io_;
  FakeClock clock_;
  bool full_ = true;
  int passes_ = 0;
  SchedulerLoop loop_;
};

TEST_F(LoopTest, WakesWhileCommitsFailWaitForTheRetryInsteadOfRunningAPassAtOnce) {
  loop_.Wake();
  Poll();
  ASSERT_EQ(passes_, 1);
  EXPECT_EQ(loop_.commit_health().failures(), 1);
  // Executor events and triggers keep waking the loop: no pass before the retry is due.
  for (int i = 0; i < 1000; ++i) {
    loop_.Wake();
    Poll();
  }
  EXPECT_EQ(passes_, 1);
  clock_.now += milliseconds(49);
  loop_.Wake();
  Poll();
  EXPECT_EQ(passes_, 1);
  clock_.now += milliseconds(1);
  loop_.Wake();
  Poll();
  EXPECT_EQ(passes_, 2);
  // The second failure doubles the wait.
  clock_.now += milliseconds(99);
  loop_.Wake();
  Poll();
  EXPECT_EQ(passes_, 2);
  clock_.now += milliseconds(1);
  loop_.Wake();
  Poll();
  EXPECT_EQ(passes_, 3);
  EXPECT_TRUE(loop_.commit_health().Problem().has_value());
}

TEST_F(LoopTest, TheFirstCommittedPassEndsTheProblemAndWakesRunPassesAtOnceAgain) {
  loop_.Wake();
  Poll();
  ASSERT_EQ(passes_, 1);
  full_ = false;
  clock_.now += milliseconds(50);
  loop_.Wake();
  Poll();
  EXPECT_EQ(passes_, 2);
  EXPECT_EQ(loop_.commit_health().Problem(), std::nullopt);
  loop_.Wake();
  Poll();
  EXPECT_EQ(passes_, 3);
}

TEST_F(LoopTest, AChangeTheStoreRefusedCountsAndDelaysPassesLikeAFailedPass) {
  loop_.CommitFailed(kFull);
  EXPECT_EQ(loop_.commit_health().failures(), 1);
  ASSERT_TRUE(loop_.commit_health().Problem().has_value());
  loop_.Wake();
  Poll();
  EXPECT_EQ(passes_, 0);
  full_ = false;
  clock_.now += milliseconds(50);
  loop_.Wake();
  Poll();
  EXPECT_EQ(passes_, 1);
  EXPECT_EQ(loop_.commit_health().Problem(), std::nullopt);
}

}  // namespace
}  // namespace nightshift

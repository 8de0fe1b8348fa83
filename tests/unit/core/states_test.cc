#include "core/states.h"

#include <gtest/gtest.h>

#include <string>

namespace nightshift {
namespace {

using S = TaskState;

TEST(StatesTest, RunStateNamesRoundTrip) {
  for (RunState s : {RunState::kQueued, RunState::kRunning, RunState::kSuccess, RunState::kFailed}) {
    std::optional<RunState> back = ParseRunState(ToString(s));
    ASSERT_TRUE(back.has_value()) << ToString(s);
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(ToString(RunState::kQueued), "queued");
  EXPECT_EQ(ToString(RunState::kFailed), "failed");
  EXPECT_FALSE(ParseRunState("Running").has_value());  // tokens are exact, lowercase
  EXPECT_FALSE(ParseRunState("").has_value());
}

TEST(StatesTest, TaskStateNamesRoundTrip) {
  const std::pair<S, std::string_view> names[] = {
      {S::kScheduled, "scheduled"},
      {S::kQueued, "queued"},
      {S::kRunning, "running"},
      {S::kSuccess, "success"},
      {S::kFailed, "failed"},
      {S::kUpForRetry, "up_for_retry"},
      {S::kUpstreamFailed, "upstream_failed"},
      {S::kSkipped, "skipped"},
      {S::kDeferred, "deferred"},
  };
  for (const auto& [state, name] : names) {
    EXPECT_EQ(ToString(state), name);
    std::optional<S> back = ParseTaskState(name);
    ASSERT_TRUE(back.has_value()) << name;
    EXPECT_EQ(*back, state);
  }
  EXPECT_FALSE(ParseTaskState("up-for-retry").has_value());
}

TEST(StatesTest, Finished) {
  EXPECT_TRUE(IsFinished(RunState::kSuccess));
  EXPECT_TRUE(IsFinished(RunState::kFailed));
  EXPECT_FALSE(IsFinished(RunState::kQueued));
  EXPECT_FALSE(IsFinished(RunState::kRunning));
  for (S s : {S::kSuccess, S::kFailed, S::kUpstreamFailed, S::kSkipped})
    EXPECT_TRUE(IsFinished(s)) << ToString(s);
  for (S s : {S::kScheduled, S::kQueued, S::kRunning, S::kUpForRetry, S::kDeferred})
    EXPECT_FALSE(IsFinished(s)) << ToString(s);
}

TEST(StatesTest, TheNormalLifeOfATaskIsLegal) {
  EXPECT_TRUE(IsLegalTransition(S::kScheduled, S::kQueued));
  EXPECT_TRUE(IsLegalTransition(S::kQueued, S::kRunning));
  EXPECT_TRUE(IsLegalTransition(S::kRunning, S::kSuccess));
  EXPECT_TRUE(IsLegalTransition(S::kRunning, S::kFailed));
  EXPECT_TRUE(IsLegalTransition(S::kRunning, S::kUpForRetry));
  EXPECT_TRUE(IsLegalTransition(S::kUpForRetry, S::kQueued));
  EXPECT_TRUE(IsLegalTransition(S::kScheduled, S::kUpstreamFailed));
  EXPECT_TRUE(IsLegalTransition(S::kScheduled, S::kSkipped));
}

TEST(StatesTest, ClearingAndMarkingFinishedTasksIsLegal) {
  for (S s : {S::kSuccess, S::kFailed, S::kUpstreamFailed, S::kSkipped}) {
    EXPECT_TRUE(IsLegalTransition(s, S::kScheduled)) << ToString(s);  // clear
  }
  EXPECT_TRUE(IsLegalTransition(S::kFailed, S::kSuccess));  // mark success
  EXPECT_TRUE(IsLegalTransition(S::kSuccess, S::kFailed));  // mark failed
}

// A run that fails skips what still waits, a retry included; a standby that never got its
// slot included.
TEST(StatesTest, WaitingTasksOfAFailedRunAreSkipped) {
  EXPECT_TRUE(IsLegalTransition(S::kUpForRetry, S::kSkipped));
  EXPECT_TRUE(IsLegalTransition(S::kQueued, S::kSkipped));
}

// Contract part two: a task that waits outside the DAG, and a try that exits with its
// skip_on_exit_code.
TEST(StatesTest, DeferredAndSkipOnExitCodeHaveTheirRows) {
  EXPECT_TRUE(IsLegalTransition(S::kScheduled, S::kDeferred));
  EXPECT_TRUE(IsLegalTransition(S::kDeferred, S::kQueued));
  EXPECT_TRUE(IsLegalTransition(S::kDeferred, S::kFailed));
  EXPECT_TRUE(IsLegalTransition(S::kDeferred, S::kSkipped));
  EXPECT_FALSE(IsLegalTransition(S::kDeferred, S::kRunning));
  EXPECT_FALSE(IsLegalTransition(S::kRunning, S::kDeferred));
  EXPECT_TRUE(IsLegalTransition(S::kRunning, S::kSkipped));
}

TEST(StatesTest, ShortcutsAreIllegal) {
  EXPECT_FALSE(IsLegalTransition(S::kScheduled, S::kRunning));  // must be queued first
  EXPECT_FALSE(IsLegalTransition(S::kSuccess, S::kRunning));    // finished tasks are cleared, not resumed
  EXPECT_FALSE(IsLegalTransition(S::kFailed, S::kQueued));
  EXPECT_FALSE(IsLegalTransition(S::kRunning, S::kQueued));
  EXPECT_FALSE(IsLegalTransition(S::kRunning, S::kRunning));
  EXPECT_FALSE(IsLegalTransition(S::kSkipped, S::kUpForRetry));
}

}  // namespace
}  // namespace nightshift

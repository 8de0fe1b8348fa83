#include "scheduler/trigger_rules.h"

#include <gtest/gtest.h>

#include <vector>

namespace nightshift {
namespace {

using D = TriggerDecision;
using S = TaskState;

D Eval(TriggerRule rule, std::vector<S> upstream) { return EvaluateTriggerRule(rule, UpstreamCounts::Of(upstream)); }

TEST(TriggerRulesTest, NoUpstreamIsAlwaysReady) {
  for (size_t i = 0; i < TriggerRuleNames().size(); ++i) {
    EXPECT_EQ(Eval(static_cast<TriggerRule>(i), {}), D::kReady) << TriggerRuleNames()[i];
  }
}

TEST(TriggerRulesTest, AllSuccess) {
  EXPECT_EQ(Eval(TriggerRule::kAllSuccess, {S::kSuccess, S::kSuccess}), D::kReady);
  EXPECT_EQ(Eval(TriggerRule::kAllSuccess, {S::kSuccess, S::kRunning}), D::kWait);
  EXPECT_EQ(Eval(TriggerRule::kAllSuccess, {S::kFailed, S::kRunning}), D::kUpstreamFailed);
  EXPECT_EQ(Eval(TriggerRule::kAllSuccess, {S::kUpstreamFailed, S::kSuccess}), D::kUpstreamFailed);
  EXPECT_EQ(Eval(TriggerRule::kAllSuccess, {S::kSkipped, S::kSuccess}), D::kSkipped);
  EXPECT_EQ(Eval(TriggerRule::kAllSuccess, {S::kUpForRetry}), D::kWait);
}

TEST(TriggerRulesTest, AllFailed) {
  EXPECT_EQ(Eval(TriggerRule::kAllFailed, {S::kFailed, S::kUpstreamFailed}), D::kReady);
  EXPECT_EQ(Eval(TriggerRule::kAllFailed, {S::kFailed, S::kRunning}), D::kWait);
  EXPECT_EQ(Eval(TriggerRule::kAllFailed, {S::kFailed, S::kSuccess}), D::kSkipped);
  EXPECT_EQ(Eval(TriggerRule::kAllFailed, {S::kSkipped}), D::kSkipped);
}

TEST(TriggerRulesTest, AllDone) {
  EXPECT_EQ(Eval(TriggerRule::kAllDone, {S::kFailed, S::kSuccess, S::kSkipped, S::kUpstreamFailed}), D::kReady);
  EXPECT_EQ(Eval(TriggerRule::kAllDone, {S::kFailed, S::kQueued}), D::kWait);
  EXPECT_EQ(Eval(TriggerRule::kAllDone, {S::kUpForRetry}), D::kWait);
}

TEST(TriggerRulesTest, OneSuccess) {
  EXPECT_EQ(Eval(TriggerRule::kOneSuccess, {S::kSuccess, S::kRunning}), D::kReady);
  EXPECT_EQ(Eval(TriggerRule::kOneSuccess, {S::kFailed, S::kRunning}), D::kWait);
  EXPECT_EQ(Eval(TriggerRule::kOneSuccess, {S::kFailed, S::kSkipped}), D::kUpstreamFailed);
  EXPECT_EQ(Eval(TriggerRule::kOneSuccess, {S::kSkipped, S::kSkipped}), D::kSkipped);
}

TEST(TriggerRulesTest, OneFailed) {
  EXPECT_EQ(Eval(TriggerRule::kOneFailed, {S::kFailed, S::kRunning}), D::kReady);
  EXPECT_EQ(Eval(TriggerRule::kOneFailed, {S::kUpstreamFailed, S::kRunning}), D::kReady);
  EXPECT_EQ(Eval(TriggerRule::kOneFailed, {S::kSuccess, S::kRunning}), D::kWait);
  EXPECT_EQ(Eval(TriggerRule::kOneFailed, {S::kSuccess, S::kSkipped}), D::kSkipped);
}

TEST(TriggerRulesTest, NoneFailed) {
  EXPECT_EQ(Eval(TriggerRule::kNoneFailed, {S::kSuccess, S::kSkipped}), D::kReady);
  EXPECT_EQ(Eval(TriggerRule::kNoneFailed, {S::kSkipped, S::kSkipped}), D::kReady);
  EXPECT_EQ(Eval(TriggerRule::kNoneFailed, {S::kSuccess, S::kRunning}), D::kWait);
  EXPECT_EQ(Eval(TriggerRule::kNoneFailed, {S::kFailed, S::kRunning}), D::kUpstreamFailed);
}

TEST(TriggerRulesTest, NoneFailedMinOneSuccess) {
  EXPECT_EQ(Eval(TriggerRule::kNoneFailedMinOneSuccess, {S::kSuccess, S::kSkipped}), D::kReady);
  EXPECT_EQ(Eval(TriggerRule::kNoneFailedMinOneSuccess, {S::kSkipped, S::kSkipped}), D::kSkipped);
  EXPECT_EQ(Eval(TriggerRule::kNoneFailedMinOneSuccess, {S::kUpstreamFailed, S::kSuccess}), D::kUpstreamFailed);
  EXPECT_EQ(Eval(TriggerRule::kNoneFailedMinOneSuccess, {S::kSuccess, S::kScheduled}), D::kWait);
}

TEST(TriggerRulesTest, NoneSkipped) {
  EXPECT_EQ(Eval(TriggerRule::kNoneSkipped, {S::kSuccess, S::kFailed}), D::kReady);
  EXPECT_EQ(Eval(TriggerRule::kNoneSkipped, {S::kSkipped, S::kRunning}), D::kSkipped);
  EXPECT_EQ(Eval(TriggerRule::kNoneSkipped, {S::kSuccess, S::kRunning}), D::kWait);
}

TEST(TriggerRulesTest, AlwaysRunsWithoutWaiting) {
  EXPECT_EQ(Eval(TriggerRule::kAlways, {S::kRunning, S::kScheduled}), D::kReady);
  EXPECT_EQ(Eval(TriggerRule::kAlways, {S::kFailed}), D::kReady);
}

}  // namespace
}  // namespace nightshift

#include "scheduler/retry_policy.h"

#include <gtest/gtest.h>

namespace nightshift {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

TEST(RetryPolicyTest, FixedDelay) {
  Task t;
  t.retry_delay = seconds(10);
  EXPECT_EQ(RetryDelay(t, 1), seconds(10));
  EXPECT_EQ(RetryDelay(t, 5), seconds(10));
}

TEST(RetryPolicyTest, ExponentialBackoffDoublesAndIsCapped) {
  Task t;
  t.retry_delay = seconds(10);
  t.retry_exponential_backoff = true;
  EXPECT_EQ(RetryDelay(t, 1), seconds(10));
  EXPECT_EQ(RetryDelay(t, 2), seconds(20));
  EXPECT_EQ(RetryDelay(t, 3), seconds(40));
  t.max_retry_delay = seconds(30);
  EXPECT_EQ(RetryDelay(t, 3), seconds(30));
  EXPECT_EQ(RetryDelay(t, 60), seconds(30));
}

TEST(RetryPolicyTest, ManyFailuresDoNotOverflow) {
  Task t;
  t.retry_delay = minutes(5);
  t.retry_exponential_backoff = true;
  EXPECT_GT(RetryDelay(t, 1000), minutes(5));
  EXPECT_LE(RetryDelay(t, 1000), std::chrono::hours(24 * 365 * 2));
}

}  // namespace
}  // namespace nightshift

#include "app/progress_bar.h"

#include <gtest/gtest.h>

namespace nightshift {
namespace {

TEST(ProgressBarTest, DrawsCountsAndTimeLeft) {
  EXPECT_EQ(ProgressBarLine(0, 10, 2, 0, 0.0), "[..............................] 0/10 done, 2 running, 0 failed, 0.0s");
  EXPECT_EQ(ProgressBarLine(5, 10, 2, 1, 10.0),
            "[###############...............] 5/10 done, 2 running, 1 failed, 10.0s, ~10s left");
  EXPECT_EQ(ProgressBarLine(10, 10, 0, 0, 12.34), "[##############################] 10/10 done, 0 running, 0 failed, 12.3s");
  EXPECT_EQ(ProgressBarLine(0, 0, 0, 0, 1.0), "[..............................] 0/0 done, 0 running, 0 failed, 1.0s");
}

}  // namespace
}  // namespace nightshift

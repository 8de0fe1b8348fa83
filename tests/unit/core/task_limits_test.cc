#include "core/task_limits.h"

#include <gtest/gtest.h>

namespace nightshift {
namespace {

using std::chrono::seconds;

TEST(ByteSizeTest, ReadsBinaryAndDecimalUnits) {
  EXPECT_EQ(ParseByteSize("1048576").value(), 1048576);
  EXPECT_EQ(ParseByteSize("100B").value(), 100);
  EXPECT_EQ(ParseByteSize("512K").value(), 512 * 1024);
  EXPECT_EQ(ParseByteSize("100MiB").value(), 100 << 20);
  EXPECT_EQ(ParseByteSize("100mb").value(), 100'000'000);
  EXPECT_EQ(ParseByteSize("4G").value(), int64_t{4} << 30);
  EXPECT_EQ(ParseByteSize("4 GB").value(), 4'000'000'000);
  EXPECT_EQ(ParseByteSize("1.5GiB").value(), int64_t{3} << 29);
  EXPECT_EQ(ParseByteSize("2TiB").value(), int64_t{2} << 40);
}

TEST(ByteSizeTest, RefusesWhatIsNotASize) {
  for (const char* bad : {"", "MB", "-1", "1.2.3", ".5M", "5.M", "10 parsecs", "1e9", "99999999999999999999T",
                          "123456789012345678901"}) {
    Result<int64_t> size = ParseByteSize(bad);
    EXPECT_FALSE(size.ok()) << bad;
    EXPECT_TRUE(size.status().IsInvalidArgument()) << bad;
  }
  EXPECT_EQ(ParseByteSize("10 parsecs").status().message(),
            "invalid size \"10 parsecs\": unknown unit \"parsecs\" (units: B, K, M, G, T, KiB.., KB..)");
}

TEST(ByteSizeTest, FormatsTheLargestExactBinaryUnit) {
  EXPECT_EQ(FormatByteSize(100 << 20), "100MiB");
  EXPECT_EQ(FormatByteSize(int64_t{4} << 30), "4GiB");
  EXPECT_EQ(FormatByteSize(1536), "1536");
  EXPECT_EQ(FormatByteSize(1500), "1500");
  for (int64_t n : {int64_t{1}, int64_t{1023}, int64_t{1} << 20, int64_t{5} << 40, int64_t{100'000'000}}) {
    EXPECT_EQ(ParseByteSize(FormatByteSize(n)).value(), n);
  }
}

TEST(TaskLimitsTest, FieldsSetInTheOverrideWinOneByOne) {
  TaskLimits config;
  config.log_size = 1000;
  config.cpu_time = seconds(60);
  config.nice = 5;
  TaskLimits task;
  task.cpu_time = seconds(10);
  task.open_files = 64;
  TaskLimits merged = config.OverriddenBy(task);
  EXPECT_EQ(merged.log_size, 1000);
  EXPECT_EQ(merged.cpu_time, seconds(10));
  EXPECT_EQ(merged.open_files, 64);
  EXPECT_EQ(merged.nice, 5);
  EXPECT_FALSE(merged.address_space.has_value());
  EXPECT_EQ(merged.DescribeProcessLimits(), "cpu_time=10s, open_files=64, nice=5");
  EXPECT_EQ(TaskLimits{}.DescribeProcessLimits(), "");
}

}  // namespace
}  // namespace nightshift

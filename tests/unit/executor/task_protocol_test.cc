#include "executor/task_protocol.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "executor/local_executor.h"
#include "executor/task_wrapper.h"

namespace nightshift {
namespace {

TEST(ProgressDirectiveTest, ParsesFractionsAndPercentages) {
  EXPECT_EQ(ParseProgressDirective("::progress 5/10"), 0.5);
  EXPECT_EQ(ParseProgressDirective("::progress 42%"), 0.42);
  EXPECT_EQ(ParseProgressDirective("::progress  3 / 4 \r"), 0.75);
  EXPECT_EQ(ParseProgressDirective("::progress 12.5%"), 0.125);
  EXPECT_EQ(ParseProgressDirective("::progress 20/10"), 1.0);  // clamped
  EXPECT_EQ(ParseProgressDirective("::progress 150%"), 1.0);
}

TEST(ProgressDirectiveTest, RejectsWhatIsNotADirective) {
  EXPECT_FALSE(ParseProgressDirective("progress 5/10"));
  EXPECT_FALSE(ParseProgressDirective("::progress"));
  EXPECT_FALSE(ParseProgressDirective("::progress5/10"));
  EXPECT_FALSE(ParseProgressDirective("::progress soon"));
  EXPECT_FALSE(ParseProgressDirective("::progress 1/0"));
  EXPECT_FALSE(ParseProgressDirective("::progress -1/4"));
  EXPECT_FALSE(ParseProgressDirective("::progress nan%"));
  EXPECT_FALSE(ParseProgressDirective("::progress 5/10 files"));
  EXPECT_FALSE(ParseProgressDirective(" ::progress 5/10"));
}

TEST(TaskWrapperArgsTest, RoundTripsThroughArgv) {
  TaskWrapperArgs args;
  args.log_path = "/l/1.log";
  args.status_path = "/l/1.log.status";
  args.pid_path = "/l/1.log.pid";
  args.progress_path = "/l/1.log.progress";
  args.cwd = "/work dir";
  args.kill_grace_ms = 2500;
  args.command = "echo \"a b\" && exit 3";
  std::vector<std::string> argv = args.ToArgv("/usr/bin/nightshift");
  ASSERT_GE(argv.size(), 2u);
  EXPECT_EQ(argv[1], kTaskWrapperCommand);
  EXPECT_EQ(argv[argv.size() - 2], "--");
  EXPECT_EQ(argv.back(), args.command);
  std::vector<const char*> c;
  for (const auto& s : argv) c.push_back(s.c_str());
  auto parsed = ParseTaskWrapperArgs(static_cast<int>(c.size()), c.data());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->log_path, args.log_path);
  EXPECT_EQ(parsed->status_path, args.status_path);
  EXPECT_EQ(parsed->pid_path, args.pid_path);
  EXPECT_EQ(parsed->progress_path, args.progress_path);
  EXPECT_EQ(parsed->cwd, args.cwd);
  EXPECT_EQ(parsed->kill_grace_ms, 2500);
  EXPECT_EQ(parsed->command, args.command);
}

TEST(TaskWrapperArgsTest, LimitsRoundTripThroughArgv) {
  TaskWrapperArgs args{"/l/1.log", "/l/1.log.status", "/l/1.log.pid", "", "", 100, "true", {}};
  args.limits.log_size = 4096;
  args.limits.cpu_time = std::chrono::milliseconds(1500);
  args.limits.address_space = int64_t{4} << 30;
  args.limits.open_files = 256;
  args.limits.nice = -3;
  std::vector<std::string> argv = args.ToArgv("ns");
  std::vector<const char*> c;
  for (const auto& s : argv) c.push_back(s.c_str());
  auto parsed = ParseTaskWrapperArgs(static_cast<int>(c.size()), c.data());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->limits, args.limits);
  // Unset limits are not passed, and read back unset.
  args.limits = {};
  argv = args.ToArgv("ns");
  c.clear();
  for (const auto& s : argv) c.push_back(s.c_str());
  EXPECT_EQ(ParseTaskWrapperArgs(static_cast<int>(c.size()), c.data())->limits, TaskLimits{});
}

TEST(TaskWrapperArgsTest, RejectsBadLimits) {
  for (std::vector<const char*> bad : {std::vector<const char*>{"--log-size", "0"}, {"--cpu-time", "soon"},
                                       {"--open-files", "-1"}, {"--nice", "20"}, {"--address-space", "4G"}}) {
    std::vector<const char*> argv = {"ns", "__task-wrapper", "--log", "l", "--status", "s", "--pid-file", "p"};
    argv.insert(argv.end(), bad.begin(), bad.end());
    argv.insert(argv.end(), {"--", "true"});
    EXPECT_FALSE(ParseTaskWrapperArgs(static_cast<int>(argv.size()), argv.data()).ok()) << bad[0] << " " << bad[1];
  }
}

TEST(TaskProtocolTest, WrapperErrorLineRoundTrips) {
  EXPECT_EQ(FormatWrapperError("cannot open log /x: Read-only file system"),
            "error cannot open log /x: Read-only file system\n");
  EXPECT_EQ(ParseWrapperError("error cannot open log /x: Read-only file system"),
            "cannot open log /x: Read-only file system");
  EXPECT_EQ(FormatWrapperError("two\nlines"), "error two lines\n");
  EXPECT_EQ(ParseWrapperError("progress 0.5"), std::nullopt);
}

TEST(TaskWrapperArgsTest, RejectsIncompleteCommandLines) {
  auto parse = [](std::vector<const char*> argv) {
    return ParseTaskWrapperArgs(static_cast<int>(argv.size()), argv.data()).ok();
  };
  EXPECT_FALSE(parse({"ns", "__task-wrapper", "--log", "l", "--status", "s", "--pid-file", "p"}));
  EXPECT_FALSE(parse({"ns", "__task-wrapper", "--log", "l", "--status", "s", "--", "true"}));
  EXPECT_FALSE(
      parse({"ns", "__task-wrapper", "--log", "l", "--status", "s", "--pid-file", "p", "--", "a", "b"}));
  EXPECT_FALSE(parse({"ns", "__task-wrapper", "--bogus", "x", "--log", "l", "--status", "s", "--pid-file",
                      "p", "--", "true"}));
  EXPECT_FALSE(parse({"ns", "__task-wrapper", "--log", "l", "--status", "s", "--pid-file", "p",
                      "--kill-grace-ms", "soon", "--", "true"}));
  EXPECT_TRUE(
      parse({"ns", "__task-wrapper", "--log", "l", "--status", "s", "--pid-file", "p", "--", "true"}));
}

class TaskFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nightshift-protocol-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(TaskFilesTest, StatusFileRoundTrips) {
  const std::string path = dir_ + "/1.log.status";
  EXPECT_TRUE(ReadStatusFile(path).status().IsNotFound());
  ASSERT_TRUE(
      WriteFileAtomically(path, FormatStatusFile({143, "killed by signal 15\n(stopped)"}), true).ok());
  auto exit = ReadStatusFile(path);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_code, 143);
  EXPECT_EQ(exit->reason, "killed by signal 15 (stopped)");
  ASSERT_TRUE(WriteFileAtomically(path, "0\n", true).ok());
  EXPECT_EQ(ReadStatusFile(path)->exit_code, 0);
  EXPECT_EQ(ReadStatusFile(path)->reason, "");
  ASSERT_TRUE(WriteFileAtomically(path, "garbage\n", false).ok());
  EXPECT_EQ(ReadStatusFile(path).status().code(), Status::Code::kCorruption);
  // No temporary file is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), std::filesystem::directory_iterator()),
            1);
}

TEST(ProcStatTest, ParsesStateAndStartTimePastACommWithSpacesAndParentheses) {
  // Fields 3 (state) and 22 (start time) of /proc/PID/stat; comm is whatever the process chose.
  const std::string text =
      "4242 (my ) (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 "
      "10000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  auto stat = ParseProcStat(text);
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->state, 'S');
  EXPECT_EQ(stat->start_time, 987654u);
  EXPECT_FALSE(ParseProcStat("4242 (cut short) S 1 2 3"));
  EXPECT_FALSE(ParseProcStat("no parenthesis at all"));
  EXPECT_FALSE(ParseProcStat(""));
}

TEST_F(TaskFilesTest, PidFileRoundTripsAndMatchesProc) {
  const std::string path = dir_ + "/1.log.pid";
  auto self = ReadProcStat(::getpid());
  ASSERT_TRUE(self);
  EXPECT_NE(self->state, 'Z');
  ASSERT_TRUE(WriteFileAtomically(path, FormatPidFile({::getpid(), self->start_time}), true).ok());
  auto contents = ReadPidFile(path);
  ASSERT_TRUE(contents.ok());
  EXPECT_EQ(contents->pid, ::getpid());
  EXPECT_EQ(contents->start_time, self->start_time);
  EXPECT_TRUE(ReadPidFile(dir_ + "/missing").status().IsNotFound());
}

TEST(TaskProtocolTest, ProgressReportsRoundTrip) {
  EXPECT_EQ(FormatProgressReport(0.5), "progress 0.5\n");
  EXPECT_EQ(ParseProgressReport("progress 0.5"), 0.5);
  EXPECT_EQ(ParseProgressReport("progress " + FormatFraction(1.0 / 3)), 1.0 / 3);
  EXPECT_FALSE(ParseProgressReport("progress 2"));
  EXPECT_FALSE(ParseProgressReport("hello"));
}

}  // namespace
}  // namespace nightshift

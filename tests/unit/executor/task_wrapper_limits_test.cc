// The task wrapper's limits, run for real: this test binary doubles as the wrapper
// (wrapper_main_test.cc), so each test starts `executor_tests __task-wrapper ...` and reads the
// log and status file it leaves.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "executor/task_protocol.h"

namespace nightshift {
namespace {

using std::chrono::seconds;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct WrapperRun {
  int exit_code = -1;
  std::string stdout_text;  // the protocol lines the daemon would read
};

class TaskWrapperLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ns-wrapper-limits-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    args_.log_path = dir_ + "/try.log";
    args_.status_path = dir_ + "/try.log.status";
    args_.pid_path = dir_ + "/try.log.pid";
    args_.progress_path = dir_ + "/try.log.progress";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs the wrapper to its end.
  WrapperRun Run(const std::string& command) {
    args_.command = command;
    char exe[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    std::vector<std::string> argv_strings =
        args_.ToArgv(std::string(exe, n > 0 ? static_cast<size_t>(n) : 0));
    std::vector<char*> argv;
    for (std::string& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    int out[2];
    EXPECT_EQ(::pipe(out), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::close(out[1]);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    WrapperRun run;
    char buf[4096];
    for (ssize_t got; (got = ::read(out[0], buf, sizeof buf)) > 0;)
      run.stdout_text.append(buf, static_cast<size_t>(got));
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return run;
  }

  TaskExit Status() {
    auto exit = ReadStatusFile(args_.status_path);
    EXPECT_TRUE(exit.ok()) << exit.status().ToString();
    return exit.ok() ? *exit : TaskExit{-1, ""};
  }

  std::string dir_;
  TaskWrapperArgs args_;
};

TEST_F(TaskWrapperLimitsTest, LogStopsAtLogSizeAndSaysHowMuchWasDropped) {
  args_.limits.log_size = 1000;
  // 300,000 x's, a newline, "tail\n", then a progress line after the cut.
  WrapperRun run = Run("head -c 300000 /dev/zero | tr '\\0' x; echo; echo tail; echo '::progress 1/1'");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(Status().exit_code, 0);
  const std::string log = ReadFile(args_.log_path);
  EXPECT_EQ(log.substr(0, 1000), std::string(1000, 'x'));
  EXPECT_EQ(
      log.substr(1000),
      "\nnightshift: the log reached limits.log_size (1000); the rest of the task's output is dropped\n"
      "nightshift: 299006 bytes of output were dropped: the log is limited to 1000 (limits.log_size)\n");
  EXPECT_EQ(ReadProgressFile(args_.progress_path), 1.0);  // directives still count past the cut
}

TEST_F(TaskWrapperLimitsTest, OutputWithinLogSizeIsLeftAlone) {
  args_.limits.log_size = 12;
  Run("echo 12345; echo 6");
  EXPECT_EQ(ReadFile(args_.log_path), "12345\n6\n");
}

TEST_F(TaskWrapperLimitsTest, CommandOverItsCpuTimeIsKilledAndTheReasonNamesTheLimit) {
  args_.limits.cpu_time = seconds(1);
  WrapperRun run = Run("while :; do :; done");
  const TaskExit exit = Status();
  EXPECT_EQ(run.exit_code, exit.exit_code);
  EXPECT_NE(exit.exit_code, 0);
  EXPECT_NE(exit.reason.find("CPU time limit exceeded (limits.cpu_time: 1s)"), std::string::npos)
      << exit.reason;
}

TEST_F(TaskWrapperLimitsTest, CommandStartsWithTheRlimitsAndNiceness) {
  args_.limits.open_files = 64;
  args_.limits.address_space = int64_t{512} << 20;
  args_.limits.nice = 7;
  // dash's ulimit -v is in KiB; field 19 of /proc/PID/stat is the niceness.
  Run("ulimit -n; ulimit -v; cut -d' ' -f19 /proc/self/stat; exit 3");
  EXPECT_EQ(ReadFile(args_.log_path), "64\n524288\n7\n");
  const TaskExit exit = Status();
  EXPECT_EQ(exit.exit_code, 3);
  EXPECT_EQ(exit.reason, "exit code 3 (under limits: address_space=512MiB, open_files=64, nice=7)");
}

TEST_F(TaskWrapperLimitsTest, LogThatCannotBeWrittenFailsTheTryWithTheReason) {
  args_.log_path = "/dev/full";  // every write: ENOSPC, as on a full disk
  WrapperRun run = Run("echo lost; echo also lost");
  const TaskExit exit = Status();
  EXPECT_EQ(exit.exit_code, kWrapperSetupFailedExit);
  EXPECT_EQ(run.exit_code, kWrapperSetupFailedExit);
  EXPECT_EQ(exit.reason,
            "exit code 0; cannot write the log /dev/full: No space left on device (15 bytes of output lost)");
}

TEST_F(TaskWrapperLimitsTest, LogThatCannotBeOpenedIsReportedOnStdout) {
  args_.log_path = dir_ + "/missing-folder/try.log";
  WrapperRun run = Run("echo never");
  EXPECT_EQ(run.exit_code, kWrapperSetupFailedExit);
  EXPECT_FALSE(PathExists(args_.status_path));
  EXPECT_EQ(ParseWrapperError(run.stdout_text),
            "cannot open log " + args_.log_path + ": No such file or directory");
}

TEST(ReservedFileTest, CommitReplacesTheFileAndAnAbandonedOneLeavesNothing) {
  char tmpl[] = "/tmp/ns-reserved-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    auto reserved = ReservedFile::Create(dir + "/status", kStatusFileReserve);
    ASSERT_TRUE(reserved.ok()) << reserved.status().ToString();
    EXPECT_FALSE(PathExists(dir + "/status"));
    ASSERT_TRUE(reserved->Commit("3\nexit code 3\n", true).ok());
  }
  EXPECT_EQ(ReadFile(dir + "/status"), "3\nexit code 3\n");
  { auto abandoned = ReservedFile::Create(dir + "/other", kStatusFileReserve); }
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()),
            1);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nightshift

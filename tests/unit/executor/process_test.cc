// StartChild and GroupStop with real processes: what a try's command finds when it starts, and
// how a stop reaches everything it started.
#include "executor/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/unique_fd.h"
#include "executor/task_protocol.h"
#include "executor/try_output.h"

namespace nightshift {
namespace {

namespace fs = std::filesystem;

// A child started with its stdout and stderr on a pipe, read by the test.
class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The grandchildren of a stopped group come to us, so that the test can see how they died.
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    out_read_.Reset(fds[0]);
    out_write_.Reset(fds[1]);
    devnull_.Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(devnull_);
  }

  void TearDown() override {
    // Never 0 (or less): kill(0, ...) would hit our own process group, and that of ctest.
    for (pid_t leader : to_kill_) {
      if (leader > 0) ::kill(-leader, SIGKILL);
    }
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
  }

  // Starts /bin/sh -c `command`.
  pid_t Start(const std::string& command, ChildSpec spec = {}) {
    ShellArgv argv(command);
    spec.argv = argv.get();
    spec.stdin_fd = devnull_.get();
    spec.stdout_fd = spec.stderr_fd = out_write_.get();
    Result<StartedChild> child = StartChild(spec);
    EXPECT_TRUE(child.ok()) << child.status().ToString();
    if (!child.ok()) return -1;
    to_kill_.push_back(child->pid);
    return child->pid;
  }

  // The next line the child printed; "" at its end, or after 20 s.
  std::string ReadLine() {
    const int64_t deadline = MonotonicMs() + 20000;
    for (;;) {
      if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      pollfd p{out_read_.get(), POLLIN, 0};
      const int64_t left = deadline - MonotonicMs();
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return "";
      char buf[4096];
      const ssize_t n = ::read(out_read_.get(), buf, sizeof buf);
      if (n <= 0) return "";
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }

  // Everything the child printed, once it has exited and every writer is gone.
  std::string ReadAll() {
    out_write_.Reset();
    std::string all = buffer_;
    char buf[4096];
    for (ssize_t n; (n = ::read(out_read_.get(), buf, sizeof buf)) > 0;) all.append(buf, static_cast<size_t>(n));
    return all;
  }

  UniqueFd out_read_, out_write_, devnull_;
  std::string buffer_;
  std::vector<pid_t> to_kill_;  // group leaders
};

// Whether our child `pid` has exited (it stays a zombie: not reaped).
bool HasExited(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

bool Eventually(const std::function<bool()>& condition) {
  const int64_t deadline = MonotonicMs() + 20000;
  while (!condition()) {
    if (MonotonicMs() >= deadline) return false;
    ::poll(nullptr, 0, 10);
  }
  return true;
}

// The value of a "Name:\tVALUE" line of /proc/PID/status text.
std::string StatusField(const std::string& status, const std::string& name) {
  const auto at = status.find("\n" + name + ":\t");
  if (at == std::string::npos) return "?";
  const auto begin = at + name.size() + 3;
  return status.substr(begin, status.find('\n', begin) - begin);
}

TEST_F(ProcessTest, TheChildLeadsAProcessGroupOfItsOwn) {
  const pid_t pid = Start("echo started; exec sleep 1000");
  ASSERT_GT(pid, 0);
  ASSERT_EQ(ReadLine(), "started");
  EXPECT_EQ(::getpgid(pid), pid);
  EXPECT_NE(::getpgid(pid), ::getpgrp());
}

TEST_F(ProcessTest, TheChildHasDefaultSignalsAndNoneBlocked) {
  // What a daemon started from nohup, or the task wrapper with its signalfd, would pass on.
  struct sigaction ignore {}, old_term {}, old_usr1 {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGTERM, &ignore, &old_term), 0);
  ASSERT_EQ(::sigaction(SIGUSR1, &ignore, &old_usr1), 0);
  sigset_t blocked, old_mask;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGCHLD);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &blocked, &old_mask), 0);

  const pid_t pid = Start("exec cat /proc/self/status");

  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  ::sigaction(SIGUSR1, &old_usr1, nullptr);
  ASSERT_GT(pid, 0);
  const int wait_status = ReapChild(pid);
  ASSERT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) << DescribeWaitStatus(wait_status);
  const std::string status = ReadAll();
  EXPECT_EQ(StatusField(status, "SigIgn"), "0000000000000000") << status;
  EXPECT_EQ(StatusField(status, "SigBlk"), "0000000000000000") << status;
  EXPECT_EQ(StatusField(status, "SigCgt"), "0000000000000000") << status;
}

TEST_F(ProcessTest, TheChildGetsItsFolderEnvironmentAndLimits) {
  const std::string dir = fs::temp_directory_path().string();
  std::string path = "PATH=/usr/bin:/bin";
  std::string var = "NS_TEST_VAR=it is set";
  char* envp[] = {path.data(), var.data(), nullptr};
  TaskLimits limits;
  limits.cpu_time = Duration(1500);  // whole seconds, rounded up: 2, and SIGKILL 5 s later
  limits.open_files = 64;
  limits.address_space = int64_t{1} << 34;
  limits.nice = 7;
  ChildSpec spec;
  spec.cwd = dir.c_str();
  spec.envp = envp;
  spec.limits = ChildLimitsFor(limits);
  const pid_t pid = Start(
      "pwd; echo \"var=$NS_TEST_VAR home=${HOME:-unset}\"; ulimit -t; ulimit -Ht; ulimit -n; ulimit -v; "
      "cut -d' ' -f19 /proc/self/stat",
      spec);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(ReadLine(), fs::canonical(dir).string());
  EXPECT_EQ(ReadLine(), "var=it is set home=unset");  // the given environment, nothing of ours
  EXPECT_EQ(ReadLine(), "2");
  EXPECT_EQ(ReadLine(), "7");
  EXPECT_EQ(ReadLine(), "64");
  EXPECT_EQ(ReadLine(), std::to_string((int64_t{1} << 34) / 1024));
  EXPECT_EQ(ReadLine(), "7");
  EXPECT_EQ(ExitCodeOfWaitStatus(ReapChild(pid)), 0);
}

TEST_F(ProcessTest, AFolderThatCannotBeEnteredEndsTheChildWith127) {
  ChildSpec spec;
  spec.cwd = "/nonexistent/folder";
  const pid_t pid = Start("echo should not run", spec);
  ASSERT_GT(pid, 0);
  const int wait_status = ReapChild(pid);
  EXPECT_EQ(ExitCodeOfWaitStatus(wait_status), 127);
  EXPECT_EQ(ReadAll(), "nightshift: cannot change directory to /nonexistent/folder: No such file or directory\n");
}

TEST_F(ProcessTest, AFailedExecIsTheChildsExitOrTheCallersError) {
  char name[] = "no-such-program-anywhere";
  char* argv[] = {name, nullptr};
  ChildSpec spec;
  spec.file = name;
  spec.argv = argv;
  spec.search_path = true;
  spec.stdout_fd = spec.stderr_fd = out_write_.get();
  spec.exec_failure_is_error = true;
  Result<StartedChild> child = StartChild(spec);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().message(), "cannot run no-such-program-anywhere: No such file or directory");

  spec.exec_failure_is_error = false;
  child = StartChild(spec);
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  EXPECT_EQ(ExitCodeOfWaitStatus(ReapChild(child->pid)), 127);
  EXPECT_EQ(ReadAll(), "nightshift: cannot run no-such-program-anywhere: No such file or directory\n");
}

TEST_F(ProcessTest, TheStartTimeIsTheOneProcReports) {
  ChildSpec spec;
  spec.want_start_time = true;
  ShellArgv argv("exec sleep 1000");
  spec.argv = argv.get();
  Result<StartedChild> child = StartChild(spec);
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  to_kill_.push_back(child->pid);
  const std::optional<ProcStat> stat = ReadProcStat(child->pid);
  ASSERT_TRUE(stat);
  EXPECT_EQ(child->start_time, stat->start_time);
}

TEST_F(ProcessTest, AStopSendsSigtermToTheWholeGroupThenSigkillAfterTheGrace) {
  // The grandchild dies of the SIGTERM; the leader ignores it and so lives until the SIGKILL.
  const pid_t pid = Start("sleep 1000 & trap '' TERM; echo $!; wait $!; echo grandchild gone; exec sleep 1000");
  ASSERT_GT(pid, 0);
  const pid_t grandchild = std::stoi(ReadLine());
  GroupStop stop(pid);
  const int64_t began = MonotonicMs();
  ASSERT_TRUE(stop.Begin(300));
  EXPECT_FALSE(stop.Begin(300));  // once
  std::string line = ReadLine();
  if (line == "Terminated") line = ReadLine();  // the shell tells of its job's end
  EXPECT_EQ(line, "grandchild gone");
  EXPECT_FALSE(HasExited(pid)) << "the leader ended before its grace was over";
  EXPECT_TRUE(stop.stopping());
  EXPECT_FALSE(stop.killed());
  while (!stop.KillIfDue()) {
    ASSERT_GE(stop.MsUntilKill(), 0);
    ::poll(nullptr, 0, static_cast<int>(stop.MsUntilKill()));
  }
  EXPECT_GE(MonotonicMs() - began, 300);
  EXPECT_EQ(stop.MsUntilKill(), -1);
  const int wait_status = ReapChild(pid);
  ASSERT_TRUE(WIFSIGNALED(wait_status));
  EXPECT_EQ(WTERMSIG(wait_status), SIGKILL);
  EXPECT_FALSE(ReadProcStat(grandchild));  // reaped by the leader's `wait`
}

TEST_F(ProcessTest, TheSigkillReachesGrandchildrenThatIgnoreSigterm) {
  const pid_t pid = Start("trap '' TERM; sleep 1000 & echo $!; exec sleep 1000");
  ASSERT_GT(pid, 0);
  const pid_t grandchild = std::stoi(ReadLine());
  GroupStop stop(pid);
  ASSERT_TRUE(stop.Begin(50));
  while (!stop.KillIfDue()) ::poll(nullptr, 0, static_cast<int>(stop.MsUntilKill()));
  EXPECT_EQ(WTERMSIG(ReapChild(pid)), SIGKILL);
  // Ours now (we are a subreaper): its leader is gone.
  EXPECT_EQ(WTERMSIG(ReapChild(grandchild)), SIGKILL);
}

TEST_F(ProcessTest, WhatALeaderLeavesBehindIsKilledWhenItWasBeingStopped) {
  // The leader dies of the SIGTERM, its background process does not.
  const pid_t pid = Start("trap '' TERM; sleep 1000 & trap - TERM; echo $!; exec sleep 1000");
  ASSERT_GT(pid, 0);
  const pid_t grandchild = std::stoi(ReadLine());
  GroupStop stop(pid);
  ASSERT_TRUE(stop.Begin(60000));
  ASSERT_TRUE(Eventually([&] { return HasExited(pid); }));  // a zombie now
  stop.LeaderExited();
  EXPECT_EQ(WTERMSIG(ReapChild(pid)), SIGTERM);
  EXPECT_EQ(WTERMSIG(ReapChild(grandchild)), SIGKILL);
}

TEST_F(ProcessTest, AnAdoptedGroupIsNotSignalledOnceItsLeaderIsGone) {
  const pid_t pid = Start("exit 0");
  ASSERT_GT(pid, 0);
  UniqueFd pidfd(PidfdOpen(pid));
  ASSERT_TRUE(pidfd);
  ASSERT_TRUE(Eventually([&] { return HasExited(pid); }));
  EXPECT_TRUE(PidfdExited(pidfd.get()));
  GroupStop stop(pid, pidfd.get());
  EXPECT_FALSE(stop.Begin(1000));  // its pid could be another's by now: nothing is sent
  EXPECT_FALSE(stop.stopping());
  ReapChild(pid);
}

}  // namespace
}  // namespace nightshift

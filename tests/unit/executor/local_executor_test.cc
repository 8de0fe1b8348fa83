// LocalExecutor with real processes: the test binary is its own task wrapper (wrapper_main_test.cc).
// Tests run a real io_context until the event they expect arrives (with a generous deadline),
// never for a fixed time.
#include "executor/local_executor.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/sysinfo.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <climits>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "executor/task_protocol.h"
#include "executor/wrapper_spawner.h"
#include "tests/unit/executor/test_daemon.h"

namespace nightshift {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Kind = ExecutorEvent::Kind;

std::string SelfExe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "/proc/self/exe";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Gone for good: no such process, or a zombie (dead, only not yet reaped by whoever inherited
// it; kill(pid, 0) still succeeds on those, so it cannot tell).
bool ProcessGone(pid_t pid) {
  auto stat = ReadProcStat(pid);
  return !stat || stat->state == 'Z' || stat->state == 'X';
}

// Polls a condition outside our io_context (another process's state) until a deadline.
bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// One line from `fd`, or what came until the deadline.
std::string ReadLine(int fd, std::chrono::milliseconds timeout = 30s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string line;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 100) <= 0) continue;
    char c;
    if (::read(fd, &c, 1) != 1 || c == '\n') break;
    line.push_back(c);
  }
  return line;
}

class LocalExecutorTest : public ::testing::Test {
 protected:
  using WorkGuard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;

  void SetUp() override {
    char tmpl[] = "/tmp/nightshift-executor-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    StartDaemon();
  }

  void TearDown() override {
    StopDaemon();
    fs::remove_all(dir_);
  }

  // A "daemon": an io_context and an executor on it.
  void StartDaemon(size_t slots = 4) {
    io_ = std::make_unique<boost::asio::io_context>();
    guard_.emplace(io_->get_executor());
    LocalExecutorOptions options;
    options.slots = slots;
    options.wrapper_argv0 = SelfExe();
    options.kill_grace = 300ms;
    executor_ = std::make_unique<LocalExecutor>(*io_, options, [this] { ++notifications_; });
  }

  // The daemon goes away without waiting for anything, as after kill -9: nothing more is read
  // from the wrappers and their stdout pipes lose their reader.
  void StopDaemon() {
    executor_.reset();
    guard_.reset();
    io_.reset();
  }

  TaskSpec Spec(const std::string& task_id, const std::string& command) {
    TaskSpec spec;
    spec.key = TaskInstanceKey{"dag", "run", task_id, -1, 1};
    spec.command = command;
    spec.cwd = dir_;
    spec.log_path = dir_ + "/logs/" + task_id + "/1.log";
    return spec;
  }

  void Collect() {
    if (!executor_) return;
    for (ExecutorEvent& e : executor_->Drain()) events_.push_back(std::move(e));
  }

  bool RunUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      Collect();
      if (done()) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_->run_one_for(50ms);
    }
  }

  const ExecutorEvent* Find(Kind kind, const TaskInstanceKey& key) const {
    for (const ExecutorEvent& e : events_) {
      if (e.kind == kind && e.key == key) return &e;
    }
    return nullptr;
  }

  // Waits for the event and returns a copy (events_ may grow meanwhile).
  ExecutorEvent WaitFor(Kind kind, const TaskInstanceKey& key) {
    bool found = RunUntil([&] { return Find(kind, key) != nullptr; });
    EXPECT_TRUE(found) << "no event of kind " << static_cast<int>(kind) << " for " << key.ToString();
    return found ? *Find(kind, key) : ExecutorEvent{};
  }

  // The try's final event, kFinished or kLost.
  ExecutorEvent WaitForEnd(const TaskInstanceKey& key) {
    const ExecutorEvent* end = nullptr;
    bool found = RunUntil([&] {
      end = Find(Kind::kFinished, key);
      if (!end) end = Find(Kind::kLost, key);
      return end != nullptr;
    });
    EXPECT_TRUE(found) << "no end for " << key.ToString();
    return found ? *end : ExecutorEvent{};
  }

  // Opens the FIFO a task blocks on and tells it to go on.
  void OpenGate(const std::string& fifo) {
    int fd = -1;
    // ENXIO until the task has the FIFO open for reading (it is about to).
    ASSERT_TRUE(Eventually([&] { return (fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK)) >= 0; }));
    ASSERT_EQ(::write(fd, "go\n", 3), 3);
    ::close(fd);
  }

  std::string dir_;
  std::unique_ptr<boost::asio::io_context> io_;
  std::optional<WorkGuard> guard_;
  std::unique_ptr<LocalExecutor> executor_;
  std::vector<ExecutorEvent> events_;
  int notifications_ = 0;
};

TEST_F(LocalExecutorTest, ReportsExitCodes) {
  TaskSpec ok = Spec("ok", "exit 0");
  TaskSpec three = Spec("three", "exit 3");
  ASSERT_TRUE(executor_->Submit(ok).ok());
  ASSERT_TRUE(executor_->Submit(three).ok());
  EXPECT_EQ(executor_->FreeSlots(), 2u);

  ExecutorEvent started = WaitFor(Kind::kStarted, ok.key);
  ASSERT_TRUE(started.pid);
  EXPECT_GT(*started.pid, 0);
  ExecutorEvent end_ok = WaitForEnd(ok.key);
  ExecutorEvent end_three = WaitForEnd(three.key);
  EXPECT_EQ(end_ok.kind, Kind::kFinished);
  EXPECT_EQ(end_ok.exit_code, 0);
  EXPECT_EQ(end_three.kind, Kind::kFinished);
  EXPECT_EQ(end_three.exit_code, 3);
  EXPECT_EQ(end_three.reason, "exit code 3");
  EXPECT_GT(end_three.at.time_since_epoch().count(), 0);
  EXPECT_EQ(executor_->FreeSlots(), 4u);
  EXPECT_GT(notifications_, 0);
  // The wrapper recorded the result next to the log.
  EXPECT_EQ(ReadFile(three.log_path + ".status"), "3\nexit code 3\n");
  auto pid_file = ReadPidFile(three.log_path + ".pid");
  ASSERT_TRUE(pid_file.ok());
  EXPECT_EQ(pid_file->pid, *WaitFor(Kind::kStarted, three.key).pid);
}

TEST_F(LocalExecutorTest, StdoutAndStderrGoToTheLog) {
  TaskSpec spec = Spec("output", "echo out; echo err >&2; echo more; printf partial");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  EXPECT_EQ(WaitForEnd(spec.key).exit_code, 0);
  EXPECT_EQ(ReadFile(spec.log_path), "out\nerr\nmore\npartial");
}

TEST_F(LocalExecutorTest, ProgressLinesBecomeEventsNotLogLines) {
  TaskSpec spec = Spec("progress", "echo before; echo '::progress 5/10'; echo after; echo '::progress soon'");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.exit_code, 0);
  auto progress = std::find_if(events_.begin(), events_.end(),
                               [&](const ExecutorEvent& e) { return e.kind == Kind::kProgress; });
  ASSERT_NE(progress, events_.end());
  EXPECT_EQ(progress->progress, 0.5);
  // Progress is reported before the try's end.
  auto finished = std::find_if(events_.begin(), events_.end(),
                               [&](const ExecutorEvent& e) { return e.kind == Kind::kFinished; });
  EXPECT_LT(progress - events_.begin(), finished - events_.begin());
  // A malformed directive is an ordinary line.
  EXPECT_EQ(ReadFile(spec.log_path), "before\nafter\n::progress soon\n");
  EXPECT_EQ(ReadFile(spec.log_path + ".progress"), "0.5\n");
}

TEST_F(LocalExecutorTest, PercentProgress) {
  TaskSpec spec = Spec("percent", "echo '::progress 42%'; printf '::progress 100%%'");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  WaitForEnd(spec.key);
  std::vector<double> seen;
  for (const ExecutorEvent& e : events_) {
    if (e.kind == Kind::kProgress) seen.push_back(*e.progress);
  }
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), 1.0);  // a final directive without newline still counts
  EXPECT_EQ(ReadFile(spec.log_path), "");
}

TEST_F(LocalExecutorTest, EnvironmentAndWorkingDirectoryReachTheTask) {
  ::setenv("NS_TEST_INHERITED", "from the daemon", 1);
  ::setenv("NS_TEST_OVERRIDDEN", "daemon", 1);
  fs::create_directories(dir_ + "/work dir");
  TaskSpec spec = Spec("env",
                       "echo \"$GREETING\"; echo \"$NS_TEST_INHERITED\"; echo \"$NS_TEST_OVERRIDDEN\"; "
                       "echo \"$NIGHTSHIFT_OUTPUT\"; pwd");
  spec.env = {{"GREETING", "hello 'world' $HOME"}, {"NS_TEST_OVERRIDDEN", "task"}};
  spec.output_path = dir_ + "/out/output.json";
  spec.cwd = dir_ + "/work dir";
  ASSERT_TRUE(executor_->Submit(spec).ok());
  EXPECT_EQ(WaitForEnd(spec.key).exit_code, 0);
  EXPECT_EQ(ReadFile(spec.log_path), "hello 'world' $HOME\nfrom the daemon\ntask\n" + spec.output_path +
                                         "\n" + fs::canonical(spec.cwd).string() + "\n");
  EXPECT_TRUE(fs::is_directory(dir_ + "/out"));
  ::unsetenv("NS_TEST_INHERITED");
  ::unsetenv("NS_TEST_OVERRIDDEN");
}

TEST_F(LocalExecutorTest, MissingWorkingDirectoryFailsTheTry) {
  TaskSpec spec = Spec("badcwd", "echo never");
  spec.cwd = dir_ + "/no/such/dir";
  ASSERT_TRUE(executor_->Submit(spec).ok());
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished);
  EXPECT_EQ(end.exit_code, 127);
  std::string log = ReadFile(spec.log_path);
  EXPECT_TRUE(Contains(log, "cannot change directory to " + spec.cwd)) << log;
  EXPECT_FALSE(Contains(log, "never"));
}

TEST_F(LocalExecutorTest, CancelStopsTheWholeProcessGroup) {
  const std::string pids = dir_ + "/pids";
  TaskSpec spec = Spec("cancel", "sleep 1000 & echo $! >> '" + pids + "'; sleep 1000 & echo $! >> '" + pids +
                                     "'; echo $$ >> '" + pids + "'; echo '::progress 1/2'; wait");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  WaitFor(Kind::kProgress, spec.key);  // the pids are written
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());  // idempotent
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished);
  ASSERT_TRUE(end.exit_code == 143 || end.exit_code == 137) << end.exit_code.value_or(-1);
  EXPECT_TRUE(Contains(ReadFile(spec.log_path), "sending SIGTERM to the task's process group"));

  std::istringstream in(ReadFile(pids));
  std::vector<pid_t> task_pids;
  for (pid_t pid; in >> pid;) task_pids.push_back(pid);
  ASSERT_EQ(task_pids.size(), 3u);
  for (pid_t pid : task_pids) {
    EXPECT_TRUE(Eventually([&] { return ProcessGone(pid); })) << "pid " << pid << " survived";
  }
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());  // after the end too
}

TEST_F(LocalExecutorTest, CancelEscalatesToSigkill) {
  const std::string pid_file = dir_ + "/taskpid";
  TaskSpec spec =
      Spec("stubborn", "trap '' TERM; echo $$ > '" + pid_file + "'; echo '::progress 1/1'; sleep 1000");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  WaitFor(Kind::kProgress, spec.key);
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.exit_code, 137);
  EXPECT_TRUE(Contains(ReadFile(spec.log_path), "sending SIGKILL")) << ReadFile(spec.log_path);
  pid_t sh = std::stoi(ReadFile(pid_file));
  EXPECT_TRUE(Eventually([&] { return ProcessGone(sh); }));
}

TEST_F(LocalExecutorTest, CancelRightAfterSubmitStillRecordsAResult) {
  TaskSpec spec = Spec("early", "sleep 1000");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());  // the wrapper has most likely not even started
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_TRUE(end.exit_code == 143 || end.exit_code == 137) << end.exit_code.value_or(-1);
}

TEST_F(LocalExecutorTest, CancelOfAnUnknownKeyIsOk) {
  EXPECT_TRUE(executor_->Cancel(TaskInstanceKey{"no", "such", "task", -1, 1}).ok());
}

TEST_F(LocalExecutorTest, SlotsLimitSubmissions) {
  StopDaemon();
  StartDaemon(/*slots=*/1);
  TaskSpec first = Spec("first", "sleep 1000");
  ASSERT_TRUE(executor_->Submit(first).ok());
  EXPECT_EQ(executor_->FreeSlots(), 0u);
  EXPECT_EQ(executor_->Submit(Spec("second", "true")).code(), Status::Code::kBusy);
  ASSERT_TRUE(executor_->Cancel(first.key).ok());
  WaitForEnd(first.key);
  EXPECT_EQ(executor_->FreeSlots(), 1u);
}

TEST_F(LocalExecutorTest, NeverStartsATryTwice) {
  TaskSpec spec = Spec("once", "echo ran >> '" + dir_ + "/runs'; echo '::progress 1/1'; sleep 1000");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  EXPECT_TRUE(executor_->Submit(spec).IsAlreadyExists());  // running here
  WaitFor(Kind::kProgress, spec.key);

  // A second wrapper for the same log, started behind the executor's back, refuses to run.
  std::vector<std::string> argv_strings =
      TaskWrapperArgs{spec.log_path, spec.log_path + ".status", spec.log_path + ".pid", "", "", 100,
                      spec.command, {}}
          .ToArgv(SelfExe());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t second = 0;
  ASSERT_EQ(::posix_spawn(&second, argv[0], &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  ASSERT_EQ(::waitpid(second, &status, 0), second);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == kWrapperRefusedExit) << status;

  ASSERT_TRUE(executor_->Cancel(spec.key).ok());
  EXPECT_EQ(WaitForEnd(spec.key).kind, Kind::kFinished);
  EXPECT_EQ(ReadFile(dir_ + "/runs"), "ran\n");
  // Finished: its status is there, so the same try is not run again.
  EXPECT_TRUE(executor_->Submit(spec).IsAlreadyExists());
}

TEST_F(LocalExecutorTest, AdoptsATryWhoseDaemonDied) {
  const std::string gate = dir_ + "/gate";
  ASSERT_EQ(::mkfifo(gate.c_str(), 0600), 0);
  TaskSpec spec = Spec("survivor", "echo '::progress 1/2'; read line < '" + gate +
                                       "'; echo '::progress 2/2'; echo \"got $line\"; exit 7");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  const int64_t pid = *WaitFor(Kind::kStarted, spec.key).pid;
  WaitFor(Kind::kProgress, spec.key);

  StopDaemon();
  events_.clear();
  StartDaemon();
  // The wrapper still runs: the try must not start again.
  EXPECT_TRUE(executor_->Submit(spec).IsAlreadyExists());
  std::vector<RunningTask> tasks = {RunningTask{spec.key, pid, std::nullopt, spec.log_path}};
  std::vector<TaskInstanceKey> adopted = executor_->Adopt(tasks);
  ASSERT_EQ(adopted.size(), 1u);
  EXPECT_EQ(adopted[0], spec.key);
  EXPECT_EQ(executor_->FreeSlots(), 3u);
  EXPECT_EQ(WaitFor(Kind::kProgress, spec.key).progress, 0.5);  // from the progress file

  OpenGate(gate);
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_EQ(end.exit_code, 7);
  EXPECT_EQ(executor_->FreeSlots(), 4u);
  // With nobody reading its stdout any more, the wrapper carried on.
  EXPECT_EQ(ReadFile(spec.log_path), "got go\n");
  EXPECT_EQ(ReadFile(spec.log_path + ".progress"), "1\n");
}

TEST_F(LocalExecutorTest, AdoptsATryAfterTheDaemonIsKilledWithSigkill) {
  const std::string gate = dir_ + "/gate";
  ASSERT_EQ(::mkfifo(gate.c_str(), 0600), 0);
  const std::string log = dir_ + "/logs/killed/1.log";
  const std::string command = "echo '::progress 1/2'; read line < '" + gate + "'; echo \"got $line\"; exit 9";
  // A real daemon process (this binary in its test-daemon role), killed with -9.
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  std::vector<std::string> argv_strings = {SelfExe(), std::string(kTestDaemonCommand), log, command};
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  pid_t daemon = 0;
  ASSERT_EQ(::posix_spawn(&daemon, argv[0], &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  const std::string ready = ReadLine(out[0]);
  ::close(out[0]);
  ASSERT_TRUE(ready.starts_with("ready ")) << ready;
  const pid_t wrapper = std::stoi(ready.substr(6));
  ASSERT_EQ(::kill(daemon, SIGKILL), 0);
  ASSERT_EQ(::waitpid(daemon, nullptr, 0), daemon);
  EXPECT_FALSE(ProcessGone(wrapper));  // orphaned, not dead

  std::vector<RunningTask> tasks = {RunningTask{kTestDaemonKey, wrapper, std::nullopt, log}};
  ASSERT_EQ(executor_->Adopt(tasks).size(), 1u);
  OpenGate(gate);
  ExecutorEvent end = WaitForEnd(kTestDaemonKey);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_EQ(end.exit_code, 9);
  EXPECT_EQ(ReadFile(log), "got go\n");
}

TEST_F(LocalExecutorTest, AdoptsATryThatEndedWhileNobodyWatched) {
  const std::string gate = dir_ + "/gate";
  ASSERT_EQ(::mkfifo(gate.c_str(), 0600), 0);
  TaskSpec spec = Spec("unwatched", "echo '::progress 1/2'; read line < '" + gate + "'; exit 5");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  const pid_t pid = static_cast<pid_t>(*WaitFor(Kind::kStarted, spec.key).pid);
  WaitFor(Kind::kProgress, spec.key);

  StopDaemon();
  events_.clear();
  OpenGate(gate);
  // The wrapper is still this process's child, so its end can be awaited directly.
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(WEXITSTATUS(status), 5);

  StartDaemon();
  std::vector<RunningTask> tasks = {RunningTask{spec.key, pid, std::nullopt, spec.log_path}};
  EXPECT_TRUE(executor_->Adopt(tasks).empty());  // nothing to follow: the result is known
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished);
  EXPECT_EQ(end.exit_code, 5);
  EXPECT_EQ(executor_->FreeSlots(), 4u);
}

TEST_F(LocalExecutorTest, CancelsAnAdoptedTry) {
  const std::string pid_file = dir_ + "/taskpid";
  TaskSpec spec = Spec("adopted", "echo $$ > '" + pid_file + "'; echo '::progress 1/2'; sleep 1000");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  const int64_t pid = *WaitFor(Kind::kStarted, spec.key).pid;
  WaitFor(Kind::kProgress, spec.key);

  StopDaemon();
  events_.clear();
  StartDaemon();
  std::vector<RunningTask> tasks = {RunningTask{spec.key, pid, std::nullopt, spec.log_path}};
  ASSERT_EQ(executor_->Adopt(tasks).size(), 1u);
  EXPECT_EQ(executor_->Adopt(tasks).size(), 1u);  // again: still followed, once
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_EQ(end.exit_code, 143);
  pid_t sh = std::stoi(ReadFile(pid_file));
  EXPECT_TRUE(Eventually([&] { return ProcessGone(sh); }));
  int finished = 0;
  for (const ExecutorEvent& e : events_) finished += e.kind == Kind::kFinished;
  EXPECT_EQ(finished, 1);
}

TEST_F(LocalExecutorTest, DaemonDescriptorsDoNotReachTheTask) {
  // A descriptor the daemon left inheritable (think of a lock or a listening socket).
  int devnull = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(devnull, 0);
  int leaked = ::fcntl(devnull, F_DUPFD, 100);  // high, so that ls's own cannot be mistaken for it
  ::close(devnull);
  ASSERT_GE(leaked, 100);
  TaskSpec spec = Spec("fds", "ls /proc/$$/fd");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  EXPECT_EQ(WaitForEnd(spec.key).exit_code, 0);
  ::close(leaked);
  std::istringstream in(ReadFile(spec.log_path));
  std::vector<int> fds;
  for (int fd; in >> fd;) fds.push_back(fd);
  // ls itself holds one more, for the folder it lists.
  EXPECT_LE(fds.size(), 4u) << ReadFile(spec.log_path);
  EXPECT_EQ(std::count(fds.begin(), fds.end(), leaked), 0) << ReadFile(spec.log_path);
}

TEST_F(LocalExecutorTest, AdoptReportsLostTries) {
  // A pid that is gone, with no status.
  pid_t dead = ::fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  TaskSpec vanished = Spec("vanished", "true");
  fs::create_directories(fs::path(vanished.log_path).parent_path());
  ASSERT_TRUE(WriteFileAtomically(vanished.log_path + ".pid", FormatPidFile({dead, 12345}), false).ok());

  // A live pid that is not the wrapper any more: its start time differs.
  TaskSpec reused = Spec("reused", "true");
  fs::create_directories(fs::path(reused.log_path).parent_path());
  auto self = ReadProcStat(::getpid());
  ASSERT_TRUE(self);
  ASSERT_TRUE(
      WriteFileAtomically(reused.log_path + ".pid", FormatPidFile({::getpid(), self->start_time + 1}), false)
          .ok());

  // Pid and start time match, but the process is no wrapper of this try: a pid file from before
  // a reboot (older than the boot) whose numbers recur.
  TaskSpec rebooted = Spec("rebooted", "true");
  fs::create_directories(fs::path(rebooted.log_path).parent_path());
  ASSERT_TRUE(
      WriteFileAtomically(rebooted.log_path + ".pid", FormatPidFile({::getpid(), self->start_time}), false)
          .ok());
  struct sysinfo info {};
  ASSERT_EQ(::sysinfo(&info), 0);
  const auto before_boot = fs::file_time_type::clock::now() - std::chrono::seconds(info.uptime + 3600);
  fs::last_write_time(rebooted.log_path + ".pid", before_boot);

  // No pid file: the wrapper never started (a recorded pid that is no wrapper changes nothing).
  TaskSpec never = Spec("never", "true");

  // A status: finished while the daemon was away.
  TaskSpec finished = Spec("finished", "true");
  fs::create_directories(fs::path(finished.log_path).parent_path());
  ASSERT_TRUE(
      WriteFileAtomically(finished.log_path + ".status", FormatStatusFile({2, "exit code 2"}), true).ok());

  std::vector<RunningTask> tasks = {
      RunningTask{vanished.key, dead, std::nullopt, vanished.log_path},
      RunningTask{reused.key, ::getpid(), std::nullopt, reused.log_path},
      RunningTask{rebooted.key, std::nullopt, std::nullopt, rebooted.log_path},
      RunningTask{never.key, ::getpid(), std::nullopt, never.log_path},
      RunningTask{finished.key, std::nullopt, std::nullopt, finished.log_path},
  };
  EXPECT_TRUE(executor_->Adopt(tasks).empty());
  EXPECT_EQ(executor_->FreeSlots(), 4u);

  ExecutorEvent end = WaitForEnd(vanished.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_EQ(end.reason, "process vanished without a status");
  end = WaitForEnd(reused.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_EQ(end.reason, "process vanished without a status");
  end = WaitForEnd(rebooted.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_EQ(end.reason, "process vanished without a status");
  end = WaitForEnd(never.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_EQ(end.reason, "never started");
  end = WaitForEnd(finished.key);
  EXPECT_EQ(end.kind, Kind::kFinished);
  EXPECT_EQ(end.exit_code, 2);
  EXPECT_EQ(end.reason, "exit code 2");
  EXPECT_EQ(events_.size(), 5u);  // one final event each, nothing else
}

TEST_F(LocalExecutorTest, WrapperKilledWithoutStatusIsLost) {
  const std::string pid_file = dir_ + "/taskpid";
  TaskSpec spec = Spec("orphan", "echo $$ > '" + pid_file + "'; echo '::progress 1/1'; exec sleep 1000");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  const pid_t wrapper = static_cast<pid_t>(*WaitFor(Kind::kStarted, spec.key).pid);
  WaitFor(Kind::kProgress, spec.key);
  ASSERT_EQ(::kill(wrapper, SIGKILL), 0);
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_TRUE(Contains(end.reason, "task wrapper died without recording a status")) << end.reason;
  // The orphaned task is in its own group, named by its pid.
  ::kill(-std::stoi(ReadFile(pid_file)), SIGKILL);
}

TEST_F(LocalExecutorTest, UnstartableWrapperIsAnError) {
  StopDaemon();
  io_ = std::make_unique<boost::asio::io_context>();
  LocalExecutorOptions options;
  options.wrapper_argv0 = dir_ + "/no-such-binary";
  executor_ = std::make_unique<LocalExecutor>(*io_, options, [] {});
  Status s = executor_->Submit(Spec("nobinary", "true"));
  EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
  EXPECT_EQ(executor_->FreeSlots(), 32u);
  EXPECT_TRUE(executor_->Drain().empty());
}


// The WrapperSpawner path: the wrapper is forked from a helper process instead of exec'ed. Each
// test runs in its own process (gtest_discover_tests), so starting the helper here changes no
// other test.
TEST_F(LocalExecutorTest, ForkedWrappersRunTriesAndTheirPidFileComesFirst) {
  ASSERT_TRUE(WrapperSpawner::Start().ok());
  TaskSpec three = Spec("three", "echo '::progress 1/4'; echo out; exit 3");
  ASSERT_TRUE(executor_->Submit(three).ok());
  // The daemon learns the pid only once the pid file is there: a restart in between finds it.
  ASSERT_TRUE(PathExists(three.log_path + ".pid"));
  const int64_t pid = *WaitFor(Kind::kStarted, three.key).pid;
  auto pid_file = ReadPidFile(three.log_path + ".pid");
  ASSERT_TRUE(pid_file.ok());
  EXPECT_EQ(pid_file->pid, pid);
  EXPECT_EQ(WaitFor(Kind::kProgress, three.key).progress, 0.25);
  ExecutorEvent end = WaitForEnd(three.key);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_EQ(end.exit_code, 3);
  EXPECT_EQ(ReadFile(three.log_path), "out\n");
  EXPECT_EQ(executor_->FreeSlots(), 4u);
}

TEST_F(LocalExecutorTest, AForkedWrapperOutlivesItsDaemonAndIsAdopted) {
  ASSERT_TRUE(WrapperSpawner::Start().ok());
  const std::string gate = dir_ + "/gate";
  ASSERT_EQ(::mkfifo(gate.c_str(), 0600), 0);
  TaskSpec spec = Spec("forked", "read line < '" + gate + "'; echo \"got $line\"; exit 5");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  const int64_t pid = *WaitFor(Kind::kStarted, spec.key).pid;
  // Forked, not exec'ed: it carries this process's command line, not `__task-wrapper`.
  auto cmdline = ReadProcCmdline(static_cast<pid_t>(pid));
  ASSERT_TRUE(cmdline && cmdline->size() >= 1);
  EXPECT_TRUE(cmdline->size() < 2 || (*cmdline)[1] != kTaskWrapperCommand);

  StopDaemon();
  events_.clear();
  StartDaemon();
  // Identified by its pid file (pid, start time, written since boot): not started again.
  EXPECT_TRUE(executor_->Submit(spec).IsAlreadyExists());
  std::vector<RunningTask> tasks = {RunningTask{spec.key, pid, std::nullopt, spec.log_path}};
  ASSERT_EQ(executor_->Adopt(tasks).size(), 1u);
  OpenGate(gate);
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_EQ(end.exit_code, 5);
  EXPECT_EQ(ReadFile(spec.log_path), "got go\n");
}

}  // namespace
}  // namespace nightshift

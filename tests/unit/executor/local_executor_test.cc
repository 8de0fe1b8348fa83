// LocalExecutor with real processes: the executor forks a real supervisor (supervisor.h) from
// the test process, which runs the tries and records them in the run's tries journal.
// Tests run a real io_context until the event they expect arrives (with a generous deadline),
// never for a fixed time.
#include "executor/local_executor.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
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

#include "executor/supervisor.h"
#include "executor/task_protocol.h"
#include "executor/try_journal.h"
#include "tests/unit/executor/test_daemon.h"

extern char** environ;

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

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Gone for good: no such process, or a zombie (dead, only not yet reaped by whoever inherited
// it; kill(pid, 0) still succeeds on those, so it cannot tell).
bool ProcessGone(pid_t pid) {
  auto stat = ReadProcStat(pid);
  return !stat || stat->state == 'Z' || stat->state == 'X';
}

// The fields of /proc/PID/stat that ReadProcStat leaves out.
struct ProcInfo {
  std::string comm;
  char state = '?';
  pid_t ppid = 0;
};

std::optional<ProcInfo> ReadProcInfo(pid_t pid) {
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t open = stat.find('(');
  const size_t close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 2 >= stat.size()) return std::nullopt;
  ProcInfo info;
  info.comm = stat.substr(open + 1, close - open - 1);
  std::istringstream rest(stat.substr(close + 2));
  rest >> info.state >> info.ppid;
  return info;
}

// Live (not zombie) children of `parent`, those named `comm` if given. This kernel may lack
// /proc/PID/task/TID/children, so every process's parent is looked at.
std::vector<pid_t> LiveChildren(pid_t parent, const std::string& comm = "") {
  std::vector<pid_t> children;
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    const pid_t pid = std::stoi(name);
    auto info = ReadProcInfo(pid);
    if (!info || info->ppid != parent || info->state == 'Z' || info->state == 'X') continue;
    if (comm.empty() || info->comm == comm) children.push_back(pid);
  }
  return children;
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

// What the journal at `path` says of the try logging to `log_path`.
JournalTry JournalEntry(const std::string& path, const std::string& log_path) {
  auto read = ReadTryJournal(path);
  if (!read.ok()) return {};
  auto it = read->find(log_path);
  return it == read->end() ? JournalTry{} : it->second;
}

class LocalExecutorTest : public ::testing::Test {
 protected:
  using WorkGuard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;

  void SetUp() override {
    char tmpl[] = "/tmp/nightshift-executor-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    journal_ = dir_ + "/logs/tries.journal";
    BecomeSubreaper();
    StartDaemon();
  }

  void TearDown() override {
    StopDaemon();
    KillLeftovers();
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    fs::remove_all(dir_);
  }

  // Processes orphaned during the test (a killed daemon's supervisor, a killed supervisor's
  // tries, a stopped try's background jobs) come to us rather than to PID 1, which in a
  // container may never reap them; KillLeftovers() does.
  void BecomeSubreaper() { ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0); }

  // A "daemon": an io_context and an executor on it.
  // With a `fence_path`, it takes standbys (TaskSpec::after).
  void StartDaemon(size_t slots = 4, const std::string& fence_path = "") {
    io_ = std::make_unique<boost::asio::io_context>();
    guard_.emplace(io_->get_executor());
    LocalExecutorOptions options;
    options.slots = slots;
    options.kill_grace = 300ms;
    options.fence_path = fence_path;
    executor_ = std::make_unique<LocalExecutor>(*io_, options, [this] { ++notifications_; });
  }

  // The daemon goes away without waiting for anything, as after a restart: its supervisor goes
  // on running (and recording) the tries.
  void StopDaemon() {
    executor_.reset();
    guard_.reset();
    io_.reset();
  }

  // Whatever a failed test left running: process groups it named, and the tries of our
  // supervisors (each try leads a group of its own). The supervisors then exit, their daemon
  // gone, and are reaped here, so that none holds ctest's output pipe.
  void KillLeftovers() {
    SupervisorClient::TakePrestarted().reset();  // one a failed test did not take
    // Never 0 (or less): kill(0, ...) would hit our own process group, and that of ctest.
    for (pid_t group : kill_groups_) {
      if (group > 0) ::kill(-group, SIGKILL);
    }
    for (pid_t supervisor : LiveChildren(::getpid(), "ns-supervisor")) {
      for (pid_t child : LiveChildren(supervisor)) ::kill(-child, SIGKILL);
    }
    auto reap = [] {
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
    };
    EXPECT_TRUE(Eventually([&] {
      reap();
      return LiveChildren(::getpid(), "ns-supervisor").empty();
    })) << "a supervisor did not exit";
    reap();  // those that ended since
  }

  TaskSpec Spec(const std::string& task_id, const std::string& command) {
    TaskSpec spec;
    spec.key = TaskInstanceKey{"dag", "run", task_id, -1, 1};
    spec.command = command;
    spec.cwd = dir_;
    spec.log_path = dir_ + "/logs/" + task_id + "/1.log";
    spec.journal_path = journal_;
    return spec;
  }

  RunningTask Recorded(const TaskSpec& spec, std::optional<int64_t> pid = std::nullopt) {
    RunningTask task;
    task.key = spec.key;
    task.pid = pid;
    task.log_path = spec.log_path;
    task.journal_path = spec.journal_path;
    return task;
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

  int Count(Kind kind, const TaskInstanceKey& key) const {
    return static_cast<int>(
        std::count_if(events_.begin(), events_.end(), [&](const ExecutorEvent& e) { return e.kind == kind && e.key == key; }));
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

  std::string MakeGate(const std::string& name = "gate") {
    const std::string gate = dir_ + "/" + name;
    EXPECT_EQ(::mkfifo(gate.c_str(), 0600), 0);
    return gate;
  }

  // --- standbys ---

  std::string Fence() const { return dir_ + "/standby.fence"; }
  // A file that exists once the task `task_id` ran (see Touch()).
  std::string Marker(const std::string& task_id) const { return dir_ + "/ran-" + task_id; }
  std::string Touch(const std::string& task_id) const { return "touch '" + Marker(task_id) + "'"; }

  TaskSpec Standby(const std::string& task_id, const std::string& command, const TaskSpec& holder,
                   bool after_success) {
    TaskSpec spec = Spec(task_id, command);
    spec.after = holder.key;
    spec.after_success = after_success;
    return spec;
  }

  // The event, which must have arrived; a default one (and a failure) if it has not.
  ExecutorEvent Get(Kind kind, const TaskInstanceKey& key) const {
    const ExecutorEvent* e = Find(kind, key);
    if (!e) ADD_FAILURE() << "no event of kind " << static_cast<int>(kind) << " for " << key.ToString();
    return e ? *e : ExecutorEvent{};
  }

  // Waits for the try's start; its process group is killed in TearDown, whatever happened.
  ExecutorEvent WaitForStartAndTrack(const TaskInstanceKey& key) {
    ExecutorEvent started = WaitFor(Kind::kStarted, key);
    if (started.pid && *started.pid > 0) kill_groups_.push_back(static_cast<pid_t>(*started.pid));
    return started;
  }

  long IndexOf(Kind kind, const TaskInstanceKey& key) const {
    auto it = std::find_if(events_.begin(), events_.end(),
                           [&](const ExecutorEvent& e) { return e.kind == kind && e.key == key; });
    return it == events_.end() ? -1 : static_cast<long>(it - events_.begin());
  }

  // Returns once the supervisor has acted on every request sent before (it handles them in
  // order): a standby sent behind `waiting` (a standby with none behind it yet) and withdrawn
  // comes back declined. Without this, a holder let go right after its standby was submitted
  // could end before the supervisor read the standby, which it would then rightly decline.
  void Sync(const TaskSpec& waiting) {
    TaskSpec sync = Standby("sync" + std::to_string(next_sync_++), "true", waiting, false);
    ASSERT_TRUE(executor_->Submit(sync).ok());
    executor_->Withdraw(sync.key);
    const std::string reason = WaitFor(Kind::kDeclined, sync.key).reason;
    // Declined by the supervisor, not by the executor on its own (which would prove nothing).
    ASSERT_TRUE(Contains(reason, "withdrawn")) << reason;
  }

  // The standby never ran: no start, no end, nothing in the journal, no marker.
  void ExpectNeverRan(const TaskSpec& spec) {
    EXPECT_EQ(Find(Kind::kStarted, spec.key), nullptr) << spec.key.ToString();
    EXPECT_EQ(Find(Kind::kFinished, spec.key), nullptr) << spec.key.ToString();
    EXPECT_FALSE(JournalEntry(journal_, spec.log_path).start) << spec.key.ToString();
    EXPECT_FALSE(fs::exists(Marker(spec.key.task_id))) << spec.key.ToString();
  }

  int next_sync_ = 1;
  std::string dir_;
  std::string journal_;
  std::unique_ptr<boost::asio::io_context> io_;
  std::optional<WorkGuard> guard_;
  std::unique_ptr<LocalExecutor> executor_;
  std::vector<ExecutorEvent> events_;
  std::vector<pid_t> kill_groups_;  // killed with SIGKILL at the end, whatever happened
  int notifications_ = 0;
};

TEST_F(LocalExecutorTest, ReportsExitCodesAndJournalsEachTry) {
  TaskSpec ok = Spec("ok", "exit 0");
  TaskSpec three = Spec("three", "exit 3");
  ASSERT_TRUE(executor_->Submit(ok).ok());
  ASSERT_TRUE(executor_->Submit(three).ok());
  EXPECT_EQ(executor_->FreeSlots(), 2u);

  ExecutorEvent started = WaitFor(Kind::kStarted, three.key);
  ASSERT_TRUE(started.pid);
  EXPECT_GT(*started.pid, 0);
  ExecutorEvent end_ok = WaitForEnd(ok.key);
  ExecutorEvent end_three = WaitForEnd(three.key);
  EXPECT_EQ(end_ok.kind, Kind::kFinished);
  EXPECT_EQ(end_ok.exit_code, 0);
  EXPECT_EQ(end_ok.reason, "");
  EXPECT_EQ(end_three.kind, Kind::kFinished);
  EXPECT_EQ(end_three.exit_code, 3);
  EXPECT_EQ(end_three.reason, "exit code 3");
  EXPECT_GT(end_three.at.time_since_epoch().count(), 0);
  EXPECT_EQ(executor_->FreeSlots(), 4u);
  io_->poll();  // the notification is posted, not called from inside the executor
  EXPECT_GT(notifications_, 0);
  // Started before it finished.
  auto index = [&](Kind kind) {
    return std::find_if(events_.begin(), events_.end(),
                        [&](const ExecutorEvent& e) { return e.kind == kind && e.key == three.key; }) -
           events_.begin();
  };
  EXPECT_LT(index(Kind::kStarted), index(Kind::kFinished));

  // The supervisor recorded the start (before) and the end of both tries in the run's journal.
  const std::vector<std::string> lines = Lines(ReadFile(journal_));
  auto line_of = [&](const std::string& prefix) {
    return std::find_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.starts_with(prefix); }) -
           lines.begin();
  };
  for (const TaskSpec* spec : {&ok, &three}) {
    const auto s = line_of("S\t" + spec->log_path + "\t");
    const auto e = line_of("E\t" + spec->log_path + "\t");
    ASSERT_LT(e, static_cast<long>(lines.size())) << ReadFile(journal_);
    EXPECT_LT(s, e) << ReadFile(journal_);
  }
  EXPECT_EQ(lines.size(), 4u) << ReadFile(journal_);
  JournalTry recorded = JournalEntry(journal_, three.log_path);
  ASSERT_TRUE(recorded.start && recorded.end);
  EXPECT_EQ(recorded.start->pid, *started.pid);
  EXPECT_GT(recorded.start->start_time, 0u);
  EXPECT_GT(recorded.start->supervisor_pid, 0);
  EXPECT_NE(recorded.start->supervisor_pid, ::getpid());
  EXPECT_EQ(recorded.end->exit_code, 3);
  EXPECT_EQ(recorded.end->reason, "exit code 3");
  EXPECT_EQ(recorded.end->at, end_three.at);
  EXPECT_EQ(JournalEntry(journal_, ok.log_path).end->exit_code, 0);
}

TEST_F(LocalExecutorTest, StdoutAndStderrGoToTheLog) {
  TaskSpec spec = Spec("output", "echo out; echo err >&2; echo more; printf partial");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  EXPECT_EQ(WaitForEnd(spec.key).exit_code, 0);
  EXPECT_EQ(ReadFile(spec.log_path), "out\nerr\nmore\npartial");
}

TEST_F(LocalExecutorTest, ATryThatPrintsNothingLeavesNoLog) {
  TaskSpec quiet = Spec("quiet", "true");
  TaskSpec failing = Spec("failing", "exit 2");
  ASSERT_TRUE(executor_->Submit(quiet).ok());
  ASSERT_TRUE(executor_->Submit(failing).ok());
  EXPECT_EQ(WaitForEnd(quiet.key).exit_code, 0);
  EXPECT_EQ(WaitForEnd(failing.key).exit_code, 2);
  EXPECT_FALSE(fs::exists(quiet.log_path));
  EXPECT_FALSE(fs::exists(fs::path(quiet.log_path).parent_path()));  // nor its folder
  EXPECT_FALSE(fs::exists(failing.log_path));
  // The journal has them all the same.
  EXPECT_TRUE(JournalEntry(journal_, quiet.log_path).end);
  EXPECT_EQ(JournalEntry(journal_, failing.log_path).end->exit_code, 2);
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
  EXPECT_EQ(progress->key, spec.key);
  // Progress is reported before the try's end.
  auto finished = std::find_if(events_.begin(), events_.end(),
                               [&](const ExecutorEvent& e) { return e.kind == Kind::kFinished; });
  EXPECT_LT(progress - events_.begin(), finished - events_.begin());
  // A malformed directive is an ordinary line.
  EXPECT_EQ(ReadFile(spec.log_path), "before\nafter\n::progress soon\n");
}

TEST_F(LocalExecutorTest, PercentProgress) {
  TaskSpec spec =
      Spec("percent", "echo '::progress 42%'; read line < '" + MakeGate() + "'; printf '::progress 100%%'");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  kill_groups_.push_back(static_cast<pid_t>(*WaitFor(Kind::kStarted, spec.key).pid));
  EXPECT_EQ(WaitFor(Kind::kProgress, spec.key).progress, 0.42);
  OpenGate(dir_ + "/gate");
  EXPECT_EQ(WaitForEnd(spec.key).exit_code, 0);
  std::vector<double> seen;
  for (const ExecutorEvent& e : events_) {
    if (e.kind == Kind::kProgress) seen.push_back(*e.progress);
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen.back(), 1.0);  // a final directive without newline still counts
  // Progress only: nothing was logged, so there is no log.
  EXPECT_FALSE(fs::exists(spec.log_path)) << ReadFile(spec.log_path);
}

TEST_F(LocalExecutorTest, EnvironmentAndWorkingDirectoryReachTheTask) {
  ::setenv("NS_TEST_INHERITED", "from the daemon", 1);
  ::setenv("NS_TEST_OVERRIDDEN", "daemon", 1);
  // The executor reads the daemon's environment once, when it is made.
  StopDaemon();
  StartDaemon();
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
  EXPECT_EQ(JournalEntry(journal_, spec.log_path).end->exit_code, 127);
}

TEST_F(LocalExecutorTest, SubmitRefusesIncompleteSpecs) {
  TaskSpec no_journal = Spec("nojournal", "true");
  no_journal.journal_path.clear();
  EXPECT_EQ(executor_->Submit(no_journal).code(), Status::Code::kInvalidArgument);
  TaskSpec no_log = Spec("nolog", "true");
  no_log.log_path.clear();
  EXPECT_EQ(executor_->Submit(no_log).code(), Status::Code::kInvalidArgument);
  // A tab would tear the journal's records.
  TaskSpec tab = Spec("tab", "true");
  tab.log_path = dir_ + "/logs/a\tb.log";
  EXPECT_EQ(executor_->Submit(tab).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(executor_->FreeSlots(), 4u);
  EXPECT_TRUE(executor_->Drain().empty());
  EXPECT_TRUE(LiveChildren(::getpid(), "ns-supervisor").empty());  // nothing was started
}

TEST_F(LocalExecutorTest, AnUnusableJournalLosesTheTry) {
  // The journal's folder is a file: the try cannot be recorded, so it must not run.
  ASSERT_TRUE(std::ofstream(dir_ + "/file").good());
  TaskSpec spec = Spec("unjournaled", "touch '" + dir_ + "/ran'");
  spec.journal_path = dir_ + "/file/tries.journal";
  ASSERT_TRUE(executor_->Submit(spec).ok());
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_TRUE(Contains(end.reason, "could not start the command")) << end.reason;
  EXPECT_TRUE(Contains(end.reason, spec.journal_path)) << end.reason;
  EXPECT_FALSE(Find(Kind::kStarted, spec.key));
  EXPECT_FALSE(fs::exists(dir_ + "/ran"));
  EXPECT_EQ(executor_->FreeSlots(), 4u);
}

TEST_F(LocalExecutorTest, AnUnwritableLogFailsTheTry) {
  // The log's folder is a file: the output has nowhere to go, so a success cannot be told
  // from a failure.
  ASSERT_TRUE(std::ofstream(dir_ + "/file").good());
  TaskSpec spec = Spec("unlogged", "echo hello");
  spec.log_path = dir_ + "/file/1.log";
  ASSERT_TRUE(executor_->Submit(spec).ok());
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished);
  EXPECT_EQ(end.exit_code, kWrapperSetupFailedExit);
  EXPECT_TRUE(Contains(end.reason, "cannot write the log " + spec.log_path)) << end.reason;
  JournalTry recorded = JournalEntry(journal_, spec.log_path);
  ASSERT_TRUE(recorded.end);
  EXPECT_EQ(recorded.end->exit_code, kWrapperSetupFailedExit);
}

TEST_F(LocalExecutorTest, CancelStopsTheWholeProcessGroup) {
  const std::string pids = dir_ + "/pids";
  TaskSpec spec = Spec("cancel", "sleep 1000 & echo $! >> '" + pids + "'; sleep 1000 & echo $! >> '" + pids +
                                     "'; echo $$ >> '" + pids + "'; echo '::progress 1/2'; wait");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  const pid_t sh = static_cast<pid_t>(*WaitFor(Kind::kStarted, spec.key).pid);
  kill_groups_.push_back(sh);
  WaitFor(Kind::kProgress, spec.key);  // the pids are written
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());  // idempotent
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished);
  EXPECT_EQ(end.exit_code, 143);  // the shell dies of the SIGTERM, well within kill_grace
  EXPECT_TRUE(Contains(end.reason, "stopped")) << end.reason;
  EXPECT_TRUE(Contains(ReadFile(spec.log_path), "sending SIGTERM to the task's process group"));
  EXPECT_FALSE(Contains(ReadFile(spec.log_path), "SIGKILL"));

  std::istringstream in(ReadFile(pids));
  std::vector<pid_t> task_pids;
  for (pid_t pid; in >> pid;) task_pids.push_back(pid);
  ASSERT_EQ(task_pids.size(), 3u);
  EXPECT_EQ(task_pids[2], sh);
  for (pid_t pid : task_pids) {
    EXPECT_TRUE(Eventually([&] { return ProcessGone(pid); })) << "pid " << pid << " survived";
  }
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());  // after the end too
  EXPECT_EQ(Count(Kind::kFinished, spec.key), 1);
}

TEST_F(LocalExecutorTest, CancelEscalatesToSigkill) {
  const std::string pid_file = dir_ + "/taskpid";
  TaskSpec spec =
      Spec("stubborn", "trap '' TERM; echo $$ > '" + pid_file + "'; echo '::progress 1/1'; sleep 1000");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  kill_groups_.push_back(static_cast<pid_t>(*WaitFor(Kind::kStarted, spec.key).pid));
  WaitFor(Kind::kProgress, spec.key);
  const auto cancelled = std::chrono::steady_clock::now();
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_GE(std::chrono::steady_clock::now() - cancelled, 250ms);  // kill_grace (300 ms, kept to the ms)
  EXPECT_EQ(end.exit_code, 137);
  EXPECT_TRUE(Contains(end.reason, "SIGTERM, then SIGKILL")) << end.reason;
  EXPECT_TRUE(Contains(ReadFile(spec.log_path), "sending SIGKILL")) << ReadFile(spec.log_path);
  pid_t sh = std::stoi(ReadFile(pid_file));
  EXPECT_TRUE(Eventually([&] { return ProcessGone(sh); }));
}

TEST_F(LocalExecutorTest, CancelRightAfterSubmitStillRecordsAResult) {
  TaskSpec spec = Spec("early", "sleep 1000");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());  // the command has most likely not even started
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_TRUE(end.exit_code == 143 || end.exit_code == 137) << end.exit_code.value_or(-1);
  JournalTry recorded = JournalEntry(journal_, spec.log_path);
  ASSERT_TRUE(recorded.start && recorded.end);
  EXPECT_EQ(recorded.end->exit_code, *end.exit_code);
}

TEST_F(LocalExecutorTest, CancelOfAnUnknownKeyIsOk) {
  EXPECT_TRUE(executor_->Cancel(TaskInstanceKey{"no", "such", "task", -1, 1}).ok());
  EXPECT_TRUE(executor_->Drain().empty());
}

TEST_F(LocalExecutorTest, SlotsLimitSubmissions) {
  StopDaemon();
  StartDaemon(/*slots=*/1);
  TaskSpec first = Spec("first", "sleep 1000");
  ASSERT_TRUE(executor_->Submit(first).ok());
  EXPECT_EQ(executor_->FreeSlots(), 0u);
  EXPECT_TRUE(executor_->Submit(first).IsAlreadyExists());  // running here
  EXPECT_EQ(executor_->Submit(Spec("second", "true")).code(), Status::Code::kBusy);
  ASSERT_TRUE(executor_->Cancel(first.key).ok());
  WaitForEnd(first.key);
  EXPECT_EQ(executor_->FreeSlots(), 1u);
  TaskSpec second = Spec("second", "exit 4");
  ASSERT_TRUE(executor_->Submit(second).ok());
  EXPECT_EQ(WaitForEnd(second.key).exit_code, 4);
}

TEST_F(LocalExecutorTest, DaemonDescriptorsDoNotReachTheTask) {
  // A descriptor the daemon left inheritable (think of a lock or a listening socket), opened
  // before the supervisor is forked (at the first Submit).
  int devnull = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(devnull, 0);
  int leaked = ::fcntl(devnull, F_DUPFD, 100);  // high, so that ls's own cannot be mistaken for it
  ::close(devnull);
  ASSERT_GE(leaked, 100);
  TaskSpec spec = Spec("fds", "ls /proc/$$/fd; echo '::progress 1/2'; read line < '" + MakeGate() + "'");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  const pid_t sh = static_cast<pid_t>(*WaitFor(Kind::kStarted, spec.key).pid);
  kill_groups_.push_back(sh);
  WaitFor(Kind::kProgress, spec.key);
  // Nor does the supervisor, which outlives the daemon, keep it: only its sockets, epoll,
  // /dev/null, the journal, the try's pipe and pidfd and the standard three.
  auto info = ReadProcInfo(sh);
  ASSERT_TRUE(info);
  const std::string supervisor_fds = "/proc/" + std::to_string(info->ppid) + "/fd";
  std::vector<int> held;
  for (const auto& entry : fs::directory_iterator(supervisor_fds)) held.push_back(std::stoi(entry.path().filename()));
  EXPECT_EQ(std::count(held.begin(), held.end(), leaked), 0);
  EXPECT_LE(held.size(), 12u);
  OpenGate(dir_ + "/gate");
  EXPECT_EQ(WaitForEnd(spec.key).exit_code, 0);
  ::close(leaked);
  std::istringstream in(ReadFile(spec.log_path));
  std::vector<int> fds;
  for (int fd; in >> fd;) fds.push_back(fd);
  // 0, 1, 2, and ls's own, for the folder it lists.
  EXPECT_LE(fds.size(), 4u) << ReadFile(spec.log_path);
  EXPECT_EQ(std::count(fds.begin(), fds.end(), leaked), 0) << ReadFile(spec.log_path);
}

TEST_F(LocalExecutorTest, TheSupervisorOutlivesItsDaemon) {
  const std::string gate = MakeGate();
  TaskSpec spec = Spec("survivor", "echo '::progress 1/2'; read line < '" + gate + "'; echo \"got $line\"; exit 7");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  const int64_t pid = *WaitFor(Kind::kStarted, spec.key).pid;
  kill_groups_.push_back(static_cast<pid_t>(pid));
  WaitFor(Kind::kProgress, spec.key);

  StopDaemon();
  events_.clear();
  EXPECT_FALSE(ProcessGone(static_cast<pid_t>(pid)));
  OpenGate(gate);
  // With no daemon to tell, the supervisor still copies the output and records the end.
  ASSERT_TRUE(Eventually([&] { return JournalEntry(journal_, spec.log_path).end.has_value(); }));
  JournalTry recorded = JournalEntry(journal_, spec.log_path);
  EXPECT_EQ(recorded.end->exit_code, 7);
  EXPECT_EQ(recorded.end->reason, "exit code 7");
  EXPECT_EQ(ReadFile(spec.log_path), "got go\n");

  StartDaemon();
  std::vector<RunningTask> tasks = {Recorded(spec, pid)};
  EXPECT_TRUE(executor_->Adopt(tasks).empty());  // nothing to follow: the result is known
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_EQ(end.exit_code, 7);
  EXPECT_EQ(end.reason, "exit code 7");
  EXPECT_EQ(end.at, recorded.end->at);  // when it ended, not when we learned of it
  EXPECT_EQ(executor_->FreeSlots(), 4u);
  // The journal says it ran: it does not run again.
  Status again = executor_->Submit(spec);
  EXPECT_TRUE(again.IsAlreadyExists()) << again.ToString();
  EXPECT_EQ(Lines(ReadFile(journal_)).size(), 2u);
}

TEST_F(LocalExecutorTest, AdoptsATryThatStillRuns) {
  const std::string gate = MakeGate();
  TaskSpec spec = Spec("running", "echo '::progress 1/2'; read line < '" + gate + "'; echo \"got $line\"; exit 7");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  const int64_t pid = *WaitFor(Kind::kStarted, spec.key).pid;
  kill_groups_.push_back(static_cast<pid_t>(pid));
  WaitFor(Kind::kProgress, spec.key);

  StopDaemon();
  events_.clear();
  StartDaemon();
  std::vector<RunningTask> tasks = {Recorded(spec, pid)};
  std::vector<TaskInstanceKey> adopted = executor_->Adopt(tasks);
  ASSERT_EQ(adopted.size(), 1u);
  EXPECT_EQ(adopted[0], spec.key);
  EXPECT_EQ(executor_->FreeSlots(), 3u);
  // It still runs: it must not start again.
  EXPECT_TRUE(executor_->Submit(spec).IsAlreadyExists());
  // Nothing to report until it ends.
  io_->poll();
  Collect();
  EXPECT_TRUE(events_.empty());

  OpenGate(gate);
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_EQ(end.exit_code, 7);
  EXPECT_EQ(end.at, JournalEntry(journal_, spec.log_path).end->at);
  EXPECT_EQ(executor_->FreeSlots(), 4u);
  EXPECT_EQ(ReadFile(spec.log_path), "got go\n");
  EXPECT_EQ(events_.size(), 1u);
}

TEST_F(LocalExecutorTest, CancelsAnAdoptedTry) {
  const std::string pid_file = dir_ + "/taskpid";
  TaskSpec spec = Spec("adopted", "echo $$ > '" + pid_file + "'; echo '::progress 1/2'; sleep 1000");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  const int64_t pid = *WaitFor(Kind::kStarted, spec.key).pid;
  kill_groups_.push_back(static_cast<pid_t>(pid));
  WaitFor(Kind::kProgress, spec.key);

  StopDaemon();
  events_.clear();
  StartDaemon();
  std::vector<RunningTask> tasks = {Recorded(spec, pid)};
  ASSERT_EQ(executor_->Adopt(tasks).size(), 1u);
  EXPECT_EQ(executor_->Adopt(tasks).size(), 1u);  // again: still followed, once
  ASSERT_TRUE(executor_->Cancel(spec.key).ok());
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_EQ(end.exit_code, 143);
  pid_t sh = std::stoi(ReadFile(pid_file));
  EXPECT_EQ(sh, pid);
  EXPECT_TRUE(Eventually([&] { return ProcessGone(sh); }));
  EXPECT_EQ(Count(Kind::kFinished, spec.key), 1);
  EXPECT_EQ(JournalEntry(journal_, spec.log_path).end->exit_code, 143);
}

TEST_F(LocalExecutorTest, AdoptReportsLostAndFinishedTries) {
  // A pid that is gone.
  pid_t dead = ::fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  auto self = ReadProcStat(::getpid());
  ASSERT_TRUE(self);
  fs::create_directories(dir_ + "/logs");

  // Started, then the command and its supervisor vanished without recording the end.
  TaskSpec vanished = Spec("vanished", "true");
  // Started, and the pid lives, but as another process (its start time differs); the
  // supervisor is gone.
  TaskSpec reused = Spec("reused", "true");
  // Ended while nobody watched.
  TaskSpec finished = Spec("finished", "true");
  // Not in the journal: never started (its start is recorded right after the spawn).
  TaskSpec never = Spec("never", "true");
  // In a run whose journal does not even exist.
  TaskSpec nojournal = Spec("nojournal", "true");
  nojournal.journal_path = dir_ + "/logs/other-run/tries.journal";
  // Recorded by a daemon that did not record where.
  TaskSpec unrecorded = Spec("unrecorded", "true");
  unrecorded.journal_path.clear();
  {
    std::ofstream out(journal_, std::ios::binary);
    out << FormatJournalStart(vanished.log_path, JournalStart{dead, 12345, dead, 12300})
        << FormatJournalStart(reused.log_path, JournalStart{::getpid(), self->start_time + 1, dead, 12300})
        << FormatJournalStart(finished.log_path, JournalStart{dead, 12345, dead, 12300})
        << FormatJournalEnd(finished.log_path, JournalEnd{2, "exit code 2", TimePoint(std::chrono::milliseconds(1234567))})
        << "S\t" << never.log_path << "\t12";  // torn: a record still being written is no start
  }

  std::vector<RunningTask> tasks = {Recorded(vanished, dead), Recorded(reused, ::getpid()), Recorded(finished),
                                    Recorded(never, ::getpid()), Recorded(nojournal), Recorded(unrecorded)};
  EXPECT_TRUE(executor_->Adopt(tasks).empty());
  EXPECT_EQ(executor_->FreeSlots(), 4u);

  const std::string gone = "the try's supervisor (pid " + std::to_string(dead) + ") stopped before it recorded how the try ended";
  ExecutorEvent end = WaitForEnd(vanished.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_EQ(end.reason, gone);
  end = WaitForEnd(reused.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_EQ(end.reason, gone);
  end = WaitForEnd(finished.key);
  EXPECT_EQ(end.kind, Kind::kFinished);
  EXPECT_EQ(end.exit_code, 2);
  EXPECT_EQ(end.reason, "exit code 2");
  EXPECT_EQ(end.at, TimePoint(std::chrono::milliseconds(1234567)));
  end = WaitForEnd(never.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_EQ(end.reason, "never started");
  end = WaitForEnd(nojournal.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_EQ(end.reason, "never started");
  end = WaitForEnd(unrecorded.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_TRUE(Contains(end.reason, "no log or journal path")) << end.reason;
  EXPECT_EQ(events_.size(), 6u);  // one final event each, nothing else

  // What the adopted journal has does not run again; what it lacks may.
  EXPECT_TRUE(executor_->Submit(finished).IsAlreadyExists());
  EXPECT_TRUE(executor_->Submit(vanished).IsAlreadyExists());
  ASSERT_TRUE(executor_->Submit(nojournal).ok());
  ASSERT_TRUE(RunUntil([&] { return Find(Kind::kFinished, nojournal.key) != nullptr; }));
  EXPECT_EQ(Find(Kind::kFinished, nojournal.key)->exit_code, 0);
}

TEST_F(LocalExecutorTest, AdoptsATryAfterTheDaemonIsKilledWithSigkill) {
  const std::string gate = MakeGate();
  const std::string log = dir_ + "/logs/killed/1.log";
  const std::string command = "echo '::progress 1/2'; read line < '" + gate + "'; echo \"got $line\"; exit 9";
  // A real daemon process (this binary in its test-daemon role), killed with -9.
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  std::vector<std::string> argv_strings = {SelfExe(), std::string(kTestDaemonCommand), log, journal_, command};
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
  if (!ready.starts_with("ready ")) ::kill(daemon, SIGKILL);
  ASSERT_TRUE(ready.starts_with("ready ")) << ready;
  const pid_t command_pid = std::stoi(ready.substr(6));
  kill_groups_.push_back(command_pid);
  const JournalTry started = JournalEntry(journal_, log);
  ASSERT_TRUE(started.start);
  EXPECT_EQ(started.start->pid, command_pid);
  const pid_t supervisor = started.start->supervisor_pid;
  ASSERT_EQ(::kill(daemon, SIGKILL), 0);
  ASSERT_EQ(::waitpid(daemon, nullptr, 0), daemon);
  EXPECT_FALSE(ProcessGone(command_pid));  // orphaned, not dead
  EXPECT_FALSE(ProcessGone(supervisor));
  EXPECT_TRUE(Eventually([&] {
    auto info = ReadProcInfo(supervisor);
    return info && info->ppid == ::getpid();
  }));

  OpenGate(gate);
  // The supervisor records the end, then exits: it has no daemon and no try left.
  ASSERT_TRUE(Eventually([&] { return JournalEntry(journal_, log).end.has_value(); }));
  EXPECT_TRUE(Eventually([&] { return ProcessGone(supervisor); }));
  ::waitpid(supervisor, nullptr, 0);

  std::vector<RunningTask> tasks = {RunningTask{kTestDaemonKey, command_pid, std::nullopt, log, journal_}};
  EXPECT_TRUE(executor_->Adopt(tasks).empty());
  ExecutorEvent end = WaitForEnd(kTestDaemonKey);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_EQ(end.exit_code, 9);
  EXPECT_EQ(ReadFile(log), "got go\n");
}

TEST_F(LocalExecutorTest, ASupervisorKilledWithSigkillLosesItsTries) {
  TaskSpec spec = Spec("orphan", "echo '::progress 1/1'; exec sleep 1000");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  const pid_t command = static_cast<pid_t>(*WaitFor(Kind::kStarted, spec.key).pid);
  kill_groups_.push_back(command);
  WaitFor(Kind::kProgress, spec.key);
  // Our supervisor: the command's parent, a child of ours.
  auto info = ReadProcInfo(command);
  ASSERT_TRUE(info);
  const pid_t supervisor = info->ppid;
  auto supervisor_info = ReadProcInfo(supervisor);
  ASSERT_TRUE(supervisor_info);
  EXPECT_EQ(supervisor_info->comm, "ns-supervisor");
  EXPECT_EQ(supervisor_info->ppid, ::getpid());
  EXPECT_EQ(LiveChildren(::getpid(), "ns-supervisor"), std::vector<pid_t>{supervisor});

  ASSERT_EQ(::kill(supervisor, SIGKILL), 0);
  ExecutorEvent end = WaitForEnd(spec.key);
  EXPECT_EQ(end.kind, Kind::kLost);
  EXPECT_TRUE(Contains(end.reason, "supervisor (pid " + std::to_string(supervisor) + ")")) << end.reason;
  EXPECT_TRUE(Contains(end.reason, std::to_string(command))) << end.reason;
  EXPECT_EQ(executor_->FreeSlots(), 4u);
  EXPECT_FALSE(JournalEntry(journal_, spec.log_path).end);
  ::kill(-command, SIGKILL);  // orphaned in its own group

  // The next try gets a new supervisor.
  TaskSpec next = Spec("next", "exit 4");
  ASSERT_TRUE(executor_->Submit(next).ok());
  ExecutorEvent next_end = WaitForEnd(next.key);
  EXPECT_EQ(next_end.kind, Kind::kFinished) << next_end.reason;
  EXPECT_EQ(next_end.exit_code, 4);
  const JournalTry recorded = JournalEntry(journal_, next.log_path);
  ASSERT_TRUE(recorded.start);
  EXPECT_NE(recorded.start->supervisor_pid, supervisor);
}

TEST_F(LocalExecutorTest, UsesThePrestartedSupervisor) {
  StopDaemon();
  KillLeftovers();
  SupervisorClient::Prestart();
  std::vector<pid_t> prestarted;
  // It names itself right after the fork.
  ASSERT_TRUE(Eventually([&] { return !(prestarted = LiveChildren(::getpid(), "ns-supervisor")).empty(); }));
  ASSERT_EQ(prestarted.size(), 1u);
  StartDaemon();
  TaskSpec spec = Spec("prestarted", "exit 0");
  ASSERT_TRUE(executor_->Submit(spec).ok());
  EXPECT_EQ(WaitForEnd(spec.key).exit_code, 0);
  EXPECT_EQ(JournalEntry(journal_, spec.log_path).start->supervisor_pid, prestarted[0]);
  EXPECT_FALSE(SupervisorClient::TakePrestarted());  // taken, once
}

// --- standbys: a try that waits in the slot of a running one (its holder) ---

TEST_F(LocalExecutorTest, AStandbyTakesItsHoldersSlotAsItEnds) {
  StopDaemon();
  StartDaemon(/*slots=*/1, Fence());
  const std::string gate = MakeGate();
  TaskSpec holder = Spec("holder", "read line < '" + gate + "'");
  TaskSpec standby = Standby("standby", Touch("standby"), holder, /*after_success=*/true);
  EXPECT_TRUE(executor_->TakesStandby(holder, standby));  // submitted just before it
  ASSERT_TRUE(executor_->Submit(holder).ok());
  EXPECT_EQ(executor_->FreeSlots(), 0u);
  EXPECT_TRUE(executor_->TakesStandby(holder, standby));  // runs here
  EXPECT_TRUE(executor_->HoldsSlot(holder.key));
  // No free slot, yet the standby is taken: it needs none of its own.
  ASSERT_TRUE(executor_->Submit(standby).ok());
  EXPECT_TRUE(executor_->HoldsSlot(standby.key));
  EXPECT_EQ(executor_->Submit(Spec("other", "true")).code(), Status::Code::kBusy);
  WaitForStartAndTrack(holder.key);
  ASSERT_NO_FATAL_FAILURE(Sync(standby));
  EXPECT_EQ(executor_->FreeSlots(), 0u);
  EXPECT_EQ(Find(Kind::kStarted, standby.key), nullptr);  // waits for the holder's end
  EXPECT_FALSE(fs::exists(Marker("standby")));

  OpenGate(gate);
  const ExecutorEvent end = WaitForEnd(standby.key);
  EXPECT_EQ(end.kind, Kind::kFinished) << end.reason;
  EXPECT_EQ(end.exit_code, 0);
  EXPECT_FALSE(end.handed_off);
  const ExecutorEvent holder_end = Get(Kind::kFinished, holder.key);
  EXPECT_EQ(holder_end.exit_code, 0);
  EXPECT_TRUE(holder_end.handed_off);
  EXPECT_EQ(Find(Kind::kDeclined, standby.key), nullptr);
  EXPECT_LT(IndexOf(Kind::kFinished, holder.key), IndexOf(Kind::kStarted, standby.key));
  EXPECT_LT(IndexOf(Kind::kStarted, standby.key), IndexOf(Kind::kFinished, standby.key));
  EXPECT_TRUE(fs::exists(Marker("standby")));
  const JournalTry recorded = JournalEntry(journal_, standby.log_path);
  ASSERT_TRUE(recorded.start && recorded.end);
  EXPECT_EQ(Get(Kind::kStarted, standby.key).pid, std::optional<int64_t>(recorded.start->pid));
  EXPECT_TRUE(JournalEntry(journal_, holder.log_path).end);
  // Both gone: the slot is free again, and it counts once.
  EXPECT_EQ(executor_->FreeSlots(), 1u);
  EXPECT_FALSE(executor_->HoldsSlot(holder.key));
  EXPECT_FALSE(executor_->HoldsSlot(standby.key));
  TaskSpec next = Spec("next", "exit 2");
  ASSERT_TRUE(executor_->Submit(next).ok());
  EXPECT_EQ(WaitForEnd(next.key).exit_code, 2);
}

TEST_F(LocalExecutorTest, StandbysInAChainRunInTurnInOneSlot) {
  StopDaemon();
  StartDaemon(/*slots=*/2, Fence());
  const std::string gate = MakeGate();
  const std::string order = dir_ + "/order";
  TaskSpec holder = Spec("holder", "read line < '" + gate + "'; exit 1");
  TaskSpec first = Standby("first", "echo first >> '" + order + "'", holder, /*after_success=*/false);
  TaskSpec second = Standby("second", "echo second >> '" + order + "'", first, /*after_success=*/true);
  ASSERT_TRUE(executor_->Submit(holder).ok());
  EXPECT_EQ(executor_->FreeSlots(), 1u);
  ASSERT_TRUE(executor_->Submit(first).ok());
  EXPECT_TRUE(executor_->TakesStandby(first, second));  // a waiting standby holds a slot too
  ASSERT_TRUE(executor_->Submit(second).ok());
  EXPECT_EQ(executor_->FreeSlots(), 1u);  // standbys take no slot
  WaitForStartAndTrack(holder.key);
  ASSERT_NO_FATAL_FAILURE(Sync(second));

  OpenGate(gate);
  EXPECT_EQ(WaitForEnd(second.key).exit_code, 0);
  EXPECT_EQ(Get(Kind::kFinished, holder.key).exit_code, 1);
  EXPECT_TRUE(Get(Kind::kFinished, holder.key).handed_off);  // first does not ask for success
  EXPECT_TRUE(Get(Kind::kFinished, first.key).handed_off);
  EXPECT_LT(IndexOf(Kind::kFinished, holder.key), IndexOf(Kind::kStarted, first.key));
  EXPECT_LT(IndexOf(Kind::kFinished, first.key), IndexOf(Kind::kStarted, second.key));
  EXPECT_EQ(ReadFile(order), "first\nsecond\n");
  EXPECT_EQ(executor_->FreeSlots(), 2u);
}

TEST_F(LocalExecutorTest, AStandbyForATryThatIsNotHereIsDeclined) {
  StopDaemon();
  StartDaemon(/*slots=*/4, Fence());
  TaskSpec nobody = Spec("nobody", "true");
  TaskSpec standby = Standby("standby", Touch("standby"), nobody, /*after_success=*/false);
  const int notified = notifications_;
  ASSERT_TRUE(executor_->Submit(standby).ok());
  EXPECT_EQ(notifications_, notified);  // announced later, never from inside Submit
  EXPECT_FALSE(executor_->HoldsSlot(standby.key));
  EXPECT_EQ(executor_->FreeSlots(), 4u);
  const std::string reason = WaitFor(Kind::kDeclined, standby.key).reason;
  EXPECT_TRUE(Contains(reason, "already ended")) << reason;
  io_->poll();
  EXPECT_GT(notifications_, notified);

  // Nor for one that ran here and finished.
  TaskSpec done = Spec("done", "true");
  ASSERT_TRUE(executor_->Submit(done).ok());
  WaitForEnd(done.key);
  TaskSpec late = Standby("late", Touch("late"), done, /*after_success=*/false);
  ASSERT_TRUE(executor_->Submit(late).ok());
  WaitFor(Kind::kDeclined, late.key);
  ExpectNeverRan(standby);
  ExpectNeverRan(late);
  EXPECT_EQ(executor_->FreeSlots(), 4u);

  // A declined standby left nothing behind: the scheduler submits it the usual way.
  TaskSpec again = Spec("standby", Touch("standby"));
  ASSERT_TRUE(executor_->Submit(again).ok());
  EXPECT_EQ(WaitForEnd(again.key).exit_code, 0);
  EXPECT_TRUE(fs::exists(Marker("standby")));
}

TEST_F(LocalExecutorTest, WithoutAFencePathItTakesNoStandbys) {
  const std::string gate = MakeGate();
  TaskSpec holder = Spec("holder", "read line < '" + gate + "'");
  TaskSpec standby = Standby("standby", Touch("standby"), holder, /*after_success=*/false);
  EXPECT_FALSE(executor_->TakesStandby(holder, standby));
  ASSERT_TRUE(executor_->Submit(holder).ok());
  EXPECT_FALSE(executor_->TakesStandby(holder, standby));
  // Submitted anyway: declined, and the holder goes on.
  ASSERT_TRUE(executor_->Submit(standby).ok());
  WaitFor(Kind::kDeclined, standby.key);
  EXPECT_EQ(executor_->FreeSlots(), 3u);
  WaitForStartAndTrack(holder.key);
  OpenGate(gate);
  const ExecutorEvent end = WaitForEnd(holder.key);
  EXPECT_EQ(end.exit_code, 0);
  EXPECT_FALSE(end.handed_off);
  ExpectNeverRan(standby);
}

TEST_F(LocalExecutorTest, CancelOrWithdrawDeclinesAWaitingStandby) {
  StopDaemon();
  StartDaemon(/*slots=*/2, Fence());
  const std::string gate = MakeGate();
  TaskSpec holder = Spec("holder", "read line < '" + gate + "'");
  ASSERT_TRUE(executor_->Submit(holder).ok());
  TaskSpec cancelled = Standby("cancelled", Touch("cancelled"), holder, /*after_success=*/false);
  ASSERT_TRUE(executor_->Submit(cancelled).ok());
  ASSERT_TRUE(executor_->Cancel(cancelled.key).ok());
  std::string reason = WaitFor(Kind::kDeclined, cancelled.key).reason;
  EXPECT_TRUE(Contains(reason, "stopped before it started")) << reason;
  EXPECT_FALSE(executor_->HoldsSlot(cancelled.key));

  TaskSpec withdrawn = Standby("withdrawn", Touch("withdrawn"), holder, /*after_success=*/false);
  ASSERT_TRUE(executor_->Submit(withdrawn).ok());
  executor_->Withdraw(withdrawn.key);
  reason = WaitFor(Kind::kDeclined, withdrawn.key).reason;
  EXPECT_TRUE(Contains(reason, "withdrawn")) << reason;

  // The holder is not a standby: Withdraw leaves it alone (Cancel would not).
  executor_->Withdraw(holder.key);
  EXPECT_EQ(executor_->FreeSlots(), 1u);
  const std::string gate2 = MakeGate("gate2");
  TaskSpec kept = Standby("kept", "read line < '" + gate2 + "'; " + Touch("kept"), holder, /*after_success=*/true);
  ASSERT_TRUE(executor_->Submit(kept).ok());
  ASSERT_NO_FATAL_FAILURE(Sync(kept));
  EXPECT_EQ(Find(Kind::kFinished, holder.key), nullptr);
  OpenGate(gate);
  WaitForStartAndTrack(kept.key);
  EXPECT_TRUE(Get(Kind::kFinished, holder.key).handed_off);
  // Started: Withdraw does not stop it either.
  executor_->Withdraw(kept.key);
  OpenGate(gate2);
  const ExecutorEvent end = WaitForEnd(kept.key);
  EXPECT_EQ(end.exit_code, 0) << end.reason;
  EXPECT_TRUE(fs::exists(Marker("kept")));
  ExpectNeverRan(cancelled);
  ExpectNeverRan(withdrawn);
  EXPECT_EQ(executor_->FreeSlots(), 2u);
}

TEST_F(LocalExecutorTest, ARestartedExecutorMakesTheOldOnesStandbysBeDeclined) {
  StopDaemon();
  StartDaemon(/*slots=*/4, Fence());
  const std::string gate = MakeGate();
  TaskSpec holder = Spec("holder", "read line < '" + gate + "'");
  // Would start however the holder ends: only the fence can decline it.
  TaskSpec standby = Standby("standby", Touch("standby"), holder, /*after_success=*/false);
  ASSERT_TRUE(executor_->Submit(holder).ok());
  ASSERT_TRUE(executor_->Submit(standby).ok());
  WaitForStartAndTrack(holder.key);
  ASSERT_NO_FATAL_FAILURE(Sync(standby));

  // A newer daemon on the same state folder claims the fence (the old one is still alive).
  LocalExecutorOptions options;
  options.fence_path = Fence();
  auto newer = std::make_unique<LocalExecutor>(*io_, options, [] {});
  EXPECT_TRUE(newer->TakesStandby(holder, standby));

  OpenGate(gate);
  const std::string reason = WaitFor(Kind::kDeclined, standby.key).reason;
  EXPECT_TRUE(Contains(reason, "newer daemon")) << reason;
  const ExecutorEvent end = WaitForEnd(holder.key);
  EXPECT_EQ(end.exit_code, 0);
  EXPECT_FALSE(end.handed_off);
  // Whatever the supervisor sent after the holder's end (a wrong start) comes before this.
  TaskSpec later = Spec("later", "true");
  ASSERT_TRUE(executor_->Submit(later).ok());
  EXPECT_EQ(WaitForEnd(later.key).exit_code, 0);
  ExpectNeverRan(standby);
  EXPECT_EQ(executor_->FreeSlots(), 4u);
  newer.reset();
}

TEST_F(LocalExecutorTest, AWaitingStandbyIsDeclinedWhenItsSupervisorDies) {
  StopDaemon();
  StartDaemon(/*slots=*/4, Fence());
  TaskSpec holder = Spec("holder", "exec sleep 1000");
  TaskSpec standby = Standby("standby", Touch("standby"), holder, /*after_success=*/false);
  ASSERT_TRUE(executor_->Submit(holder).ok());
  ASSERT_TRUE(executor_->Submit(standby).ok());
  const ExecutorEvent started = WaitForStartAndTrack(holder.key);
  ASSERT_TRUE(started.pid);
  auto info = ReadProcInfo(static_cast<pid_t>(*started.pid));
  ASSERT_TRUE(info);
  auto supervisor = ReadProcInfo(info->ppid);  // the command's parent
  ASSERT_TRUE(supervisor);
  ASSERT_EQ(supervisor->comm, "ns-supervisor");

  ASSERT_EQ(::kill(info->ppid, SIGKILL), 0);
  const std::string reason = WaitFor(Kind::kDeclined, standby.key).reason;
  EXPECT_TRUE(Contains(reason, "died before it started")) << reason;
  EXPECT_EQ(WaitForEnd(holder.key).kind, Kind::kLost);
  EXPECT_EQ(executor_->FreeSlots(), 4u);
  EXPECT_FALSE(executor_->HoldsSlot(standby.key));
  ExpectNeverRan(standby);
}

}  // namespace
}  // namespace nightshift

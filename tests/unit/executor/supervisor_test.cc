// The supervisor process on its own, driven through SupervisorClient the way LocalExecutor
// drives it: real forks, real tries, events read off the socket.
#include "executor/supervisor.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "executor/task_protocol.h"
#include "executor/try_journal.h"

namespace nightshift {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Kind = SupervisorEvent::Kind;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ns-supervisor-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    journal_ = dir_ + "/run/tries.journal";
    // A stopped try's other processes, orphaned, come to us (and are reaped in TearDown)
    // rather than to PID 1, which in a container may never reap them.
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    auto started = SupervisorClient::Start();
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    client_ = std::move(*started);
    pid_ = client_->pid();
  }

  void TearDown() override {
    for (pid_t group : kill_groups_) ::kill(-group, SIGKILL);
    client_.reset();
    // With its daemon and its tries gone, the supervisor exits on its own.
    if (pid_ > 0) {
      EXPECT_TRUE(Eventually([&] {
        int status = 0;
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        return r == pid_ || (r < 0 && errno == ECHILD);
      })) << "the supervisor did not exit";
    }
    Eventually([] {
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
      return ::waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD;
    }, 5s);
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    fs::remove_all(dir_);
  }

  SupervisedTry Try(uint64_t id, const std::string& command) {
    SupervisedTry t;
    t.id = id;
    t.command = command;
    t.cwd = dir_;
    t.log_path = dir_ + "/run/task" + std::to_string(id) + ".log";
    t.journal_path = journal_;
    t.env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
    t.kill_grace_ms = 300;
    return t;
  }

  // Reads events until `done` holds (or a deadline); `raw` gets the bytes as they came.
  bool ReadUntil(const std::function<bool()>& done, std::string* raw = nullptr, bool byte_by_byte = false) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      pollfd pfd{client_->events_fd(), POLLIN, 0};
      if (::poll(&pfd, 1, 50) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::read(client_->events_fd(), buf, sizeof buf);
      if (n <= 0) return false;
      const std::string_view bytes(buf, static_cast<size_t>(n));
      if (raw) raw->append(bytes);
      if (byte_by_byte) {
        for (char c : bytes) client_->Feed(std::string_view(&c, 1), &events_);
      } else {
        client_->Feed(bytes, &events_);
      }
    }
    return true;
  }

  const SupervisorEvent* Find(Kind kind, uint64_t id) const {
    for (const SupervisorEvent& e : events_) {
      if (e.kind == kind && e.id == id) return &e;
    }
    return nullptr;
  }

  SupervisorEvent WaitFor(Kind kind, uint64_t id) {
    const bool found = ReadUntil([&] { return Find(kind, id) != nullptr; });
    EXPECT_TRUE(found) << "no event of kind " << static_cast<int>(kind) << " for try " << id;
    return found ? *Find(kind, id) : SupervisorEvent{};
  }

  void OpenGate(const std::string& fifo) {
    int fd = -1;
    ASSERT_TRUE(Eventually([&] { return (fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK)) >= 0; }));
    ASSERT_EQ(::write(fd, "go\n", 3), 3);
    ::close(fd);
  }

  JournalTry Recorded(const std::string& log_path) {
    auto read = ReadTryJournal(journal_);
    if (!read.ok() || !read->count(log_path)) return {};
    return read->at(log_path);
  }

  std::string dir_;
  std::string journal_;
  std::unique_ptr<SupervisorClient> client_;
  pid_t pid_ = 0;
  std::vector<SupervisorEvent> events_;
  std::vector<pid_t> kill_groups_;
};

TEST_F(SupervisorTest, RunsATryAndRecordsIt) {
  SupervisedTry t = Try(7, "echo \"$FOO\"; echo '::progress 1/4'; pwd; exit 3");
  t.env.push_back("FOO=bar baz");
  ASSERT_TRUE(client_->Send(t).ok());
  SupervisorEvent started = WaitFor(Kind::kStarted, 7);
  EXPECT_GT(started.pid, 0);
  EXPECT_EQ(WaitFor(Kind::kProgress, 7).progress, 0.25);
  SupervisorEvent exited = WaitFor(Kind::kExited, 7);
  EXPECT_EQ(exited.exit_code, 3);
  EXPECT_EQ(exited.reason, "exit code 3");
  EXPECT_GT(exited.at_unix_ms, 0);
  // In this order: started, progress, exited.
  ASSERT_EQ(events_.size(), 3u);
  EXPECT_EQ(events_[0].kind, Kind::kStarted);
  EXPECT_EQ(events_[2].kind, Kind::kExited);
  EXPECT_EQ(ReadFile(t.log_path), "bar baz\n" + fs::canonical(dir_).string() + "\n");
  JournalTry recorded = Recorded(t.log_path);
  ASSERT_TRUE(recorded.start && recorded.end);
  EXPECT_EQ(recorded.start->pid, started.pid);
  EXPECT_EQ(recorded.start->supervisor_pid, pid_);
  EXPECT_EQ(recorded.start->supervisor_start_time, ReadProcStat(pid_)->start_time);
  EXPECT_EQ(recorded.end->exit_code, 3);
  EXPECT_EQ(recorded.end->at, TimePoint(std::chrono::milliseconds(exited.at_unix_ms)));
}

TEST_F(SupervisorTest, FeedReassemblesEventsSplitAnywhere) {
  ASSERT_TRUE(client_->Send(Try(1, "echo '::progress 1/2'; exit 5")).ok());
  std::string raw;
  ASSERT_TRUE(ReadUntil([&] { return Find(Kind::kExited, 1) != nullptr; }, &raw, /*byte_by_byte=*/true));
  ASSERT_EQ(events_.size(), 3u);
  EXPECT_EQ(events_[1].progress, 0.5);
  EXPECT_EQ(events_[2].exit_code, 5);
  EXPECT_EQ(events_[2].reason, "exit code 5");
  // The same bytes all at once give the same events; a cut-off tail waits for the rest.
  std::vector<SupervisorEvent> again;
  client_->Feed(std::string_view(raw).substr(0, raw.size() - 1), &again);
  ASSERT_EQ(again.size(), 2u);
  client_->Feed(std::string_view(raw).substr(raw.size() - 1), &again);
  ASSERT_EQ(again.size(), 3u);
  EXPECT_EQ(again[2].exit_code, 5);
  EXPECT_EQ(again[0].pid, events_[0].pid);
}

TEST_F(SupervisorTest, ADuplicateIdIsNotStartedAndStopEndsTheTry) {
  SupervisedTry t = Try(3, "trap '' TERM; echo '::progress 1/1'; sleep 1000");
  ASSERT_TRUE(client_->Send(t).ok());
  const SupervisorEvent started = WaitFor(Kind::kStarted, 3);
  kill_groups_.push_back(static_cast<pid_t>(started.pid));
  WaitFor(Kind::kProgress, 3);
  SupervisedTry duplicate = Try(3, "touch '" + dir_ + "/ran'");
  duplicate.log_path = dir_ + "/run/other.log";
  ASSERT_TRUE(client_->Send(duplicate).ok());
  SupervisorEvent refused = WaitFor(Kind::kNotStarted, 3);
  EXPECT_TRUE(refused.reason.find("already runs a try with this id") != std::string::npos) << refused.reason;
  EXPECT_FALSE(fs::exists(dir_ + "/ran"));
  EXPECT_FALSE(Recorded(duplicate.log_path).start);

  // It ignores SIGTERM: SIGKILL follows after kill_grace_ms.
  ASSERT_TRUE(client_->Stop(3).ok());
  ASSERT_TRUE(client_->Stop(3).ok());  // repeatable
  SupervisorEvent exited = WaitFor(Kind::kExited, 3);
  EXPECT_EQ(exited.exit_code, 137);
  EXPECT_TRUE(exited.reason.find("SIGTERM, then SIGKILL") != std::string::npos) << exited.reason;
  ASSERT_TRUE(client_->Stop(3).ok());  // after its end: nothing to do
  ASSERT_TRUE(client_->Stop(99).ok());  // never known
  EXPECT_EQ(Recorded(t.log_path).end->exit_code, 137);
}

TEST_F(SupervisorTest, AppliesLimits) {
  SupervisedTry t = Try(4, "ulimit -n; echo 0123456789abcdefghij");
  t.limits.open_files = 64;
  t.limits.log_size = 10;
  ASSERT_TRUE(client_->Send(t).ok());
  SupervisorEvent exited = WaitFor(Kind::kExited, 4);
  EXPECT_EQ(exited.exit_code, 0);
  const std::string log = ReadFile(t.log_path);
  EXPECT_TRUE(log.starts_with("64\n0123456")) << log;  // 10 bytes of output
  EXPECT_FALSE(log.find("0123456789") != std::string::npos) << log;
  EXPECT_TRUE(log.find("limits.log_size") != std::string::npos) << log;
}

TEST_F(SupervisorTest, OutlivesItsDaemonUntilItsLastTryEnds) {
  const std::string gate = dir_ + "/gate";
  ASSERT_EQ(::mkfifo(gate.c_str(), 0600), 0);
  SupervisedTry t = Try(5, "read line < '" + gate + "'; echo \"got $line\"; exit 6");
  ASSERT_TRUE(client_->Send(t).ok());
  const SupervisorEvent started = WaitFor(Kind::kStarted, 5);
  kill_groups_.push_back(static_cast<pid_t>(started.pid));

  client_.reset();  // the daemon is gone
  // Still there: it has a try to finish.
  int status = 0;
  EXPECT_EQ(::waitpid(pid_, &status, WNOHANG), 0);
  EXPECT_FALSE(Recorded(t.log_path).end);
  OpenGate(gate);
  pid_t reaped = 0;
  ASSERT_TRUE(Eventually([&] { return (reaped = ::waitpid(pid_, &status, WNOHANG)) != 0; }));
  ASSERT_EQ(reaped, pid_);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  pid_ = 0;
  JournalTry recorded = Recorded(t.log_path);
  ASSERT_TRUE(recorded.end);
  EXPECT_EQ(recorded.end->exit_code, 6);
  EXPECT_EQ(ReadFile(t.log_path), "got go\n");
}

TEST_F(SupervisorTest, SendFailsOnceTheSupervisorIsGone) {
  ASSERT_EQ(::kill(pid_, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid_, nullptr, 0), pid_);
  pid_ = 0;
  Status s = client_->Send(Try(1, "true"));
  EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
  // And the events socket reports the end.
  char c;
  EXPECT_EQ(::read(client_->events_fd(), &c, 1), 0);
}

}  // namespace
}  // namespace nightshift

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
#include <utility>
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
    // Never 0 (or less): kill(0, ...) would hit our own process group, and that of ctest.
    for (pid_t group : kill_groups_) {
      if (group > 0) ::kill(-group, SIGKILL);
    }
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

  // The event, which must have arrived; a default one (and a failure) if it has not.
  SupervisorEvent Get(Kind kind, uint64_t id) const {
    const SupervisorEvent* e = Find(kind, id);
    if (!e) ADD_FAILURE() << "no event of kind " << static_cast<int>(kind) << " for try " << id;
    return e ? *e : SupervisorEvent{};
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

  // The index in events_ of the first event of this kind for this try; -1 if none.
  long IndexOf(Kind kind, uint64_t id) const {
    auto it = std::find_if(events_.begin(), events_.end(),
                           [&](const SupervisorEvent& e) { return e.kind == kind && e.id == id; });
    return it == events_.end() ? -1 : static_cast<long>(it - events_.begin());
  }

  // A FIFO a try blocks on (`read line < GATE`) until OpenGate().
  std::string MakeGate(const std::string& name) {
    const std::string gate = dir_ + "/" + name;
    EXPECT_EQ(::mkfifo(gate.c_str(), 0600), 0);
    return gate;
  }

  // A file that exists once the try with this id ran (see Touch()).
  std::string Marker(uint64_t id) const { return dir_ + "/ran" + std::to_string(id); }
  std::string Touch(uint64_t id) const { return "touch '" + Marker(id) + "'"; }

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
  const int64_t sent_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count();
  ASSERT_TRUE(client_->Send(t).ok());
  SupervisorEvent started = WaitFor(Kind::kStarted, 7);
  EXPECT_GT(started.pid, 0);
  EXPECT_EQ(WaitFor(Kind::kProgress, 7).progress, 0.25);
  SupervisorEvent exited = WaitFor(Kind::kExited, 7);
  EXPECT_EQ(exited.exit_code, 3);
  EXPECT_EQ(exited.reason, "exit code 3");
  EXPECT_GT(exited.at_unix_ms, 0);
  // The start is stamped when it happened, by the supervisor's clock.
  EXPECT_GE(started.at_unix_ms, sent_ms);
  EXPECT_LE(started.at_unix_ms, exited.at_unix_ms);
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

TEST_F(SupervisorTest, ATryGetsTheBaseEnvironmentWithItsOwnVariablesOverIt) {
  ASSERT_TRUE(client_->SetBaseEnvironment({"GREETING=hello", "PATH=/usr/bin:/bin", "TARGET=base"}).ok());
  SupervisedTry t = Try(8, "echo \"$GREETING $TARGET $OWN\"; env | grep -c '^TARGET='");
  t.env = {"OWN=mine", "TARGET=try"};  // PATH comes from the base
  ASSERT_TRUE(client_->Send(t).ok());
  EXPECT_EQ(WaitFor(Kind::kExited, 8).exit_code, 0);
  EXPECT_EQ(ReadFile(t.log_path), "hello try mine\n1\n");
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

// --- standbys: a try that waits in the slot of a running one (its holder) ---

class SupervisorStandbyTest : public SupervisorTest {
 protected:
  static constexpr const char* kToken = "daemon-1";

  void SetUp() override {
    SupervisorTest::SetUp();
    if (HasFatalFailure()) return;
    fence_ = dir_ + "/standby.fence";
    // As a daemon does before it sends any standby.
    ASSERT_TRUE(ClaimStandbyFence(fence_, kToken).ok());
  }

  SupervisedTry Standby(uint64_t id, uint64_t after, const std::string& command, bool after_success) {
    SupervisedTry t = Try(id, command);
    t.after = after;
    t.after_success = after_success;
    t.fence_path = fence_;
    t.fence_token = kToken;
    return t;
  }

  // Its process group is killed in TearDown, whatever happened.
  void Track(const SupervisorEvent& started) {
    if (started.pid > 0) kill_groups_.push_back(static_cast<pid_t>(started.pid));
  }

  // Sends a try that blocks on `gate` until OpenGate(gate), then runs `then`; waits for its start.
  void SendHolder(uint64_t id, const std::string& gate, const std::string& then = "exit 0") {
    ASSERT_TRUE(client_->Send(Try(id, "read line < '" + gate + "'; " + then)).ok());
    Track(WaitFor(Kind::kStarted, id));
  }

  // Returns once the supervisor has acted on every request sent before: they are read and
  // handled in order, and a standby for a try it never heard of is declined at once. (Without
  // this, a holder let go right after its standby was sent could end before the supervisor
  // read the standby, which it would then rightly decline.)
  void Sync() {
    const uint64_t id = next_sync_id_++;
    ASSERT_TRUE(client_->Send(Standby(id, kNeverSent, "true", false)).ok());
    WaitFor(Kind::kDeclined, id);
  }

  // The standby `id` was declined and did not run: no start event, no start in the journal,
  // no marker. Call once the supervisor has sent whatever it was going to send for it.
  void ExpectNeverRan(uint64_t id) {
    EXPECT_EQ(Find(Kind::kStarted, id), nullptr) << "standby " << id << " started";
    EXPECT_EQ(Find(Kind::kExited, id), nullptr) << "standby " << id << " ran";
    EXPECT_FALSE(Recorded(Try(id, "").log_path).start) << "standby " << id << " was journaled";
    EXPECT_FALSE(fs::exists(Marker(id))) << "standby " << id << " ran";
  }

  // The holder `holder`, let go through `gate`, ends and its standby `standby` is declined;
  // returns the holder's kExited and the reason of the decline.
  std::pair<SupervisorEvent, std::string> ExpectDeclinedWhenHolderEnds(uint64_t holder, uint64_t standby,
                                                                       const std::string& gate) {
    OpenGate(gate);
    const SupervisorEvent exited = WaitFor(Kind::kExited, holder);
    const std::string reason = WaitFor(Kind::kDeclined, standby).reason;
    EXPECT_FALSE(exited.handed_off);
    Sync();  // a (wrong) start of the standby would have come right after the holder's end
    ExpectNeverRan(standby);
    return {exited, reason};
  }

  static constexpr uint64_t kNeverSent = 999999;
  std::string fence_;
  uint64_t next_sync_id_ = 10000;
};

TEST_F(SupervisorStandbyTest, AStandbyStartsInItsHoldersSlotAsItEnds) {
  const std::string gate = MakeGate("gate");
  SupervisedTry holder_try = Try(1, "read line < '" + gate + "'");
  holder_try.output_path = dir_ + "/output.json";  // named but not written: no reason to wait
  ASSERT_TRUE(client_->Send(holder_try).ok());
  Track(WaitFor(Kind::kStarted, 1));
  SupervisedTry standby = Standby(2, 1, Touch(2) + "; exit 4", /*after_success=*/true);
  ASSERT_TRUE(client_->Send(standby).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  // Not started now: it waits for the holder's end.
  EXPECT_EQ(Find(Kind::kStarted, 2), nullptr);
  EXPECT_FALSE(fs::exists(Marker(2)));
  EXPECT_FALSE(Recorded(standby.log_path).start);

  OpenGate(gate);
  const SupervisorEvent exited = WaitFor(Kind::kExited, 2);
  const SupervisorEvent holder = Get(Kind::kExited, 1);
  EXPECT_EQ(holder.exit_code, 0);
  EXPECT_TRUE(holder.handed_off);
  EXPECT_EQ(exited.exit_code, 4);
  EXPECT_FALSE(exited.handed_off);  // nothing waited on the standby
  EXPECT_EQ(Find(Kind::kDeclined, 2), nullptr);
  // In this order: the holder's end, the standby's start, the standby's end.
  EXPECT_LT(IndexOf(Kind::kExited, 1), IndexOf(Kind::kStarted, 2));
  EXPECT_LT(IndexOf(Kind::kStarted, 2), IndexOf(Kind::kExited, 2));
  const SupervisorEvent started = Get(Kind::kStarted, 2);
  EXPECT_GT(started.pid, 0);
  EXPECT_TRUE(fs::exists(Marker(2)));  // its command really ran

  // Both are journaled, the holder's end before the standby's start.
  const JournalTry h = Recorded(Try(1, "").log_path);
  const JournalTry s = Recorded(standby.log_path);
  ASSERT_TRUE(h.start && h.end);
  ASSERT_TRUE(s.start && s.end);
  EXPECT_EQ(s.start->pid, started.pid);
  EXPECT_EQ(s.start->supervisor_pid, pid_);
  EXPECT_EQ(s.end->exit_code, 4);
  const std::string journal = ReadFile(journal_);
  EXPECT_LT(journal.find("E\t" + Try(1, "").log_path + "\t"), journal.find("S\t" + standby.log_path + "\t"))
      << journal;
}

// The journal names each try by pid and start time, which is how a restarted daemon tells its
// tries from processes that got their pids later; the start time must be the kernel's.
TEST_F(SupervisorStandbyTest, JournalsEachTryWithTheStartTimeTheKernelGaveIt) {
  const std::string holder_gate = MakeGate("holder");
  const std::string standby_gate = MakeGate("standby");
  ASSERT_NO_FATAL_FAILURE(SendHolder(1, holder_gate));
  ASSERT_TRUE(client_->Send(Standby(2, 1, "read line < '" + standby_gate + "'", true)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  const SupervisorEvent holder = Get(Kind::kStarted, 1);
  const std::optional<ProcStat> holder_stat = ReadProcStat(static_cast<pid_t>(holder.pid));
  ASSERT_TRUE(holder_stat);
  OpenGate(holder_gate);
  const SupervisorEvent standby = WaitFor(Kind::kStarted, 2);
  Track(standby);
  const std::optional<ProcStat> standby_stat = ReadProcStat(static_cast<pid_t>(standby.pid));
  ASSERT_TRUE(standby_stat);  // still running: it waits on its gate

  const JournalTry h = Recorded(Try(1, "").log_path);
  const JournalTry s = Recorded(Try(2, "").log_path);
  ASSERT_TRUE(h.start && s.start);
  EXPECT_EQ(h.start->pid, holder.pid);
  EXPECT_EQ(h.start->start_time, holder_stat->start_time);
  EXPECT_EQ(s.start->pid, standby.pid);
  EXPECT_EQ(s.start->start_time, standby_stat->start_time);
  EXPECT_GT(s.start->start_time, 0u);
  OpenGate(standby_gate);
  EXPECT_EQ(WaitFor(Kind::kExited, 2).exit_code, 0);
}

TEST_F(SupervisorStandbyTest, RoutineEventsWaitBrieflyWhileEverySlotHasAStandby) {
  const std::string first_gate = MakeGate("first");
  const std::string second_gate = MakeGate("second");
  ASSERT_NO_FATAL_FAILURE(SendHolder(1, first_gate));
  ASSERT_TRUE(client_->Send(Standby(2, 1, "read line < '" + second_gate + "'", false)).ok());
  ASSERT_TRUE(client_->Send(Standby(3, 2, "true", false)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());

  // 1 ends and 2 starts in its slot, with 3 queued behind it: the daemon has nothing to do, so
  // the two events wait a little (they come later than the end by at least most of the hold)
  // but not until something else happens: 2 is still blocked on its gate when they come.
  OpenGate(first_gate);
  const SupervisorEvent exited = WaitFor(Kind::kExited, 1);
  const int64_t came_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  EXPECT_GE(came_ms - exited.at_unix_ms, 3) << "sent at once although a standby was queued";
  Track(WaitFor(Kind::kStarted, 2));
  EXPECT_EQ(Find(Kind::kExited, 2), nullptr);

  // 2 ends and 3, the slot's last standby, starts: the daemon must queue the next, so both are
  // sent with 3's end.
  OpenGate(second_gate);
  EXPECT_EQ(WaitFor(Kind::kExited, 3).exit_code, 0);
  EXPECT_LT(IndexOf(Kind::kExited, 2), IndexOf(Kind::kStarted, 3));
}

TEST_F(SupervisorStandbyTest, AfterSuccessDeclinesTheStandbyWhenTheHolderFails) {
  const std::string gate = MakeGate("gate");
  SendHolder(1, gate, "exit 1");
  ASSERT_TRUE(client_->Send(Standby(2, 1, Touch(2), /*after_success=*/true)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  auto [exited, reason] = ExpectDeclinedWhenHolderEnds(1, 2, gate);
  EXPECT_EQ(exited.exit_code, 1);
  EXPECT_TRUE(reason.find("did not succeed") != std::string::npos) << reason;
  EXPECT_TRUE(Recorded(Try(1, "").log_path).end);
}

TEST_F(SupervisorStandbyTest, AfterSuccessDeclinesTheStandbyWhenTheHolderIsStopped) {
  // The holder exits 0 on SIGTERM: being asked to stop is what declines the standby.
  ASSERT_TRUE(client_->Send(Try(3, "trap 'exit 0' TERM; " + Touch(3) + "; while :; do sleep 0.05; done")).ok());
  Track(WaitFor(Kind::kStarted, 3));
  ASSERT_TRUE(client_->Send(Standby(4, 3, Touch(4), /*after_success=*/true)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  ASSERT_TRUE(Eventually([&] { return fs::exists(Marker(3)); }));  // the trap is set
  ASSERT_TRUE(client_->Stop(3).ok());
  const SupervisorEvent exited = WaitFor(Kind::kExited, 3);
  EXPECT_EQ(exited.exit_code, 0) << exited.reason;
  EXPECT_FALSE(exited.handed_off);
  const std::string reason = WaitFor(Kind::kDeclined, 4).reason;
  EXPECT_TRUE(reason.find("did not succeed") != std::string::npos) << reason;
  ASSERT_NO_FATAL_FAILURE(Sync());
  ExpectNeverRan(4);
}

TEST_F(SupervisorStandbyTest, AfterSuccessDeclinesTheStandbyWhenTheHolderWroteAnOutput) {
  const std::string gate = MakeGate("gate");
  const std::string output = dir_ + "/output.json";
  SupervisedTry holder = Try(1, "read line < '" + gate + "'; echo '{}' > '" + output + "'");
  holder.output_path = output;
  ASSERT_TRUE(client_->Send(holder).ok());
  Track(WaitFor(Kind::kStarted, 1));
  ASSERT_TRUE(client_->Send(Standby(2, 1, Touch(2), /*after_success=*/true)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  auto [exited, reason] = ExpectDeclinedWhenHolderEnds(1, 2, gate);
  EXPECT_EQ(exited.exit_code, 0);
  EXPECT_TRUE(fs::exists(output));
  EXPECT_TRUE(reason.find("wrote an output") != std::string::npos) << reason;
}

TEST_F(SupervisorStandbyTest, WithoutAfterSuccessAStandbyStartsHoweverItsHolderEnds) {
  // Exit 1.
  const std::string gate = MakeGate("gate");
  SendHolder(1, gate, "exit 1");
  ASSERT_TRUE(client_->Send(Standby(2, 1, Touch(2), /*after_success=*/false)).ok());
  // Stopped.
  ASSERT_TRUE(client_->Send(Try(3, "sleep 1000")).ok());
  Track(WaitFor(Kind::kStarted, 3));
  ASSERT_TRUE(client_->Send(Standby(4, 3, Touch(4), /*after_success=*/false)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());

  OpenGate(gate);
  EXPECT_EQ(WaitFor(Kind::kExited, 2).exit_code, 0);
  const SupervisorEvent failed = Get(Kind::kExited, 1);
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_TRUE(failed.handed_off);
  EXPECT_TRUE(fs::exists(Marker(2)));
  EXPECT_TRUE(Recorded(Try(2, "").log_path).start);

  ASSERT_TRUE(client_->Stop(3).ok());
  EXPECT_EQ(WaitFor(Kind::kExited, 4).exit_code, 0);
  const SupervisorEvent stopped = Get(Kind::kExited, 3);
  EXPECT_EQ(stopped.exit_code, 143) << stopped.reason;
  EXPECT_TRUE(stopped.handed_off);
  EXPECT_TRUE(fs::exists(Marker(4)));
  EXPECT_EQ(Find(Kind::kDeclined, 2), nullptr);
  EXPECT_EQ(Find(Kind::kDeclined, 4), nullptr);
}

TEST_F(SupervisorStandbyTest, AStandbyThatArrivesAfterItsTryEndedTakesTheFreedSlotAtOnce) {
  // The daemon sent it while the try still ran, and keeps the slot for it: no round trip.
  ASSERT_TRUE(client_->Send(Try(1, "exit 3")).ok());
  EXPECT_FALSE(WaitFor(Kind::kExited, 1).handed_off);
  ASSERT_TRUE(client_->Send(Standby(2, 1, Touch(2), /*after_success=*/false)).ok());
  Track(WaitFor(Kind::kStarted, 2));
  EXPECT_EQ(WaitFor(Kind::kExited, 2).exit_code, 0);
  EXPECT_TRUE(fs::exists(Marker(2)));
  EXPECT_TRUE(Recorded(Try(2, "").log_path).start);
  EXPECT_EQ(Find(Kind::kDeclined, 2), nullptr);
  // The slot is taken now: a second standby for it is declined.
  ASSERT_TRUE(client_->Send(Standby(3, 1, Touch(3), /*after_success=*/false)).ok());
  EXPECT_TRUE(WaitFor(Kind::kDeclined, 3).reason.find("already ended") != std::string::npos);
  ASSERT_NO_FATAL_FAILURE(Sync());
  ExpectNeverRan(3);
}

TEST_F(SupervisorStandbyTest, AStandbyForATryThatEndedIsDeclinedWhenItNeedsItsSuccessOrItsSlotIsTaken) {
  // Whether it succeeded is the daemon's to judge now (a stop it asked for may be on its way).
  ASSERT_TRUE(client_->Send(Try(1, "true")).ok());
  EXPECT_EQ(WaitFor(Kind::kExited, 1).exit_code, 0);
  ASSERT_TRUE(client_->Send(Standby(2, 1, Touch(2), /*after_success=*/true)).ok());
  const std::string reason = WaitFor(Kind::kDeclined, 2).reason;
  EXPECT_TRUE(reason.find("already ended") != std::string::npos) << reason;
  // A try whose standby took its slot as it ended.
  const std::string gate = MakeGate("gate");
  SendHolder(3, gate);
  ASSERT_TRUE(client_->Send(Standby(4, 3, "true", /*after_success=*/false)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  OpenGate(gate);
  EXPECT_TRUE(WaitFor(Kind::kExited, 3).handed_off);
  WaitFor(Kind::kExited, 4);
  ASSERT_TRUE(client_->Send(Standby(5, 3, Touch(5), /*after_success=*/false)).ok());
  WaitFor(Kind::kDeclined, 5);
  // Nor one for a try it never heard of.
  ASSERT_TRUE(client_->Send(Standby(6, 77, Touch(6), /*after_success=*/false)).ok());
  WaitFor(Kind::kDeclined, 6);
  ASSERT_NO_FATAL_FAILURE(Sync());
  ExpectNeverRan(2);
  ExpectNeverRan(5);
  ExpectNeverRan(6);
}

TEST_F(SupervisorStandbyTest, AStandbyCanWaitOnAStandby) {
  const std::string gate = MakeGate("gate");
  const std::string order = dir_ + "/order";
  SendHolder(1, gate);
  ASSERT_TRUE(client_->Send(Standby(2, 1, "echo 2 >> '" + order + "'", /*after_success=*/true)).ok());
  ASSERT_TRUE(client_->Send(Standby(3, 2, "echo 3 >> '" + order + "'; exit 5", /*after_success=*/true)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  EXPECT_EQ(Find(Kind::kStarted, 2), nullptr);
  EXPECT_EQ(Find(Kind::kStarted, 3), nullptr);

  OpenGate(gate);
  EXPECT_EQ(WaitFor(Kind::kExited, 3).exit_code, 5);
  EXPECT_TRUE(Get(Kind::kExited, 1).handed_off);
  EXPECT_TRUE(Get(Kind::kExited, 2).handed_off);
  EXPECT_FALSE(Get(Kind::kExited, 3).handed_off);
  // One after the other, in the same slot.
  EXPECT_LT(IndexOf(Kind::kExited, 1), IndexOf(Kind::kStarted, 2));
  EXPECT_LT(IndexOf(Kind::kExited, 2), IndexOf(Kind::kStarted, 3));
  EXPECT_EQ(ReadFile(order), "2\n3\n");
  for (uint64_t id : {1, 2, 3}) {
    const JournalTry recorded = Recorded(Try(id, "").log_path);
    EXPECT_TRUE(recorded.start && recorded.end) << id;
  }
}

TEST_F(SupervisorStandbyTest, DecliningAStandbyDeclinesTheOneWaitingOnIt) {
  const std::string gate = MakeGate("gate");
  SendHolder(1, gate, "exit 1");
  ASSERT_TRUE(client_->Send(Standby(2, 1, Touch(2), /*after_success=*/true)).ok());
  // It would start however 2 ended, but 2 never starts, so there is no slot for it.
  ASSERT_TRUE(client_->Send(Standby(3, 2, Touch(3), /*after_success=*/false)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  auto [exited, reason] = ExpectDeclinedWhenHolderEnds(1, 2, gate);
  EXPECT_EQ(exited.exit_code, 1);
  const std::string cascaded = WaitFor(Kind::kDeclined, 3).reason;
  EXPECT_TRUE(cascaded.find("did not start") != std::string::npos) << cascaded;
  ExpectNeverRan(3);
}

TEST_F(SupervisorStandbyTest, StopOrWithdrawDeclinesAWaitingStandby) {
  const std::string gate = MakeGate("gate");
  SendHolder(1, gate);
  ASSERT_TRUE(client_->Send(Standby(2, 1, Touch(2), /*after_success=*/false)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  ASSERT_TRUE(client_->Stop(2).ok());
  std::string reason = WaitFor(Kind::kDeclined, 2).reason;
  EXPECT_TRUE(reason.find("stopped before it started") != std::string::npos) << reason;

  // The slot is free for another standby; withdrawing it declines it and the one behind it.
  ASSERT_TRUE(client_->Send(Standby(3, 1, Touch(3), /*after_success=*/false)).ok());
  ASSERT_TRUE(client_->Send(Standby(4, 3, Touch(4), /*after_success=*/false)).ok());
  ASSERT_TRUE(client_->Withdraw(3).ok());
  reason = WaitFor(Kind::kDeclined, 3).reason;
  EXPECT_TRUE(reason.find("withdrawn") != std::string::npos) << reason;
  reason = WaitFor(Kind::kDeclined, 4).reason;
  EXPECT_TRUE(reason.find("did not start") != std::string::npos) << reason;
  ASSERT_TRUE(client_->Withdraw(3).ok());  // again: nothing to do

  // The holder went on all along, and hands its slot to the one standby left.
  EXPECT_EQ(Find(Kind::kExited, 1), nullptr);
  ASSERT_TRUE(client_->Send(Standby(5, 1, Touch(5), /*after_success=*/true)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  OpenGate(gate);
  EXPECT_EQ(WaitFor(Kind::kExited, 5).exit_code, 0);
  const SupervisorEvent holder = Get(Kind::kExited, 1);
  EXPECT_EQ(holder.exit_code, 0) << holder.reason;
  EXPECT_TRUE(holder.handed_off);
  for (uint64_t id : {2, 3, 4}) ExpectNeverRan(id);
  EXPECT_EQ(std::count_if(events_.begin(), events_.end(),
                          [](const SupervisorEvent& e) { return e.kind == Kind::kDeclined && e.id == 3; }),
            1);  // the second Withdraw did nothing
  EXPECT_TRUE(fs::exists(Marker(5)));
}

TEST_F(SupervisorStandbyTest, WithdrawDoesNotStopARunningTry) {
  const std::string gate = MakeGate("gate");
  SendHolder(1, gate, "exit 6");
  ASSERT_TRUE(client_->Withdraw(1).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  EXPECT_EQ(Find(Kind::kExited, 1), nullptr);
  EXPECT_EQ(Find(Kind::kDeclined, 1), nullptr);
  OpenGate(gate);  // it still runs: it reads the gate
  const SupervisorEvent exited = WaitFor(Kind::kExited, 1);
  EXPECT_EQ(exited.exit_code, 6);
  EXPECT_EQ(exited.reason, "exit code 6");
  EXPECT_EQ(Find(Kind::kDeclined, 1), nullptr);
}

TEST_F(SupervisorStandbyTest, AStandbyIsDeclinedOnceANewerDaemonHasClaimedTheFence) {
  ASSERT_TRUE(ClaimStandbyFence(fence_, "old").ok());
  const std::string gate = MakeGate("gate");
  SendHolder(1, gate);
  SupervisedTry standby = Standby(2, 1, Touch(2), /*after_success=*/false);
  standby.fence_token = "old";
  ASSERT_TRUE(client_->Send(standby).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  ASSERT_TRUE(ClaimStandbyFence(fence_, "new").ok());  // a restarted daemon
  auto [exited, reason] = ExpectDeclinedWhenHolderEnds(1, 2, gate);
  EXPECT_EQ(exited.exit_code, 0);
  EXPECT_TRUE(reason.find("newer daemon") != std::string::npos) << reason;

  // The newer daemon's own standbys do start.
  const std::string gate2 = MakeGate("gate2");
  SendHolder(3, gate2);
  SupervisedTry newer = Standby(4, 3, Touch(4), /*after_success=*/false);
  newer.fence_token = "new";
  ASSERT_TRUE(client_->Send(newer).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  OpenGate(gate2);
  EXPECT_EQ(WaitFor(Kind::kExited, 4).exit_code, 0);
  EXPECT_TRUE(Get(Kind::kExited, 3).handed_off);
  EXPECT_TRUE(fs::exists(Marker(4)));
}

// Regression test: the supervisor once opened a fence file at its first standby and kept that
// descriptor (Supervisor::FenceFd). Once the file was removed and a newer daemon claimed the
// path anew (ClaimStandbyFence creates a new file), the old supervisor still read its own token
// from the old, unlinked file and started its standbys behind the newer daemon's back.
TEST_F(SupervisorStandbyTest, AStandbyIsDeclinedOnceANewerDaemonHasClaimedAReplacedFence) {
  // A first standby makes the supervisor open the fence file.
  const std::string gate = MakeGate("gate");
  SendHolder(1, gate);
  ASSERT_TRUE(client_->Send(Standby(2, 1, Touch(2), /*after_success=*/false)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  OpenGate(gate);
  EXPECT_EQ(WaitFor(Kind::kExited, 2).exit_code, 0);

  ASSERT_TRUE(fs::remove(fence_));
  ASSERT_TRUE(ClaimStandbyFence(fence_, "newer").ok());
  const std::string gate2 = MakeGate("gate2");
  SendHolder(3, gate2);
  ASSERT_TRUE(client_->Send(Standby(4, 3, Touch(4), /*after_success=*/false)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  auto [exited, reason] = ExpectDeclinedWhenHolderEnds(3, 4, gate2);
  EXPECT_TRUE(reason.find("newer daemon") != std::string::npos) << reason;
}

// The supervisor's descriptors that are sockets (its two to the daemon, until it lets go).
int SocketsOf(pid_t pid) {
  int sockets = 0;
  std::error_code ec;
  for (fs::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code read_ec;
    if (fs::read_symlink(it->path(), read_ec).string().starts_with("socket:")) ++sockets;
  }
  return sockets;
}

TEST_F(SupervisorStandbyTest, WaitingStandbysDieWithTheDaemonsSockets) {
  const std::string gate = MakeGate("gate");
  SendHolder(1, gate, "exit 0");
  // Even one that would start however its holder ends.
  ASSERT_TRUE(client_->Send(Standby(2, 1, Touch(2), /*after_success=*/false)).ok());
  ASSERT_NO_FATAL_FAILURE(Sync());
  ASSERT_EQ(SocketsOf(pid_), 2);

  client_.reset();  // the daemon is gone
  // Once the supervisor has seen it (it closes its ends), let the holder go.
  ASSERT_TRUE(Eventually([&] { return SocketsOf(pid_) == 0; }));
  OpenGate(gate);
  // The holder finishes and is recorded; then the supervisor, with nothing left to run, exits.
  int status = 0;
  pid_t reaped = 0;
  ASSERT_TRUE(Eventually([&] { return (reaped = ::waitpid(pid_, &status, WNOHANG)) != 0; }));
  ASSERT_EQ(reaped, pid_);
  pid_ = 0;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const JournalTry holder = Recorded(Try(1, "").log_path);
  ASSERT_TRUE(holder.end);
  EXPECT_EQ(holder.end->exit_code, 0);
  EXPECT_FALSE(Recorded(Try(2, "").log_path).start);
  EXPECT_FALSE(fs::exists(Marker(2)));
}

}  // namespace
}  // namespace nightshift

#include "executor/supervisor.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <type_traits>
#include <utility>

#include "executor/environment.h"
#include "executor/task_protocol.h"
#include "executor/try_journal.h"
#include "executor/try_output.h"

namespace nightshift {
namespace {

// --- the wire: frames of u32 length + payload; integers in host order (same binary) ---

enum class Request : uint8_t { kStart = 1, kStop, kWithdraw, kBaseEnvironment };

class Writer {
 public:
  Writer() { out_.resize(sizeof(uint32_t)); }
  template <typename T>
    requires std::is_arithmetic_v<T> || std::is_enum_v<T>
  Writer& Put(T value) {
    out_.append(reinterpret_cast<const char*>(&value), sizeof value);
    return *this;
  }
  Writer& Put(std::string_view s) {
    Put(static_cast<uint32_t>(s.size()));
    out_.append(s);
    return *this;
  }
  std::string Frame() {
    const auto size = static_cast<uint32_t>(out_.size() - sizeof(uint32_t));
    std::memcpy(out_.data(), &size, sizeof size);
    return std::move(out_);
  }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <typename T>
    requires std::is_arithmetic_v<T> || std::is_enum_v<T>
  bool Get(T* value) {
    if (in_.size() < sizeof(T)) return ok_ = false;
    std::memcpy(value, in_.data(), sizeof(T));
    in_.remove_prefix(sizeof(T));
    return ok_;
  }
  bool Get(std::string* s) {
    uint32_t size = 0;
    if (!Get(&size) || in_.size() < size) return ok_ = false;
    s->assign(in_.substr(0, size));
    in_.remove_prefix(size);
    return ok_;
  }
  bool ok() const { return ok_; }

 private:
  std::string_view in_;
  bool ok_ = true;
};

// Cuts the whole frames off the front of `buffer`.
template <typename F>
void ForEachFrame(std::string& buffer, F&& on_frame) {
  size_t pos = 0;
  while (buffer.size() - pos >= sizeof(uint32_t)) {
    uint32_t size = 0;
    std::memcpy(&size, buffer.data() + pos, sizeof size);
    if (buffer.size() - pos - sizeof size < size) break;
    on_frame(std::string_view(buffer).substr(pos + sizeof size, size));
    pos += sizeof size + size;
  }
  buffer.erase(0, pos);
}

void PutLimit(Writer& w, const std::optional<int64_t>& value) {
  w.Put<uint8_t>(value.has_value()).Put<int64_t>(value.value_or(0));
}
bool GetLimit(Reader& r, std::optional<int64_t>* value) {
  uint8_t has = 0;
  int64_t v = 0;
  if (!r.Get(&has) || !r.Get(&v)) return false;
  if (has) *value = v;
  return true;
}

std::string EncodeStart(const SupervisedTry& t) {
  Writer w;
  w.Put(Request::kStart).Put(t.id).Put(t.command).Put(t.cwd).Put(t.log_path).Put(t.journal_path);
  w.Put(static_cast<uint32_t>(t.env.size()));
  for (const std::string& e : t.env) w.Put(e);
  PutLimit(w, t.limits.log_size);
  std::optional<int64_t> cpu_ms;
  if (t.limits.cpu_time) cpu_ms = t.limits.cpu_time->count();
  PutLimit(w, cpu_ms);
  PutLimit(w, t.limits.address_space);
  PutLimit(w, t.limits.open_files);
  std::optional<int64_t> nice;
  if (t.limits.nice) nice = *t.limits.nice;
  PutLimit(w, nice);
  w.Put(t.kill_grace_ms).Put(t.output_path).Put(t.after).Put<uint8_t>(t.after_success);
  w.Put(t.fence_path).Put(t.fence_token);
  return w.Frame();
}

bool DecodeStart(Reader& r, SupervisedTry* t) {
  uint32_t envc = 0;
  if (!r.Get(&t->id) || !r.Get(&t->command) || !r.Get(&t->cwd) || !r.Get(&t->log_path) ||
      !r.Get(&t->journal_path) || !r.Get(&envc)) {
    return false;
  }
  t->env.resize(envc);
  for (std::string& e : t->env) {
    if (!r.Get(&e)) return false;
  }
  std::optional<int64_t> cpu_ms, nice;
  if (!GetLimit(r, &t->limits.log_size) || !GetLimit(r, &cpu_ms) || !GetLimit(r, &t->limits.address_space) ||
      !GetLimit(r, &t->limits.open_files) || !GetLimit(r, &nice) || !r.Get(&t->kill_grace_ms)) {
    return false;
  }
  uint8_t after_success = 0;
  if (!r.Get(&t->output_path) || !r.Get(&t->after) || !r.Get(&after_success) || !r.Get(&t->fence_path) ||
      !r.Get(&t->fence_token)) {
    return false;
  }
  t->after_success = after_success != 0;
  if (cpu_ms) t->limits.cpu_time = Duration(*cpu_ms);
  if (nice) t->limits.nice = static_cast<int>(*nice);
  return true;
}

std::string EncodeEvent(const SupervisorEvent& e) {
  Writer w;
  w.Put(e.kind).Put(e.id).Put(e.pid).Put(e.exit_code).Put(e.progress).Put(e.reason).Put(e.at_unix_ms);
  w.Put<uint8_t>(e.handed_off);
  return w.Frame();
}

bool DecodeEvent(std::string_view frame, SupervisorEvent* e) {
  Reader r(frame);
  uint8_t handed_off = 0;
  const bool ok = r.Get(&e->kind) && r.Get(&e->id) && r.Get(&e->pid) && r.Get(&e->exit_code) &&
                  r.Get(&e->progress) && r.Get(&e->reason) && r.Get(&e->at_unix_ms) && r.Get(&handed_off);
  e->handed_off = handed_off != 0;
  return ok;
}

// --- the supervisor process ---

// What the vforked child needs, prepared beforehand: between vfork and exec the child shares
// our memory, so it allocates nothing and only makes system calls.
struct ChildPlan {
  const char* command = nullptr;
  const char* cwd = nullptr;  // nullptr: stay
  char* const* envp = nullptr;
  int out_fd = -1;
  int devnull = -1;
  int fence = -1;  // the standby fence while we hold its lock; -1 when not a standby
  std::optional<rlimit> cpu, address_space, open_files;
  std::optional<int> nice;
  // The child's start time as /proc/PID/stat gives it (clock ticks since boot), which the
  // kernel takes from CLOCK_BOOTTIME while it forks: so it is `ticks_before_fork` when the
  // clock is still on that tick afterwards, as it nearly always is (a tick is 10 ms, a vfork
  // a fraction of one). Else the child reads its /proc/self/stat into stat_text (vfork shares
  // our memory).
  uint64_t ticks_before_fork = 0;
  int64_t ns_per_tick = 0;
  char stat_text[1024];
  ssize_t stat_size = -1;
};

// CLOCK_BOOTTIME in clock ticks, as /proc/PID/stat counts a process's start; 0 when unknown.
uint64_t BootTicks(int64_t ns_per_tick) {
  timespec now{};
  if (ns_per_tick <= 0 || ::clock_gettime(CLOCK_BOOTTIME, &now) != 0) return 0;
  return static_cast<uint64_t>((now.tv_sec * int64_t{1000000000} + now.tv_nsec) / ns_per_tick);
}

void ChildSay(const char* a, const char* b, int err) {
  const char* parts[] = {"nightshift: ", a, b, ": ", std::strerror(err), "\n"};
  for (const char* p : parts) (void)!::write(2, p, std::strlen(p));
}

[[noreturn]] void ChildExec(ChildPlan& plan) {
  // First, so that the parent, which runs on as soon as our exec begins, never waits for the
  // rest of that exec (measured: -j 2 on 2 CPUs, about 5% off `wide 2000` and `chain 1000`):
  // - flock's lock belongs to the open file, and our copy of the fence would keep it locked
  //   until exec closes it, stalling the next standby's flock;
  // - the parent reading /proc/PID/stat would sleep on the kernel's exec lock; the wake-up then
  //   queues it on this CPU behind our shell while the other CPU may go idle, a standby waiting
  //   for it. Read here, the file costs the same and waits for nothing; and only when the
  //   clock has moved on to the next tick since the fork began (see ChildPlan).
  if (plan.fence >= 0) ::close(plan.fence);
  if (BootTicks(plan.ns_per_tick) != plan.ticks_before_fork) {
    if (const int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC); fd >= 0) {
      plan.stat_size = ::read(fd, plan.stat_text, sizeof plan.stat_text);
      ::close(fd);
    }
  }
  // A process group of its own, so stopping it reaches everything it started. Not a session:
  // ours has no terminal already, and each new session is a new scheduler autogroup, which
  // the kernel builds and tears down per try (about 10 us of CPU each, measured on
  // `wide 2000`) and which splits the CPU between tries rather than between sessions.
  ::setpgid(0, 0);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGQUIT}) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::dup2(plan.devnull, 0);
  ::dup2(plan.out_fd, 1);
  ::dup2(plan.out_fd, 2);
  if (plan.cwd && ::chdir(plan.cwd) != 0) {
    ChildSay("cannot change directory to ", plan.cwd, errno);
    ::_exit(127);
  }
  // Last, so that nothing of ours runs under them.
  if (plan.cpu && ::setrlimit(RLIMIT_CPU, &*plan.cpu) != 0) {
    ChildSay("cannot set limits.", "cpu_time", errno);
    ::_exit(126);
  }
  if (plan.address_space && ::setrlimit(RLIMIT_AS, &*plan.address_space) != 0) {
    ChildSay("cannot set limits.", "address_space", errno);
    ::_exit(126);
  }
  if (plan.open_files && ::setrlimit(RLIMIT_NOFILE, &*plan.open_files) != 0) {
    ChildSay("cannot set limits.", "open_files", errno);
    ::_exit(126);
  }
  if (plan.nice && ::setpriority(PRIO_PROCESS, 0, *plan.nice) != 0) {
    ChildSay("cannot set limits.", "nice", errno);
    ::_exit(126);
  }
  char sh[] = "sh";
  char dash_c[] = "-c";
  char* const argv[] = {sh, dash_c, const_cast<char*>(plan.command), nullptr};
  ::execve("/bin/sh", argv, plan.envp);
  ChildSay("cannot run ", "/bin/sh", errno);
  ::_exit(127);
}

// vfork: the parent sleeps until the child has exec'ed (or exited), and no page tables are
// copied, which is most of what a fork costs. Kept in a function of its own so that no local
// of the caller lives across it.
__attribute__((noinline)) pid_t SpawnChild(ChildPlan& plan) {
#if defined(__SANITIZE_ADDRESS__)
  const pid_t pid = ::fork();  // ASan's bookkeeping does not survive a shared address space
#else
  const pid_t pid = ::vfork();
#endif
  if (pid == 0) ChildExec(plan);
  return pid;
}

// A run's journal, open while tries of it run.
struct Journal {
  int fd = -1;
  int users = 0;
  int64_t reserved_until = 0;  // the file's blocks are allocated up to here
  int64_t size = 0;            // what we know of its length (other supervisors append too)
};

// Room kept allocated past the journal's end, so that the end of every running try can be
// recorded on a full disk.
constexpr int64_t kJournalReserve = 64 * 1024;
constexpr int64_t kJournalReserveLow = 16 * 1024;
// How long routine events (starts, progress, successful ends) may wait to be sent while every
// running try has a standby behind it (see FlushEventsIfDue).
constexpr int64_t kHoldEventsMs = 5;
// Journals kept open with no try running: a chain's next try reuses its run's descriptor.
constexpr size_t kMaxIdleJournals = 16;
// Ended tries remembered for a standby still on its way (Supervisor::vacated_): more than
// the daemon can send in one round trip.
constexpr size_t kMaxVacatedSlots = 1024;
// Output copied per try and round, so that one chatty task cannot starve the others.
constexpr size_t kMaxReadPerRound = 1 << 20;

struct Try {
  SupervisedTry request;
  pid_t pid = 0;
  int pidfd = -1;
  int pipe = -1;
  Journal* journal = nullptr;
  std::optional<TryOutput> output;
  bool stopping = false;
  bool killed = false;
  int64_t kill_deadline_ms = 0;
};

// epoll data: what a descriptor is (top byte) and which try (the rest).
enum Tag : uint64_t { kRequestsTag = 1, kEventsTag, kPipeTag, kPidfdTag };
uint64_t Tagged(Tag tag, uint64_t slot) { return (static_cast<uint64_t>(tag) << 56) | slot; }

class Supervisor {
 public:
  Supervisor(int requests, int events) : requests_(requests), events_(events) {}
  [[noreturn]] void Run();

 private:
  void OnRequests();
  // Starts a try now. A standby's kStarted goes to `*started` instead of out (the caller sends
  // it after the end of the try it replaces); false when it did not start.
  bool Start(SupervisedTry request, SupervisorEvent* started = nullptr);
  // Keeps a standby until the try it waits on ends.
  void AddStandby(SupervisedTry request);
  // Starts the standby waiting on the try that just ended, or declines it; true if it started.
  bool HandOff(const Try& ended, const TaskExit& exit, SupervisorEvent* started);
  // Declines the standby with this id, if there is one; false otherwise.
  bool DeclineStandby(uint64_t id, const std::string& reason);
  // Declines the standby waiting on the try `id`, which will not start or give up a slot.
  void DeclineWaitingOn(uint64_t id);
  // Whether the daemon that sent a standby is still the newest (its token is in the fence
  // file); call with the fence file locked.
  bool FenceHeld(int fd, const std::string& token);
  void StopTry(uint64_t id);
  void OnPipe(uint64_t slot);
  // Copies up to `limit` bytes of the try's output into its log; closes the pipe at its end.
  void CopyOutput(Try& t, size_t limit);
  void SendProgress(const Try& t, double progress);
  void OnExit(uint64_t slot);
  // Takes a descriptor out of the epoll set, then closes it. Closing alone is not enough: epoll
  // forgets a file only with its last descriptor, and a child that has not exec'ed yet holds a
  // copy of each of ours; an ended try's pidfd would keep waking us until then, a busy loop.
  void CloseWatched(int fd);
  // Queues an event. FlushEvents sends the queue: after each start the daemon asked for, and at
  // the end of each round of the loop when FlushEventsIfDue finds it due.
  void Send(const SupervisorEvent& event);
  void FlushEvents();
  void FlushEventsIfDue();
  Journal* OpenJournal(const std::string& path, std::string* error);
  void CloseJournal(Journal* journal, const std::string& path);
  // A try is done with its journal: kept open for the run's next tries, unless many are open.
  void ReleaseJournal(Journal* journal, const std::string& path);
  void NotStarted(uint64_t id, std::string reason);
  void Declined(uint64_t id, std::string reason);
  // kNotStarted or kDeclined: the try with this id did not start, and why.
  void SendRefusal(SupervisorEvent::Kind kind, uint64_t id, std::string reason);
  void CheckDeadlines();

  int requests_;
  int events_;
  int epoll_ = -1;
  int devnull_ = -1;
  bool daemon_gone_ = false;
  std::string in_;   // request bytes not parsed yet
  std::vector<std::string> base_env_;  // every try's, under its own variables (kBaseEnvironment)
  std::string out_;  // event bytes not sent yet
  int64_t held_since_ms_ = 0;  // when the oldest of them was queued
  bool urgent_ = false;        // they hold one the daemon must act on now
  bool waiting_writable_ = false;
  JournalStart self_{};
  int64_t ns_per_tick_ = 0;  // of /proc/PID/stat's times (USER_HZ)
  uint64_t next_slot_ = 1;
  std::map<uint64_t, Try> tries_;      // by slot
  std::map<uint64_t, uint64_t> slot_of_;  // request id -> slot
  std::map<std::string, Journal> journals_;
  std::map<uint64_t, SupervisedTry> standbys_;   // by the id of the try they wait on
  std::map<uint64_t, uint64_t> standby_after_;   // standby id -> the id it waits on
  // Tries that ended with no standby to take their slot, newest last: the daemon keeps such a
  // slot for the standby it may have sent meanwhile (see AddStandby). Only the last
  // kMaxVacatedSlots are kept; a standby for an older one is declined.
  std::deque<uint64_t> vacated_;
};

void Supervisor::Run() {
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  devnull_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (epoll_ < 0 || devnull_ < 0) ::_exit(1);
  ::fcntl(requests_, F_SETFL, O_NONBLOCK);
  ::fcntl(events_, F_SETFL, O_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = Tagged(kRequestsTag, 0);
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, requests_, &ev);
  if (auto stat = ReadProcStat(::getpid())) self_.supervisor_start_time = stat->start_time;
  if (const long hz = ::sysconf(_SC_CLK_TCK); hz > 0) ns_per_tick_ = 1000000000 / hz;
  self_.supervisor_pid = ::getpid();

  epoll_event ready[64];
  for (;;) {
    if (daemon_gone_ && tries_.empty()) ::_exit(0);
    int timeout = -1;
    for (const auto& [slot, t] : tries_) {
      if (!t.stopping || t.killed) continue;
      const int64_t left = std::max<int64_t>(0, t.kill_deadline_ms - MonotonicMs());
      timeout = timeout < 0 ? static_cast<int>(left) : std::min(timeout, static_cast<int>(left));
    }
    if (!out_.empty() && !waiting_writable_) {  // (a daemon slow to read wakes us with EPOLLOUT)
      const int left = static_cast<int>(std::max<int64_t>(0, held_since_ms_ + kHoldEventsMs - MonotonicMs()));
      timeout = timeout < 0 ? left : std::min(timeout, left);
    }
    const int n = ::epoll_wait(epoll_, ready, 64, timeout);
    if (n < 0 && errno != EINTR) ::_exit(1);
    for (int i = 0; i < n; ++i) {
      const uint64_t data = ready[i].data.u64;
      const uint64_t slot = data & ((uint64_t{1} << 56) - 1);
      switch (static_cast<Tag>(data >> 56)) {
        case kRequestsTag: OnRequests(); break;
        case kEventsTag: FlushEvents(); break;
        case kPipeTag: OnPipe(slot); break;
        case kPidfdTag: OnExit(slot); break;
      }
    }
    CheckDeadlines();
    // One write for the round's ends (and their standbys' starts): when both slots' tries end
    // together, the daemon wakes, and runs a pass, once for them, not once for each.
    FlushEventsIfDue();
  }
}

void Supervisor::OnRequests() {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(requests_, buf, sizeof buf);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    // The daemon is gone (or closed us): nobody asks for anything any more, and nobody hears.
    daemon_gone_ = true;
    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, requests_, nullptr);
    ::close(requests_);
    ::close(events_);
    requests_ = events_ = -1;
    out_.clear();
    break;
  }
  // Requests that arrived with the daemon's end are not acted on: it cannot hear of them, and
  // its successor starts those tries itself ("never started").
  if (daemon_gone_) {
    in_.clear();
    // Nor are standbys started: the next daemon decides about them from the journal.
    standbys_.clear();
    standby_after_.clear();
  }
  ForEachFrame(in_, [this](std::string_view frame) {
    Reader r(frame);
    Request kind{};
    if (!r.Get(&kind)) return;
    if (kind == Request::kStart) {
      SupervisedTry request;
      if (!DecodeStart(r, &request)) return;
      if (request.after != 0) {
        AddStandby(std::move(request));
      } else {
        Start(std::move(request));
        // A long batch of starts (each a vfork and exec) must not hold back the first ones' news.
        FlushEvents();
      }
    } else if (kind == Request::kStop) {
      uint64_t id = 0;
      if (r.Get(&id) && !DeclineStandby(id, "stopped before it started")) StopTry(id);
    } else if (kind == Request::kWithdraw) {
      uint64_t id = 0;
      if (r.Get(&id)) DeclineStandby(id, "withdrawn before it started");
    } else if (kind == Request::kBaseEnvironment) {
      uint32_t count = 0;
      if (!r.Get(&count)) return;
      std::vector<std::string> env(count);
      for (std::string& e : env) {
        if (!r.Get(&e)) return;
      }
      base_env_ = std::move(env);
    }
  });
}

Journal* Supervisor::OpenJournal(const std::string& path, std::string* error) {
  Journal& journal = journals_[path];
  if (journal.fd < 0) {
    // Its folder is the run's, which the logs share (each log is created at its first output).
    journal.fd = OpenForAppend(path);
    if (journal.fd < 0) {
      *error = "cannot open the tries journal " + path + ": " + std::strerror(errno);
      journals_.erase(path);
      return nullptr;
    }
    struct stat st {};
    if (::fstat(journal.fd, &st) == 0) journal.size = st.st_size;
    char last = '\n';
    if (journal.size > 0 && ::pread(journal.fd, &last, 1, journal.size - 1) == 1 && last != '\n') {
      // A record cut short (a full disk, a crash): ours must not be glued onto it.
      if (::write(journal.fd, "\n", 1) == 1) ++journal.size;
    }
    journal.reserved_until = journal.size;
  }
  if (journal.reserved_until - journal.size < kJournalReserveLow) {
    struct stat st {};
    if (::fstat(journal.fd, &st) == 0) journal.size = std::max<int64_t>(journal.size, st.st_size);
    if (::fallocate(journal.fd, FALLOC_FL_KEEP_SIZE, journal.size, kJournalReserve) == 0) {
      journal.reserved_until = journal.size + kJournalReserve;
    } else if (errno != EOPNOTSUPP) {
      *error = "cannot reserve room in the tries journal " + path + ": " + std::strerror(errno);
      if (journal.users == 0) CloseJournal(&journal, path);
      return nullptr;
    }
  }
  ++journal.users;
  return &journal;
}

void Supervisor::CloseJournal(Journal* journal, const std::string& path) {
  ::close(journal->fd);
  journals_.erase(path);
}

void Supervisor::ReleaseJournal(Journal* journal, const std::string& path) {
  if (--journal->users == 0 && journals_.size() > kMaxIdleJournals) CloseJournal(journal, path);
}

void Supervisor::NotStarted(uint64_t id, std::string reason) {
  SendRefusal(SupervisorEvent::Kind::kNotStarted, id, std::move(reason));
}

void Supervisor::SendRefusal(SupervisorEvent::Kind kind, uint64_t id, std::string reason) {
  SupervisorEvent event;
  event.kind = kind;
  event.id = id;
  event.reason = std::move(reason);
  Send(event);
}

void Supervisor::Declined(uint64_t id, std::string reason) {
  SendRefusal(SupervisorEvent::Kind::kDeclined, id, std::move(reason));
}

void Supervisor::AddStandby(SupervisedTry request) {
  const uint64_t id = request.id;
  const uint64_t after = request.after;
  if (slot_of_.count(id) || standby_after_.count(id)) {
    return NotStarted(id, "the supervisor already has a try with this id");
  }
  // It waits on a running try, or on a standby that will run in that try's slot.
  if (!slot_of_.count(after) && !standby_after_.count(after)) {
    // Or the try ended before this reached us, its slot left free: the daemon counts that
    // slot as this standby's from the end on (it heard of no hand-over), so it starts now.
    // Not one that waits for a success: the daemon judges that success itself (a stop it
    // asked for may not have reached us), and would not hear that this one started on it.
    auto vacated = std::find(vacated_.begin(), vacated_.end(), after);
    if (vacated == vacated_.end() || request.after_success) {
      return Declined(id, "the try whose slot it was to take has already ended");
    }
    vacated_.erase(vacated);
    Start(std::move(request));
    return;
  }
  if (standbys_.count(after)) return Declined(id, "the try whose slot it was to take has a standby already");
  standby_after_[id] = after;
  standbys_.emplace(after, std::move(request));
}

bool Supervisor::DeclineStandby(uint64_t id, const std::string& reason) {
  auto it = standby_after_.find(id);
  if (it == standby_after_.end()) return false;
  standbys_.erase(it->second);
  standby_after_.erase(it);
  Declined(id, reason);
  DeclineWaitingOn(id);
  return true;
}

void Supervisor::DeclineWaitingOn(uint64_t id) {
  if (auto next = standbys_.find(id); next != standbys_.end()) {
    DeclineStandby(next->second.id, "the standby it waited on did not start");
  }
}

bool Supervisor::HandOff(const Try& ended, const TaskExit& exit, SupervisorEvent* started) {
  auto it = standbys_.find(ended.request.id);
  if (it == standbys_.end()) return false;
  const uint64_t next_id = it->second.id;
  if (it->second.after_success) {
    // What the daemon would call a success, judged the same way: exit 0, no stop asked for.
    // An output file is the daemon's to read (it may be bad JSON, or feed a mapping), so its
    // downstream waits for the daemon then.
    std::string why;
    if (exit.exit_code != 0 || ended.stopping) {
      why = "the try it waited on did not succeed";
    } else if (!ended.request.output_path.empty() && ::access(ended.request.output_path.c_str(), F_OK) == 0) {
      why = "the try it waited on wrote an output, which the scheduler reads first";
    }
    if (!why.empty()) {
      DeclineStandby(next_id, why);
      return false;
    }
  }
  SupervisedTry next = std::move(it->second);
  standbys_.erase(it);
  standby_after_.erase(next_id);
  if (Start(std::move(next), started)) return true;
  DeclineWaitingOn(next_id);  // Start said why it did not start
  return false;
}

bool Supervisor::FenceHeld(int fd, const std::string& token) {
  char buf[256];
  const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
  return n >= 0 && std::string_view(buf, static_cast<size_t>(n)) == token;
}

bool Supervisor::Start(SupervisedTry request, SupervisorEvent* started_out) {
  const uint64_t id = request.id;
  const bool standby = request.after != 0;
  if (slot_of_.count(id)) {
    NotStarted(id, "the supervisor already runs a try with this id");
    return false;
  }
  if (!IsJournalSafe(request.log_path) || !IsJournalSafe(request.journal_path)) {
    NotStarted(id, "a log path with a tab or newline cannot be recorded: " + request.log_path);
    return false;
  }
  std::string error;
  Journal* journal = OpenJournal(request.journal_path, &error);
  if (!journal) {
    NotStarted(id, error);
    return false;
  }
  int fds[2] = {-1, -1};
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    const int e = errno;
    ReleaseJournal(journal, request.journal_path);
    NotStarted(id, std::string("pipe: ") + std::strerror(e));
    return false;
  }
  // A standby starts under the fence's lock, which is held until its start is in the journal:
  // a daemon that claims the fence (and then reads the journals) either comes first, and the
  // standby is declined, or comes after and finds the start recorded.
  // Opened each time, not kept: a fence file replaced by a newer daemon must be the one read.
  int fence = -1;
  if (standby) {
    fence = ::open(request.fence_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fence < 0 || ::flock(fence, LOCK_EX) != 0 || !FenceHeld(fence, request.fence_token)) {
      if (fence >= 0) ::close(fence);  // also releases the lock
      ::close(fds[0]);
      ::close(fds[1]);
      ReleaseJournal(journal, request.journal_path);
      Declined(id, "a newer daemon has taken over");
      return false;
    }
  }

  std::vector<char*> envp = MergedEnvironment(base_env_, request.env);
  ChildPlan plan;
  plan.command = request.command.c_str();
  plan.cwd = request.cwd.empty() ? nullptr : request.cwd.c_str();
  plan.envp = envp.data();
  plan.out_fd = fds[1];
  plan.devnull = devnull_;
  plan.fence = fence;
  const TaskLimits& limits = request.limits;
  if (limits.cpu_time) {
    const auto seconds = static_cast<rlim_t>(CpuLimitSeconds(*limits.cpu_time));
    plan.cpu = rlimit{seconds, seconds + kCpuTimeKillAfterSeconds};
  }
  if (limits.address_space) {
    const auto bytes = static_cast<rlim_t>(*limits.address_space);
    plan.address_space = rlimit{bytes, bytes};
  }
  if (limits.open_files) {
    const auto files = static_cast<rlim_t>(*limits.open_files);
    plan.open_files = rlimit{files, files};
  }
  plan.nice = limits.nice;
  plan.ns_per_tick = ns_per_tick_;
  plan.ticks_before_fork = BootTicks(ns_per_tick_);
  const pid_t pid = SpawnChild(plan);
  const int spawn_errno = errno;
  const uint64_t ticks_after_fork = BootTicks(ns_per_tick_);
  const auto started_at = std::chrono::system_clock::now();
  ::close(fds[1]);
  if (pid < 0) {
    if (fence >= 0) ::close(fence);
    ::close(fds[0]);
    ReleaseJournal(journal, request.journal_path);
    NotStarted(id, std::string("cannot start /bin/sh: ") + std::strerror(spawn_errno));
    return false;
  }

  const uint64_t slot = next_slot_++;
  Try& t = tries_[slot];
  t.request = std::move(request);
  t.pid = pid;
  t.pidfd = PidfdOpen(pid);  // our unreaped child: the pid is still its own
  t.pipe = fds[0];
  t.journal = journal;
  t.output.emplace(-1, t.request.log_path, limits.log_size.value_or(kDefaultTaskLogSize), 0);
  slot_of_[id] = slot;

  JournalStart start = self_;
  start.pid = pid;
  if (plan.ticks_before_fork != 0 && ticks_after_fork == plan.ticks_before_fork) {
    start.start_time = plan.ticks_before_fork;
  } else {
    std::optional<ProcStat> stat;
    if (plan.stat_size > 0 && static_cast<size_t>(plan.stat_size) < sizeof plan.stat_text) {
      stat = ParseProcStat(std::string_view(plan.stat_text, static_cast<size_t>(plan.stat_size)));
    }
    if (!stat) stat = ReadProcStat(pid);  // a fork (sanitizer builds) wrote into its own copy
    if (stat) start.start_time = stat->start_time;
  }
  const std::string record = FormatJournalStart(t.request.log_path, start);
  if (WriteFully(journal->fd, record) == 0) journal->size += static_cast<int64_t>(record.size());
  if (fence >= 0) ::close(fence);  // the start is journaled: a newer daemon may claim the fence now

  ::fcntl(t.pipe, F_SETFL, O_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = Tagged(kPipeTag, slot);
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, t.pipe, &ev);
  ev.data.u64 = Tagged(kPidfdTag, slot);
  if (t.pidfd < 0 || ::epoll_ctl(epoll_, EPOLL_CTL_ADD, t.pidfd, &ev) != 0) {
    // Cannot happen on the kernels we support (pidfds: Linux 5.3); without one we would never
    // learn of the exit, so stop the try now and record that.
    t.output->Note("cannot watch the task (pidfd_open failed); killing it");
    ::kill(-pid, SIGKILL);
    t.stopping = t.killed = true;
  }

  SupervisorEvent started;
  started.kind = SupervisorEvent::Kind::kStarted;
  started.id = id;
  started.pid = pid;
  started.at_unix_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(started_at.time_since_epoch()).count();
  if (started_out) {
    *started_out = started;
  } else {
    Send(started);
  }
  if (t.pidfd < 0) OnExit(slot);
  return true;
}

void Supervisor::StopTry(uint64_t id) {
  auto it = slot_of_.find(id);
  if (it == slot_of_.end()) return;  // ended already; its exit is on its way
  Try& t = tries_.at(it->second);
  if (t.stopping) return;
  t.stopping = true;
  t.kill_deadline_ms = MonotonicMs() + t.request.kill_grace_ms;
  t.output->Note("stop requested; sending SIGTERM to the task's process group");
  ::kill(-t.pid, SIGTERM);
}

void Supervisor::CheckDeadlines() {
  const int64_t now = MonotonicMs();
  for (auto& [slot, t] : tries_) {
    if (!t.stopping || t.killed || now < t.kill_deadline_ms) continue;
    t.output->Note("the task did not stop within " + std::to_string(t.request.kill_grace_ms) +
                   " ms; sending SIGKILL");
    ::kill(-t.pid, SIGKILL);
    t.killed = true;
  }
}

void Supervisor::OnPipe(uint64_t slot) {
  auto it = tries_.find(slot);
  if (it != tries_.end()) CopyOutput(it->second, kMaxReadPerRound);
}

void Supervisor::CopyOutput(Try& t, size_t limit) {
  char buf[65536];
  std::optional<double> progress;
  while (limit > 0 && t.pipe >= 0) {
    const ssize_t n = ::read(t.pipe, buf, std::min(sizeof buf, limit));
    if (n > 0) {
      if (auto p = t.output->OnOutput(std::string_view(buf, static_cast<size_t>(n)))) progress = p;
      limit -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    CloseWatched(t.pipe);  // end of file: every writer is gone
    t.pipe = -1;
  }
  if (progress) SendProgress(t, *progress);
}

void Supervisor::SendProgress(const Try& t, double progress) {
  SupervisorEvent event;
  event.kind = SupervisorEvent::Kind::kProgress;
  event.id = t.request.id;
  event.progress = progress;
  Send(event);
}

void Supervisor::OnExit(uint64_t slot) {
  auto it = tries_.find(slot);
  if (it == tries_.end()) return;
  Try& t = it->second;
  // The command is a zombie until wait4 below, so its pid still names the group: no other
  // process can have taken it. Background processes of a task we did not stop are left alone.
  if (t.stopping) ::kill(-t.pid, SIGKILL);
  // Everything the command wrote is in the pipe now; read that much and no more, since a
  // background process may keep writing forever.
  if (int available = 0; t.pipe >= 0 && ::ioctl(t.pipe, FIONREAD, &available) == 0 && available > 0) {
    CopyOutput(t, static_cast<size_t>(available));
  }
  if (auto p = t.output->Flush()) SendProgress(t, *p);
  int wait_status = 0;
  rusage usage{};
  while (::wait4(t.pid, &wait_status, 0, &usage) < 0 && errno == EINTR) {
  }
  TaskExit exit = DescribeExit(wait_status, usage, t.request.limits, t.stopping, t.killed);
  t.output->Conclude(exit);
  const TimePoint at = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
  const std::string record = FormatJournalEnd(t.request.log_path, JournalEnd{exit.exit_code, exit.reason, at});
  if (int e = WriteFully(t.journal->fd, record); e == 0) {
    t.journal->size += static_cast<int64_t>(record.size());
  } else {
    t.output->Note(std::string("cannot record the try's end in the journal: ") + std::strerror(e));
  }

  // The standby goes first, before anything else is sent: this is what it is for.
  SupervisorEvent next_started;
  SupervisorEvent event;
  event.kind = SupervisorEvent::Kind::kExited;
  event.id = t.request.id;
  event.exit_code = exit.exit_code;
  event.handed_off = HandOff(t, exit, &next_started);
  event.reason = std::move(exit.reason);
  event.at_unix_ms = at.time_since_epoch().count();
  Send(event);
  if (event.handed_off) {
    Send(next_started);
  } else {
    vacated_.push_back(t.request.id);
    if (vacated_.size() > kMaxVacatedSlots) vacated_.pop_front();
  }

  for (int fd : {t.pipe, t.pidfd}) {
    if (fd >= 0) CloseWatched(fd);
  }
  ReleaseJournal(t.journal, t.request.journal_path);
  slot_of_.erase(t.request.id);
  tries_.erase(it);
}

void Supervisor::CloseWatched(int fd) {
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
}

void Supervisor::Send(const SupervisorEvent& event) {
  if (daemon_gone_) return;
  if (out_.empty()) held_since_ms_ = MonotonicMs();
  using Kind = SupervisorEvent::Kind;
  const bool routine = event.kind == Kind::kStarted || event.kind == Kind::kProgress ||
                       (event.kind == Kind::kExited && event.exit_code == 0);
  urgent_ = urgent_ || !routine;
  out_ += EncodeEvent(event);  // sent at the end of the loop's round, with the round's others
}

void Supervisor::FlushEventsIfDue() {
  if (out_.empty()) return;
  // While every running try has a standby queued behind it, the daemon has nothing to do for
  // the slots yet: waking it would only take a CPU from the running tries. So routine events
  // wait, for at most kHoldEventsMs, until a slot's last standby starts (the daemon must queue
  // the next), anything else happens, or the daemon asks for something.
  bool due = urgent_ || MonotonicMs() - held_since_ms_ >= kHoldEventsMs;
  for (auto it = tries_.begin(); !due && it != tries_.end(); ++it) {
    due = !it->second.stopping && !standbys_.count(it->second.request.id);
  }
  if (due) FlushEvents();
}

void Supervisor::FlushEvents() {
  while (!out_.empty() && events_ >= 0) {
    const ssize_t n = ::send(events_, out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    out_.clear();  // the daemon is gone; OnRequests will see it too
    return;
  }
  if (out_.empty()) urgent_ = false;
  // A busy daemon must not stall the tries: what it has not read waits here.
  const bool want = !out_.empty();
  if (want == waiting_writable_ || events_ < 0) return;
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.u64 = Tagged(kEventsTag, 0);
  ::epoll_ctl(epoll_, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, events_, &ev);
  waiting_writable_ = want;
}

[[noreturn]] void SupervisorMain(int requests, int events) {
  ::prctl(PR_SET_NAME, "ns-supervisor");
  // Outlives the daemon: out of its session (a terminal's ^C is for the daemon), deaf to the
  // signals a daemon's stop sends, and a closed socket is not a reason to die.
  ::setsid();
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  ::signal(SIGQUIT, SIG_IGN);
  ::signal(SIGCHLD, SIG_DFL);  // our children must stay waitable
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  Supervisor(requests, events).Run();
}

std::unique_ptr<SupervisorClient>& Prestarted() {
  static std::unique_ptr<SupervisorClient> prestarted;
  return prestarted;
}

}  // namespace

Result<std::unique_ptr<SupervisorClient>> SupervisorClient::Start() {
  int requests[2], events[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, requests) != 0) {
    return Status::IOError(std::string("socketpair: ") + std::strerror(errno));
  }
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, events) != 0) {
    const int e = errno;
    ::close(requests[0]);
    ::close(requests[1]);
    return Status::IOError(std::string("socketpair: ") + std::strerror(e));
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    for (int fd : {requests[0], requests[1], events[0], events[1]}) ::close(fd);
    return Status::IOError(std::string("fork: ") + std::strerror(e));
  }
  if (pid == 0) {
    // Only our two sockets (and stdin/out/err) stay open: none of the daemon's descriptors
    // (listening socket, database, state-dir lock) may live on in a process that outlives it.
    int keep[2] = {std::min(requests[1], events[1]), std::max(requests[1], events[1])};
    ::close_range(3, static_cast<unsigned>(keep[0] - 1), 0);
    if (keep[1] > keep[0] + 1) ::close_range(static_cast<unsigned>(keep[0] + 1), static_cast<unsigned>(keep[1] - 1), 0);
    ::close_range(static_cast<unsigned>(keep[1] + 1), ~0U, 0);
    SupervisorMain(requests[1], events[1]);
  }
  ::close(requests[1]);
  ::close(events[1]);
  return std::unique_ptr<SupervisorClient>(new SupervisorClient(requests[0], events[0], pid));
}

void SupervisorClient::Prestart() {
  if (Prestarted()) return;
  if (auto started = Start(); started.ok()) Prestarted() = std::move(*started);
}

std::unique_ptr<SupervisorClient> SupervisorClient::TakePrestarted() { return std::move(Prestarted()); }

SupervisorClient::~SupervisorClient() {
  if (requests_ >= 0) ::close(requests_);
  if (events_ >= 0) ::close(events_);
  // Reaped if it has ended; otherwise it ends on its own and init reaps it after we are gone.
  (void)::waitpid(pid_, nullptr, WNOHANG);
}

Status SupervisorClient::Write(const std::string& frame) {
  std::string_view data = frame;
  while (!data.empty()) {
    const ssize_t n = ::send(requests_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return Status::IOError("the supervisor (pid " + std::to_string(pid_) + ") is gone: " +
                           std::strerror(n < 0 ? errno : EPIPE));
  }
  return Status::OK();
}

Status SupervisorClient::Send(const SupervisedTry& request) { return Write(EncodeStart(request)); }

Status SupervisorClient::SetBaseEnvironment(const std::vector<std::string>& env) {
  Writer w;
  w.Put(Request::kBaseEnvironment).Put(static_cast<uint32_t>(env.size()));
  for (const std::string& e : env) w.Put(e);
  return Write(w.Frame());
}

Status SupervisorClient::Stop(uint64_t id) {
  Writer w;
  w.Put(Request::kStop).Put(id);
  return Write(w.Frame());
}

Status SupervisorClient::Withdraw(uint64_t id) {
  Writer w;
  w.Put(Request::kWithdraw).Put(id);
  return Write(w.Frame());
}

Status ClaimStandbyFence(const std::string& path, const std::string& token) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
  Status result = Status::OK();
  // Under the lock supervisors take before starting a standby (see Supervisor::Start).
  if (::flock(fd, LOCK_EX) != 0 || ::ftruncate(fd, 0) != 0 || ::pwrite(fd, token.data(), token.size(), 0) !=
                                                                    static_cast<ssize_t>(token.size())) {
    result = Status::IOError("cannot write " + path + ": " + std::strerror(errno));
  }
  ::close(fd);  // also releases the lock
  return result;
}

void SupervisorClient::Feed(std::string_view bytes, std::vector<SupervisorEvent>* out) {
  partial_.append(bytes);
  ForEachFrame(partial_, [out](std::string_view frame) {
    SupervisorEvent event;
    if (DecodeEvent(frame, &event)) out->push_back(std::move(event));
  });
}

}  // namespace nightshift

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

#include "core/unique_fd.h"
#include "executor/environment.h"
#include "executor/process.h"
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

// A run's journal, open while tries of it run.
struct Journal {
  UniqueFd fd;
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
  // Both in the epoll set, so closed by CloseWatched rather than owned by a UniqueFd.
  int pidfd = -1;
  int pipe = -1;
  Journal* journal = nullptr;
  std::optional<TryOutput> output;
  GroupStop stop;
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
  void CloseJournal(const std::string& path);
  // A try is done with its journal: kept open for the run's next tries, unless many are open.
  void ReleaseJournal(Journal* journal, const std::string& path);
  void NotStarted(uint64_t id, std::string reason);
  void Declined(uint64_t id, std::string reason);
  // kNotStarted or kDeclined: the try with this id did not start, and why.
  void SendRefusal(SupervisorEvent::Kind kind, uint64_t id, std::string reason);
  void CheckDeadlines();

  UniqueFd requests_;
  UniqueFd events_;
  UniqueFd epoll_;
  UniqueFd devnull_;
  sigset_t reset_signals_{};  // what each try's child sets back to default (SupervisorMain's)
  bool daemon_gone_ = false;
  std::string in_;   // request bytes not parsed yet
  std::vector<std::string> base_env_;  // every try's, under its own variables (kBaseEnvironment)
  std::string out_;  // event bytes not sent yet
  int64_t held_since_ms_ = 0;  // when the oldest of them was queued
  bool urgent_ = false;        // they hold one the daemon must act on now
  bool waiting_writable_ = false;
  JournalStart self_{};
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
  epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  devnull_.Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!epoll_ || !devnull_) ::_exit(1);
  reset_signals_ = SignalsNotAtDefault();
  ::fcntl(requests_.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(events_.get(), F_SETFL, O_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = Tagged(kRequestsTag, 0);
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, requests_.get(), &ev);
  if (auto stat = ReadProcStat(::getpid())) self_.supervisor_start_time = stat->start_time;
  self_.supervisor_pid = ::getpid();

  epoll_event ready[64];
  for (;;) {
    if (daemon_gone_ && tries_.empty()) ::_exit(0);
    int timeout = -1;
    for (const auto& [slot, t] : tries_) {
      const int64_t left = t.stop.MsUntilKill();
      if (left < 0) continue;
      timeout = timeout < 0 ? static_cast<int>(left) : std::min(timeout, static_cast<int>(left));
    }
    if (!out_.empty() && !waiting_writable_) {  // (a daemon slow to read wakes us with EPOLLOUT)
      const int left = static_cast<int>(std::max<int64_t>(0, held_since_ms_ + kHoldEventsMs - MonotonicMs()));
      timeout = timeout < 0 ? left : std::min(timeout, left);
    }
    const int n = ::epoll_wait(epoll_.get(), ready, 64, timeout);
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
    const ssize_t n = ::read(requests_.get(), buf, sizeof buf);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    // The daemon is gone (or closed us): nobody asks for anything any more, and nobody hears.
    daemon_gone_ = true;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, requests_.get(), nullptr);
    requests_.Reset();
    events_.Reset();
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
  if (!journal.fd) {
    // Its folder is the run's, which the logs share (each log is created at its first output).
    journal.fd.Reset(OpenForAppend(path));
    if (!journal.fd) {
      *error = "cannot open the tries journal " + path + ": " + std::strerror(errno);
      journals_.erase(path);
      return nullptr;
    }
    struct stat st {};
    if (::fstat(journal.fd.get(), &st) == 0) journal.size = st.st_size;
    char last = '\n';
    if (journal.size > 0 && ::pread(journal.fd.get(), &last, 1, journal.size - 1) == 1 && last != '\n') {
      // A record cut short (a full disk, a crash): ours must not be glued onto it.
      if (::write(journal.fd.get(), "\n", 1) == 1) ++journal.size;
    }
    journal.reserved_until = journal.size;
  }
  if (journal.reserved_until - journal.size < kJournalReserveLow) {
    struct stat st {};
    if (::fstat(journal.fd.get(), &st) == 0) journal.size = std::max<int64_t>(journal.size, st.st_size);
    if (::fallocate(journal.fd.get(), FALLOC_FL_KEEP_SIZE, journal.size, kJournalReserve) == 0) {
      journal.reserved_until = journal.size + kJournalReserve;
    } else if (errno != EOPNOTSUPP) {
      *error = "cannot reserve room in the tries journal " + path + ": " + std::strerror(errno);
      if (journal.users == 0) CloseJournal(path);
      return nullptr;
    }
  }
  ++journal.users;
  return &journal;
}

void Supervisor::CloseJournal(const std::string& path) {
  journals_.erase(path);  // its UniqueFd closes the file
}

void Supervisor::ReleaseJournal(Journal* journal, const std::string& path) {
  if (--journal->users == 0 && journals_.size() > kMaxIdleJournals) CloseJournal(path);
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
    if (exit.exit_code != 0 || ended.stop.stopping()) {
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
  UniqueFd pipe_read(fds[0]), pipe_write(fds[1]);
  // A standby starts under the fence's lock, which is held until its start is in the journal:
  // a daemon that claims the fence (and then reads the journals) either comes first, and the
  // standby is declined, or comes after and finds the start recorded.
  // Opened each time, not kept: a fence file replaced by a newer daemon must be the one read.
  // Closing it releases the lock.
  UniqueFd fence;
  if (standby) {
    fence.Reset(::open(request.fence_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fence || ::flock(fence.get(), LOCK_EX) != 0 || !FenceHeld(fence.get(), request.fence_token)) {
      fence.Reset();
      ReleaseJournal(journal, request.journal_path);
      Declined(id, "a newer daemon has taken over");
      return false;
    }
  }

  std::vector<char*> envp = MergedEnvironment(base_env_, request.env);
  ShellArgv argv(request.command);
  ChildSpec spec;
  spec.argv = argv.get();
  spec.envp = envp.data();
  spec.cwd = request.cwd.empty() ? nullptr : request.cwd.c_str();
  spec.stdin_fd = devnull_.get();
  spec.stdout_fd = spec.stderr_fd = pipe_write.get();
  spec.limits = ChildLimitsFor(request.limits);
  spec.reset_signals = &reset_signals_;
  spec.close_first = fence.get();
  spec.want_start_time = true;
  Result<StartedChild> child = StartChild(spec);
  const auto started_at = std::chrono::system_clock::now();
  pipe_write.Reset();
  if (!child.ok()) {
    fence.Reset();
    ReleaseJournal(journal, request.journal_path);
    NotStarted(id, child.status().message());
    return false;
  }
  const pid_t pid = child->pid;
  const TaskLimits& limits = request.limits;

  const uint64_t slot = next_slot_++;
  Try& t = tries_[slot];
  t.request = std::move(request);
  t.pid = pid;
  t.pidfd = PidfdOpen(pid);  // our unreaped child: the pid is still its own
  t.pipe = pipe_read.Release();
  t.stop = GroupStop(pid);
  t.journal = journal;
  t.output.emplace(-1, t.request.log_path, limits.log_size.value_or(kDefaultTaskLogSize), 0);
  slot_of_[id] = slot;

  JournalStart start = self_;
  start.pid = pid;
  start.start_time = child->start_time;
  const std::string record = FormatJournalStart(t.request.log_path, start);
  if (WriteFully(journal->fd.get(), record) == 0) journal->size += static_cast<int64_t>(record.size());
  fence.Reset();  // the start is journaled: a newer daemon may claim the fence now

  ::fcntl(t.pipe, F_SETFL, O_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = Tagged(kPipeTag, slot);
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, t.pipe, &ev);
  ev.data.u64 = Tagged(kPidfdTag, slot);
  if (t.pidfd < 0 || ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, t.pidfd, &ev) != 0) {
    // Cannot happen on the kernels we support (pidfds: Linux 5.3); without one we would never
    // learn of the exit, so stop the try now and record that.
    t.output->Note("cannot watch the task (pidfd_open failed); killing it");
    t.stop.KillNow();
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
  if (t.stop.stopping()) return;
  t.output->Note("stop requested; sending SIGTERM to the task's process group");
  t.stop.Begin(t.request.kill_grace_ms);
}

void Supervisor::CheckDeadlines() {
  for (auto& [slot, t] : tries_) {
    if (t.stop.KillIfDue()) t.output->Note(GraceOverNote(t.stop));
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
  // The command is a zombie until ReapChild below.
  t.stop.LeaderExited();
  // Everything the command wrote is in the pipe now; read that much and no more, since a
  // background process may keep writing forever.
  if (int available = 0; t.pipe >= 0 && ::ioctl(t.pipe, FIONREAD, &available) == 0 && available > 0) {
    CopyOutput(t, static_cast<size_t>(available));
  }
  if (auto p = t.output->Flush()) SendProgress(t, *p);
  rusage usage{};
  const int wait_status = ReapChild(t.pid, &usage);
  TaskExit exit = DescribeExit(wait_status, usage, t.request.limits, t.stop.stopping(), t.stop.killed());
  t.output->Conclude(exit);
  const TimePoint at = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
  const std::string record = FormatJournalEnd(t.request.log_path, JournalEnd{exit.exit_code, exit.reason, at});
  if (int e = WriteFully(t.journal->fd.get(), record); e == 0) {
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
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
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
    due = !it->second.stop.stopping() && !standbys_.count(it->second.request.id);
  }
  if (due) FlushEvents();
}

void Supervisor::FlushEvents() {
  while (!out_.empty() && events_) {
    const ssize_t n = ::send(events_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
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
  if (want == waiting_writable_ || !events_) return;
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.u64 = Tagged(kEventsTag, 0);
  ::epoll_ctl(epoll_.get(), want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, events_.get(), &ev);
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
  UniqueFd requests_ours(requests[0]), requests_theirs(requests[1]);
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, events) != 0) {
    return Status::IOError(std::string("socketpair: ") + std::strerror(errno));
  }
  UniqueFd events_ours(events[0]), events_theirs(events[1]);
  // A fork, not StartChild: the child runs our code (SupervisorMain), not a program.
  const pid_t pid = ::fork();
  if (pid < 0) return Status::IOError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Only our two sockets (and stdin/out/err) stay open: none of the daemon's descriptors
    // (listening socket, database, state-dir lock) may live on in a process that outlives it.
    int keep[2] = {std::min(requests[1], events[1]), std::max(requests[1], events[1])};
    ::close_range(3, static_cast<unsigned>(keep[0] - 1), 0);
    if (keep[1] > keep[0] + 1) ::close_range(static_cast<unsigned>(keep[0] + 1), static_cast<unsigned>(keep[1] - 1), 0);
    ::close_range(static_cast<unsigned>(keep[1] + 1), ~0U, 0);
    SupervisorMain(requests[1], events[1]);
  }
  return std::unique_ptr<SupervisorClient>(
      new SupervisorClient(std::move(requests_ours), std::move(events_ours), pid));
}

void SupervisorClient::Prestart() {
  if (Prestarted()) return;
  if (auto started = Start(); started.ok()) Prestarted() = std::move(*started);
}

std::unique_ptr<SupervisorClient> SupervisorClient::TakePrestarted() { return std::move(Prestarted()); }

SupervisorClient::~SupervisorClient() {
  requests_.Reset();
  events_.Reset();
  // Reaped if it has ended; otherwise it ends on its own and init reaps it after we are gone.
  (void)::waitpid(pid_, nullptr, WNOHANG);
}

Status SupervisorClient::Write(const std::string& frame) {
  std::string_view data = frame;
  while (!data.empty()) {
    const ssize_t n = ::send(requests_.get(), data.data(), data.size(), MSG_NOSIGNAL);
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
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
  // Under the lock supervisors take before starting a standby (see Supervisor::Start), which
  // closing the file releases.
  if (::flock(fd.get(), LOCK_EX) != 0 || ::ftruncate(fd.get(), 0) != 0 ||
      ::pwrite(fd.get(), token.data(), token.size(), 0) != static_cast<ssize_t>(token.size())) {
    return Status::IOError("cannot write " + path + ": " + std::strerror(errno));
  }
  return Status::OK();
}

void SupervisorClient::Feed(std::string_view bytes, std::vector<SupervisorEvent>* out) {
  partial_.append(bytes);
  ForEachFrame(partial_, [out](std::string_view frame) {
    SupervisorEvent event;
    if (DecodeEvent(frame, &event)) out->push_back(std::move(event));
  });
}

}  // namespace nightshift

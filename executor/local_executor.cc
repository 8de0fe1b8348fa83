#include "executor/local_executor.h"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

#include "core/unique_fd.h"
#include "executor/environment.h"
#include "executor/process.h"
#include "executor/task_protocol.h"

namespace nightshift {
namespace {

// After an adopted try's process is gone, how long to wait for its supervisor to record the
// end, looking every kJournalPoll: it reaps the process, then appends the record at once.
constexpr std::chrono::milliseconds kJournalPoll{20};
constexpr int kJournalPollAttempts = 500;  // 10 s
// How long a start or a progress report may wait to be announced together with the next
// event: a short try's start and end then make one scheduler pass instead of two.
constexpr std::chrono::milliseconds kQuietEventDelay{20};
// Journals remembered for Submit's check (each read once, when first met).
constexpr size_t kMaxKnownJournals = 256;

// The try's own variables, sorted by name; the supervisor sets them over the daemon's
// environment, which it was sent once (ListenTo).
std::vector<std::string> TaskVariables(const TaskSpec& spec) {
  std::map<std::string, std::string> task = spec.env;
  if (!spec.output_path.empty()) task["NIGHTSHIFT_OUTPUT"] = spec.output_path;
  std::vector<std::string> out;
  out.reserve(task.size());
  for (const auto& [name, value] : task) out.push_back(name + "=" + value);
  return out;
}

// Whether the process `pid` with start time `start_time` is alive (and not a zombie).
bool IsAlive(pid_t pid, uint64_t start_time) {
  auto stat = ReadProcStat(pid);
  return stat && stat->state != 'Z' && stat->start_time == start_time;
}

}  // namespace

struct LocalExecutor::Running {
  explicit Running(boost::asio::io_context& io) : pidfd(io), timer(io) {}

  TaskInstanceKey key;
  uint64_t id = 0;  // with our supervisor; 0 for an adopted try
  pid_t pid = 0;    // the command's, once started
  // Adopted tries only: where the end will be recorded, by which supervisor, and the exit watch.
  std::string log_path;
  std::string journal_path;
  JournalStart start;
  boost::asio::posix::stream_descriptor pidfd;
  boost::asio::steady_timer timer;  // journal polls, or the SIGKILL after a stop
  GroupStop stop;  // an adopted try's, guarded by its pidfd: used only while `pidfd` is open
  bool done = false;  // final event queued; late handlers do nothing
  bool standby = false;  // waits for the slot of another try (TaskSpec::after)
};

LocalExecutor::LocalExecutor(boost::asio::io_context& io, LocalExecutorOptions options,
                             std::function<void()> on_event)
    : io_(io), options_(std::move(options)), base_env_(SortedEnvironment()), events_(io, std::move(on_event)) {
  if (auto prestarted = SupervisorClient::TakePrestarted()) ListenTo(std::move(prestarted));
  if (!options_.fence_path.empty()) {
    const auto now = std::chrono::steady_clock::now().time_since_epoch();
    const std::string token = std::to_string(::getpid()) + "." + std::to_string(now.count());
    if (Status s = ClaimStandbyFence(options_.fence_path, token); s.ok()) {
      fence_token_ = token;
    } else {
      spdlog::warn("tries will not wait in each other's slots: {}", s.ToString());
    }
  }
}

LocalExecutor::~LocalExecutor() {
  alive_.reset();
  for (auto& [key, entry] : running_) {
    boost::system::error_code ignored;
    entry->done = true;
    entry->pidfd.close(ignored);
    entry->timer.cancel();
  }
  boost::system::error_code ignored;
  if (supervisor_events_) supervisor_events_->close(ignored);
  // Destroying the client closes its sockets: the supervisor finishes its tries on its own.
}

size_t LocalExecutor::FreeSlots() const {
  const size_t used = running_.size() - standbys_;
  return used < options_.slots ? options_.slots - used : 0;
}

bool LocalExecutor::TakesStandby(const TaskSpec& holder, const TaskSpec& /*standby*/) const {
  return !fence_token_.empty() && (!running_.count(holder.key) || HoldsSlot(holder.key));
}

bool LocalExecutor::HoldsSlot(const TaskInstanceKey& key) const {
  auto it = running_.find(key);
  return it != running_.end() && it->second->id != 0 && !it->second->done;
}

void LocalExecutor::Withdraw(const TaskInstanceKey& key) {
  auto it = running_.find(key);
  if (it == running_.end() || !it->second->standby || !supervisor_) return;
  if (!supervisor_->Withdraw(it->second->id).ok()) OnSupervisorGone();
}

Status LocalExecutor::EnsureSupervisor() {
  if (supervisor_) return Status::OK();
  auto started = SupervisorClient::Start();
  if (!started.ok()) return Status::IOError("cannot start the supervisor: " + started.status().message());
  ListenTo(std::move(*started));
  return Status::OK();
}

void LocalExecutor::ListenTo(std::unique_ptr<SupervisorClient> supervisor) {
  supervisor_ = std::move(supervisor);
  // A failed write means the supervisor is gone; the next Submit finds that out.
  (void)supervisor_->SetBaseEnvironment(base_env_);
  supervisor_events_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(supervisor_->events_fd()));
  ReadEvents();
}

Status LocalExecutor::Submit(const TaskSpec& spec) {
  if (spec.log_path.empty()) return Status::InvalidArgument(spec.key.ToString() + ": no log path");
  if (spec.journal_path.empty()) return Status::InvalidArgument(spec.key.ToString() + ": no journal path");
  if (!IsJournalSafe(spec.log_path) || !IsJournalSafe(spec.journal_path)) {
    return Status::InvalidArgument(spec.key.ToString() + ": a log path with a tab or newline: " + spec.log_path);
  }
  if (running_.count(spec.key)) return Status::AlreadyExists(spec.key.ToString() + " is already running");
  std::shared_ptr<Running> after;
  if (spec.after && !fence_token_.empty() && HoldsSlot(*spec.after)) after = running_.at(*spec.after);
  if (spec.after && !after) {
    // Its slot-holder ended meanwhile: the scheduler dispatches it the usual way instead.
    Declined(spec.key, "the try whose slot it was to take has already ended");
    return Status::OK();
  }
  if (!after && FreeSlots() == 0) return Status::Busy("no free slot for " + spec.key.ToString());
  // The run's journal, as read the first time this executor met the run, knows every try an
  // earlier daemon started: none starts twice. (The tries started since are the scheduler's
  // to keep track of; each has a log path of its own.)
  const std::map<std::string, JournalTry>& known = KnownTries(spec.journal_path);
  if (auto it = known.find(spec.log_path); it != known.end()) {
    return Status::AlreadyExists(spec.key.ToString() + (it->second.end ? " already finished" : " already started") +
                                 " (see " + spec.journal_path + "); adopt it instead");
  }
  if (Status s = EnsureSupervisor(); !s.ok()) return s;

  SupervisedTry request;
  request.id = next_id_++;
  request.command = spec.command;
  request.cwd = spec.cwd;
  request.log_path = spec.log_path;
  request.journal_path = spec.journal_path;
  request.env = TaskVariables(spec);
  request.limits = spec.limits;
  request.kill_grace_ms = options_.kill_grace.count();
  request.output_path = spec.output_path;
  if (after) {
    request.after = after->id;
    request.after_success = spec.after_success;
    request.fence_path = options_.fence_path;
    request.fence_token = fence_token_;
  }
  if (Status s = supervisor_->Send(request); !s.ok()) {
    OnSupervisorGone();
    return s;
  }
  auto entry = std::make_shared<Running>(io_);
  entry->key = spec.key;
  entry->id = request.id;
  entry->standby = after != nullptr;
  if (entry->standby) ++standbys_;
  running_[spec.key] = entry;
  by_id_[request.id] = entry;
  return Status::OK();
}

void LocalExecutor::ReadEvents() {
  std::weak_ptr<int> alive = alive_;
  supervisor_events_->async_read_some(
      boost::asio::buffer(read_buf_), [this, alive](const boost::system::error_code& ec, size_t n) {
        if (alive.expired() || ec == boost::asio::error::operation_aborted) return;
        if (ec) {
          OnSupervisorGone();
          return;
        }
        std::vector<SupervisorEvent> events;
        supervisor_->Feed(std::string_view(read_buf_.data(), n), &events);
        for (const SupervisorEvent& event : events) OnSupervisorEvent(event);
        ReadEvents();
      });
}

void LocalExecutor::OnSupervisorEvent(const SupervisorEvent& event) {
  auto it = by_id_.find(event.id);
  if (it == by_id_.end()) return;
  std::shared_ptr<Running> entry = it->second;
  ExecutorEvent out;
  out.key = entry->key;
  out.at = Now();
  switch (event.kind) {
    case SupervisorEvent::Kind::kStarted:
      StopWaiting(*entry);
      entry->pid = static_cast<pid_t>(event.pid);
      out.kind = ExecutorEvent::Kind::kStarted;
      out.pid = event.pid;
      // The supervisor's clock: the start itself, not when we heard of it.
      if (event.at_unix_ms > 0) out.at = TimePoint(std::chrono::milliseconds(event.at_unix_ms));
      break;
    case SupervisorEvent::Kind::kProgress:
      out.kind = ExecutorEvent::Kind::kProgress;
      out.progress = event.progress;
      break;
    case SupervisorEvent::Kind::kNotStarted:
      out.kind = ExecutorEvent::Kind::kLost;
      out.reason = "could not start the command: " + event.reason;
      break;
    case SupervisorEvent::Kind::kDeclined:
      out.kind = ExecutorEvent::Kind::kDeclined;
      out.reason = event.reason;
      break;
    case SupervisorEvent::Kind::kExited:
      out.kind = ExecutorEvent::Kind::kFinished;
      out.exit_code = event.exit_code;
      out.reason = event.reason;
      out.handed_off = event.handed_off;
      out.at = TimePoint(std::chrono::milliseconds(event.at_unix_ms));
      break;
  }
  if (out.kind == ExecutorEvent::Kind::kStarted || out.kind == ExecutorEvent::Kind::kProgress) {
    events_.PushLater(std::move(out), kQuietEventDelay);
    return;
  }
  Forget(entry);
  Emit(std::move(out));
}

void LocalExecutor::StopWaiting(Running& entry) {
  if (!entry.standby) return;
  entry.standby = false;
  --standbys_;
}

void LocalExecutor::Forget(const std::shared_ptr<Running>& entry) {
  entry->done = true;
  StopWaiting(*entry);
  if (entry->id != 0) by_id_.erase(entry->id);
  running_.erase(entry->key);
}

void LocalExecutor::OnSupervisorGone() {
  if (!supervisor_) return;
  const pid_t pid = supervisor_->pid();
  boost::system::error_code ignored;
  supervisor_events_->close(ignored);
  supervisor_events_.reset();
  supervisor_.reset();
  // Killed by hand or out of memory: its tries may run on, but nobody records their ends.
  for (auto& [id, entry] : std::exchange(by_id_, {})) {
    const bool standby = entry->standby;
    entry->id = 0;
    Forget(entry);
    if (standby) {
      Declined(entry->key, "the supervisor (pid " + std::to_string(pid) + ") died before it started");
      continue;
    }
    Lost(entry->key, "the supervisor (pid " + std::to_string(pid) +
                         ") died; the try's outcome is unknown" +
                         (entry->pid > 0 ? " (its command was pid " + std::to_string(entry->pid) + ")" : ""));
  }
}

std::vector<ExecutorEvent> LocalExecutor::Drain() { return events_.Drain(); }

Status LocalExecutor::Cancel(const TaskInstanceKey& key) {
  auto it = running_.find(key);
  if (it == running_.end()) return Status::OK();
  std::shared_ptr<Running> entry = it->second;
  if (entry->id == 0) {
    StopAdopted(entry);
    return Status::OK();
  }
  if (!supervisor_) return Status::OK();
  if (Status s = supervisor_->Stop(entry->id); !s.ok()) {
    OnSupervisorGone();
    return s;
  }
  return Status::OK();
}

const std::map<std::string, JournalTry>& LocalExecutor::KnownTries(const std::string& path) {
  auto it = journals_.find(path);
  if (it != journals_.end()) return it->second;
  // Bounded: forgetting is safe, since reading a journal again later only adds what this
  // daemon started meanwhile, and it never starts those again anyway.
  if (journals_.size() >= kMaxKnownJournals) journals_.clear();
  auto read = ReadTryJournal(path);
  return journals_[path] = read.ok() ? std::move(*read) : std::map<std::string, JournalTry>{};
}

std::vector<TaskInstanceKey> LocalExecutor::Adopt(std::span<const RunningTask> tasks) {
  std::vector<TaskInstanceKey> adopted;
  // Read afresh, once per journal: a copy kept since an earlier Submit lacks what the
  // supervisor recorded since (Adopt also runs after a pass the database refused, for tries
  // this very executor started).
  std::set<std::string> refreshed;
  for (const RunningTask& task : tasks) {
    if (task.journal_path.empty() || !refreshed.insert(task.journal_path).second) continue;
    auto read = ReadTryJournal(task.journal_path);
    journals_[task.journal_path] = read.ok() ? std::move(*read) : std::map<std::string, JournalTry>{};
  }
  for (const RunningTask& task : tasks) {
    if (running_.count(task.key)) {
      adopted.push_back(task.key);
      continue;
    }
    if (task.log_path.empty() || task.journal_path.empty()) {
      Lost(task.key, "no log or journal path was recorded for this try");
      continue;
    }
    const std::map<std::string, JournalTry>& known = KnownTries(task.journal_path);
    auto found = known.find(task.log_path);
    if (found == known.end() || (!found->second.start && !found->second.end)) {
      // The supervisor records the start right after the spawn, so nothing ran.
      Lost(task.key, "never started");
      continue;
    }
    const JournalTry& journal = found->second;
    if (journal.end) {
      FinishedAsJournaled(task.key, *journal.end);
      continue;
    }
    auto entry = std::make_shared<Running>(io_);
    entry->key = task.key;
    entry->pid = journal.start->pid;
    entry->start = *journal.start;
    entry->log_path = task.log_path;
    entry->journal_path = task.journal_path;
    running_[task.key] = entry;
    // Open first, then check identity: a pidfd opened before the check keeps naming the process
    // we checked even if it exits and its pid is reused right after.
    UniqueFd fd(PidfdOpen(entry->pid));
    if (fd && IsAlive(entry->pid, entry->start.start_time)) {
      entry->stop = GroupStop(entry->pid, fd.get());
      entry->pidfd.assign(fd.Release());
      FollowAdopted(entry);
    } else {
      fd.Reset();
      ConcludeAdopted(entry, 0);
    }
    if (!entry->done) adopted.push_back(task.key);  // not concluded at once: followed
  }
  return adopted;
}

void LocalExecutor::FollowAdopted(const std::shared_ptr<Running>& entry) {
  std::weak_ptr<int> alive = alive_;
  entry->pidfd.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                          [this, alive, entry](const boost::system::error_code& ec) {
                            if (alive.expired() || entry->done || ec == boost::asio::error::operation_aborted) return;
                            boost::system::error_code ignored;
                            entry->pidfd.close(ignored);
                            entry->timer.cancel();
                            ConcludeAdopted(entry, 0);
                          });
}

void LocalExecutor::ConcludeAdopted(const std::shared_ptr<Running>& entry, int attempt) {
  if (entry->done) return;
  // Looked at before the journal: a supervisor that records the end right after we read it
  // and then exits must not make the try look lost.
  const bool supervisor_alive = IsAlive(entry->start.supervisor_pid, entry->start.supervisor_start_time);
  auto read = ReadTryJournal(entry->journal_path);
  if (read.ok()) {
    auto found = read->find(entry->log_path);
    if (found != read->end() && found->second.end) {
      entry->done = true;
      running_.erase(entry->key);
      FinishedAsJournaled(entry->key, *found->second.end);
      return;
    }
  }
  if (!supervisor_alive || attempt >= kJournalPollAttempts) {
    entry->done = true;
    running_.erase(entry->key);
    Lost(entry->key, supervisor_alive ? "its supervisor did not record how the try ended"
                                      : "the try's supervisor (pid " + std::to_string(entry->start.supervisor_pid) +
                                            ") stopped before it recorded how the try ended");
    return;
  }
  std::weak_ptr<int> alive = alive_;
  entry->timer.expires_after(kJournalPoll);
  entry->timer.async_wait([this, alive, entry, attempt](const boost::system::error_code& ec) {
    if (alive.expired() || ec) return;
    ConcludeAdopted(entry, attempt + 1);
  });
}

void LocalExecutor::StopAdopted(const std::shared_ptr<Running>& entry) {
  if (entry->done || !entry->pidfd.is_open() || !entry->stop.Begin(options_.kill_grace.count())) return;
  std::weak_ptr<int> alive = alive_;
  entry->timer.expires_after(options_.kill_grace);
  entry->timer.async_wait([alive, entry](const boost::system::error_code& ec) {
    if (alive.expired() || ec || entry->done || !entry->pidfd.is_open()) return;
    entry->stop.KillNow();  // sends nothing once the pidfd says the process is gone
  });
}

void LocalExecutor::FinishedAsJournaled(const TaskInstanceKey& key, const JournalEnd& end) {
  ExecutorEvent event;
  event.kind = ExecutorEvent::Kind::kFinished;
  event.key = key;
  event.exit_code = end.exit_code;
  event.reason = end.reason;
  event.at = end.at;  // when the supervisor saw it end, which may be long ago
  Emit(std::move(event));
}

void LocalExecutor::Lost(const TaskInstanceKey& key, std::string reason) {
  EmitEnd(ExecutorEvent::Kind::kLost, key, std::move(reason));
}

void LocalExecutor::Declined(const TaskInstanceKey& key, std::string reason) {
  EmitEnd(ExecutorEvent::Kind::kDeclined, key, std::move(reason));
}

void LocalExecutor::EmitEnd(ExecutorEvent::Kind kind, const TaskInstanceKey& key, std::string reason) {
  ExecutorEvent event;
  event.kind = kind;
  event.key = key;
  event.reason = std::move(reason);
  event.at = Now();
  Emit(std::move(event));
}

void LocalExecutor::Emit(ExecutorEvent event) { events_.Push(std::move(event)); }

TimePoint LocalExecutor::Now() const {
  if (options_.clock) return options_.clock->Now();
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

}  // namespace nightshift

#include "executor/local_executor.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <optional>

#include "executor/task_protocol.h"
#include "executor/wrapper_spawner.h"

extern char** environ;

namespace nightshift {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxPendingReportLine = 4096;
// After the wrapper exited, how long its stdout may take to reach end of file. Only the
// wrapper holds that pipe, so it ends at once; the bound guards against a stray holder.
constexpr std::chrono::seconds kOutputEndGrace{2};

// A direct system call, like PidfdOpen (task_protocol.h).
int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

std::string ResolveSelfExe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "/proc/self/exe";
  std::string path(buf, static_cast<size_t>(n));
  // Replaced on disk (an upgrade): only /proc/self/exe still reaches the running binary.
  if (path.ends_with(" (deleted)")) return "/proc/self/exe";
  return path;
}

// The daemon's environment, then the task's variables over it.
std::vector<std::string> TaskEnvironment(const TaskSpec& spec) {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  for (const auto& [name, value] : spec.env) env[name] = value;
  if (!spec.output_path.empty()) env["NIGHTSHIFT_OUTPUT"] = spec.output_path;
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// True when `pid` runs `__task-wrapper ... --status STATUS_PATH`: the wrapper of this very try.
bool IsWrapperFor(pid_t pid, const std::string& status_path) {
  auto args = ReadProcCmdline(pid);
  if (!args || args->size() < 2 || (*args)[1] != kTaskWrapperCommand) return false;
  for (size_t i = 2; i + 1 < args->size(); ++i) {
    if ((*args)[i] == "--") break;
    if ((*args)[i] == "--status") return (*args)[i + 1] == status_path;
  }
  return false;
}

// When this machine booted (btime in /proc/stat).
std::optional<TimePoint> BootTime() {
  FILE* f = std::fopen("/proc/stat", "r");
  if (!f) return std::nullopt;
  char line[256];
  std::optional<TimePoint> boot;
  while (std::fgets(line, sizeof line, f)) {
    long long seconds = 0;
    if (std::sscanf(line, "btime %lld", &seconds) == 1) {
      boot = TimePoint(std::chrono::seconds(seconds));
      break;
    }
  }
  std::fclose(f);
  return boot;
}

// Whether `pid` is this try's wrapper, alive. The start time from its pid file rules out a
// reused pid; a pid file written since this boot rules out one from before a reboot whose pid
// and start time (ticks since boot) happen to recur. Wrappers forked by the WrapperSpawner
// carry the daemon's command line, so the command line is only the fallback, for a wrapper
// exec'ed without a pid file yet.
bool IsLiveWrapper(pid_t pid, std::optional<uint64_t> start_time, const TaskSidecarPaths& paths) {
  auto stat = ReadProcStat(pid);
  if (!stat || stat->state == 'Z' || (start_time && stat->start_time != *start_time)) return false;
  if (start_time) {
    std::optional<TimePoint> written = FileModifiedAt(paths.pid);
    std::optional<TimePoint> boot = BootTime();
    if (written && boot && *written >= *boot) return true;
  }
  return IsWrapperFor(pid, paths.status);
}

}  // namespace

TaskSidecarPaths SidecarPathsFor(std::string_view log_path) {
  std::string base(log_path);
  return TaskSidecarPaths{base + ".status", base + ".pid", base + ".progress"};
}

struct LocalExecutor::Running {
  explicit Running(boost::asio::io_context& io) : pidfd(io), out(io), output_end_timer(io) {}

  TaskInstanceKey key;
  pid_t pid = 0;
  TaskSidecarPaths paths;
  bool spawned_here = false;  // our child: we reap it
  // Readable once the wrapper has exited. Not open only if pidfd_open failed for a wrapper we
  // spawned; the end of its stdout then tells us it exited.
  boost::asio::posix::stream_descriptor pidfd;
  boost::asio::posix::stream_descriptor out;  // the wrapper's stdout; not open for adopted tries
  boost::asio::steady_timer output_end_timer;
  std::array<char, 4096> buf{};
  std::string partial;                // an unfinished line of `out`
  bool exited = false;                // the wrapper is gone; its last output may still be on its way
  std::optional<int> wrapper_status;  // its wait status, when it was ours to reap
  std::string wrapper_error;          // its "error ..." line: why it did not start the command
  bool done = false;                  // final event queued; late handlers do nothing
};

LocalExecutor::LocalExecutor(boost::asio::io_context& io, LocalExecutorOptions options,
                             std::function<void()> on_event)
    : io_(io), options_(std::move(options)), events_(io, std::move(on_event)) {
  if (options_.wrapper_argv0.empty()) options_.wrapper_argv0 = ResolveSelfExe();
}

LocalExecutor::~LocalExecutor() {
  alive_.reset();
  // Closing our ends is all: the wrappers carry on (their progress writes fail with EPIPE,
  // which they ignore) and record their results for whoever adopts them.
  for (auto& [key, entry] : running_) {
    boost::system::error_code ignored;
    entry->done = true;
    entry->pidfd.close(ignored);
    entry->out.close(ignored);
    entry->output_end_timer.cancel();
  }
}

size_t LocalExecutor::FreeSlots() const {
  return running_.size() < options_.slots ? options_.slots - running_.size() : 0;
}

Status LocalExecutor::Submit(const TaskSpec& spec) {
  if (spec.log_path.empty()) return Status::InvalidArgument(spec.key.ToString() + ": no log path");
  if (running_.count(spec.key)) return Status::AlreadyExists(spec.key.ToString() + " is already running");
  if (FreeSlots() == 0) return Status::Busy("no free slot for " + spec.key.ToString());
  const TaskSidecarPaths paths = SidecarPathsFor(spec.log_path);
  // The two ways a try could run twice: it ran already, or its wrapper outlived a daemon.
  if (PathExists(paths.status)) {
    return Status::AlreadyExists(spec.key.ToString() + " already finished: its status is in " + paths.status);
  }
  if (auto pid_file = ReadPidFile(paths.pid);
      pid_file.ok() && IsLiveWrapper(pid_file->pid, pid_file->start_time, paths)) {
    return Status::AlreadyExists(spec.key.ToString() + " is still running (task wrapper pid " +
                                 std::to_string(pid_file->pid) + "); adopt it instead");
  }
  std::error_code ec;
  fs::create_directories(fs::path(spec.log_path).parent_path(), ec);
  if (ec) return Status::IOError("cannot create the log folder for " + spec.log_path + ": " + ec.message());
  if (!spec.output_path.empty()) {
    fs::create_directories(fs::path(spec.output_path).parent_path(), ec);
    if (ec) return Status::IOError("cannot create the folder of " + spec.output_path + ": " + ec.message());
  }

  TaskWrapperArgs args;
  args.log_path = spec.log_path;
  args.status_path = paths.status;
  args.pid_path = paths.pid;
  args.progress_path = paths.progress;
  args.cwd = spec.cwd;
  args.kill_grace_ms = options_.kill_grace.count();
  args.command = spec.command;
  args.limits = spec.limits;
  std::vector<std::string> argv_strings = args.ToArgv(options_.wrapper_argv0);
  std::vector<std::string> env_strings = TaskEnvironment(spec);
  std::vector<char*> argv = CStrings(argv_strings);
  std::vector<char*> envp = CStrings(env_strings);

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return Status::IOError(std::string("pipe: ") + std::strerror(errno));

  if (WrapperSpawner* spawner = options_.use_spawner ? WrapperSpawner::Global() : nullptr) {
    auto spawned = spawner->Spawn(argv_strings, env_strings, out[1]);
    if (spawned.ok()) {
      ::close(out[1]);
      auto entry = std::make_shared<Running>(io_);
      entry->key = spec.key;
      entry->pid = spawned->pid;
      entry->paths = paths;
      entry->spawned_here = false;  // the spawner's child: it reaps it
      entry->out.assign(out[0]);
      if (spawned->pidfd >= 0) entry->pidfd.assign(spawned->pidfd);
      return Started(entry);
    }
    // Not fatal: the spawner is gone (it says so once) and the wrapper is exec'ed below.
  }

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Started in its own session, so signals for the daemon's group (a terminal's ^C) miss it.
  // SIGTERM/SIGINT start blocked: a Cancel() that comes before the wrapper is ready stays
  // pending for it instead of killing it before it can record anything.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  posix_spawnattr_setsigmask(&attr, &mask);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGQUIT}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  // None of the daemon's descriptors (listening socket, database, state-dir lock) may live on
  // in a process that outlives it.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  pid_t pid = 0;
  const int rc =
      ::posix_spawn(&pid, options_.wrapper_argv0.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    return Status::IOError("cannot start the task wrapper " + options_.wrapper_argv0 + ": " +
                           std::strerror(rc));
  }

  auto entry = std::make_shared<Running>(io_);
  entry->key = spec.key;
  entry->pid = pid;
  entry->paths = paths;
  entry->spawned_here = true;
  entry->out.assign(out[0]);
  // Our unreaped child, so the pid cannot have been reused yet.
  if (int fd = PidfdOpen(pid); fd >= 0) entry->pidfd.assign(fd);
  return Started(entry);
}

Status LocalExecutor::Started(const std::shared_ptr<Running>& entry) {
  running_[entry->key] = entry;
  ExecutorEvent started;
  started.kind = ExecutorEvent::Kind::kStarted;
  started.key = entry->key;
  started.pid = entry->pid;
  started.at = Now();
  Emit(std::move(started));
  Follow(entry);
  ReadOutput(entry);
  return Status::OK();
}

std::vector<ExecutorEvent> LocalExecutor::Drain() { return events_.Drain(); }

Status LocalExecutor::Cancel(const TaskInstanceKey& key) {
  auto it = running_.find(key);
  if (it == running_.end()) return Status::OK();
  Running& entry = *it->second;
  // Through the pidfd, a signal cannot hit a process that took the pid of an exited wrapper.
  int rc = entry.pidfd.is_open() ? PidfdSendSignal(entry.pidfd.native_handle(), SIGTERM)
                                 : ::kill(entry.pid, SIGTERM);  // our unreaped child
  if (rc != 0 && errno != ESRCH) {
    return Status::IOError("cannot signal the task wrapper of " + key.ToString() + ": " +
                           std::strerror(errno));
  }
  return Status::OK();
}

std::vector<TaskInstanceKey> LocalExecutor::Adopt(std::span<const RunningTask> tasks) {
  std::vector<TaskInstanceKey> adopted;
  for (const RunningTask& task : tasks) {
    if (running_.count(task.key)) {
      adopted.push_back(task.key);
      continue;
    }
    if (task.log_path.empty()) {
      ExecutorEvent lost;
      lost.kind = ExecutorEvent::Kind::kLost;
      lost.key = task.key;
      lost.reason = "no log path was recorded for this try";
      lost.at = Now();
      Emit(std::move(lost));
      continue;
    }
    const TaskSidecarPaths paths = SidecarPathsFor(task.log_path);
    if (PathExists(paths.status)) {
      Conclude(task.key, paths, "process vanished without a status");
      continue;
    }
    auto pid_file = ReadPidFile(paths.pid);
    pid_t pid = 0;
    std::optional<uint64_t> start_time;
    if (pid_file.ok()) {
      pid = pid_file->pid;
      start_time = pid_file->start_time;
    } else if (pid_file.status().IsNotFound()) {
      if (!task.pid || !IsWrapperFor(static_cast<pid_t>(*task.pid), paths.status)) {
        // The wrapper writes its pid file before it starts the command, so nothing ran. Unless
        // it finished in between (then there is a status), which Conclude checks once more.
        Conclude(task.key, paths, "never started");
        continue;
      }
      pid = static_cast<pid_t>(*task.pid);  // still starting up; identified by its command line
    }
    if (pid > 0) {
      // Open first, then check identity: a pidfd opened before the check keeps naming the
      // process we checked even if it exits and its pid is reused right after.
      if (int fd = PidfdOpen(pid); fd >= 0) {
        if (IsLiveWrapper(pid, start_time, paths)) {
          auto entry = std::make_shared<Running>(io_);
          entry->key = task.key;
          entry->pid = pid;
          entry->paths = paths;
          entry->pidfd.assign(fd);
          running_[task.key] = entry;
          adopted.push_back(task.key);
          if (auto progress = ReadProgressFile(paths.progress)) {
            ExecutorEvent event;
            event.kind = ExecutorEvent::Kind::kProgress;
            event.key = task.key;
            event.progress = *progress;
            event.at = Now();
            Emit(std::move(event));
          }
          Follow(entry);
          continue;
        }
        ::close(fd);
      }
    }
    // It may have finished between our first look and now: Conclude reads the status again.
    Conclude(task.key, paths, "process vanished without a status");
  }
  return adopted;
}

void LocalExecutor::Follow(const std::shared_ptr<Running>& entry) {
  if (!entry->pidfd.is_open()) return;  // the end of its stdout stands in (ReadOutput)
  std::weak_ptr<int> alive = alive_;
  auto on_exit = [this, alive, entry](const boost::system::error_code& ec) {
    if (alive.expired() || entry->done || ec == boost::asio::error::operation_aborted) return;
    OnWrapperExited(entry);
  };
  entry->pidfd.async_wait(boost::asio::posix::stream_descriptor::wait_read, std::move(on_exit));
}

void LocalExecutor::ReadOutput(const std::shared_ptr<Running>& entry) {
  std::weak_ptr<int> alive = alive_;
  auto on_read = [this, alive, entry](const boost::system::error_code& ec, size_t n) {
    if (alive.expired() || entry->done) return;
    if (!ec) {
      OnOutput(*entry, std::string_view(entry->buf.data(), n));
      ReadOutput(entry);
      return;
    }
    // The wrapper's stdout ends when it exits, after its last progress line: the try ends now
    // if its exit was seen already.
    boost::system::error_code ignored;
    entry->out.close(ignored);
    if (entry->exited) {
      Finish(entry);
    } else if (!entry->pidfd.is_open()) {
      OnWrapperExited(entry);
    }
  };
  entry->out.async_read_some(boost::asio::buffer(entry->buf), std::move(on_read));
}

void LocalExecutor::OnOutput(Running& entry, std::string_view chunk) {
  entry.partial.append(chunk);
  std::optional<double> latest;  // a burst of updates makes one event
  size_t start = 0;
  for (size_t nl; (nl = entry.partial.find('\n', start)) != std::string::npos; start = nl + 1) {
    const std::string_view line = std::string_view(entry.partial).substr(start, nl - start);
    if (auto p = ParseProgressReport(line)) latest = p;
    if (auto error = ParseWrapperError(line)) entry.wrapper_error = std::move(*error);
  }
  entry.partial.erase(0, start);
  if (entry.partial.size() > kMaxPendingReportLine) entry.partial.clear();  // not ours to parse
  if (!latest) return;
  ExecutorEvent event;
  event.kind = ExecutorEvent::Kind::kProgress;
  event.key = entry.key;
  event.progress = *latest;
  event.at = Now();
  Emit(std::move(event));
}

void LocalExecutor::OnWrapperExited(const std::shared_ptr<Running>& entry) {
  entry->exited = true;
  if (entry->pidfd.is_open()) {
    siginfo_t info{};
    const int fd = entry->pidfd.native_handle();
    int rc = ::waitid(P_PIDFD, static_cast<id_t>(fd), &info, WEXITED | WNOHANG);
    if (rc == 0 && info.si_pid == 0) {
      // Our child, and the pidfd says it exited: it is about to become waitable.
      rc = ::waitid(P_PIDFD, static_cast<id_t>(fd), &info, WEXITED);
    }
    // ECHILD: adopted, not ours; whoever inherited it reaps it.
    if (rc == 0 && info.si_pid != 0) {
      entry->wrapper_status =
          info.si_code == CLD_EXITED ? W_EXITCODE(info.si_status, 0) : W_EXITCODE(0, info.si_status);
    }
  } else if (entry->spawned_here) {
    int status = 0;
    while (::waitpid(entry->pid, &status, 0) < 0 && errno == EINTR) {
    }
    entry->wrapper_status = status;
  }
  if (!entry->out.is_open()) {
    Finish(entry);
    return;
  }
  // Progress it printed last is still in the pipe; the read handler finishes at its end.
  std::weak_ptr<int> alive = alive_;
  entry->output_end_timer.expires_after(kOutputEndGrace);
  entry->output_end_timer.async_wait([this, alive, entry](const boost::system::error_code& ec) {
    if (alive.expired() || entry->done || ec) return;
    Finish(entry);
  });
}

void LocalExecutor::Finish(const std::shared_ptr<Running>& entry) {
  entry->done = true;
  entry->output_end_timer.cancel();
  boost::system::error_code ignored;
  entry->pidfd.close(ignored);
  entry->out.close(ignored);
  running_.erase(entry->key);

  const std::optional<int>& status = entry->wrapper_status;
  std::string lost = "task wrapper died without recording a status";
  // A wrapper forked by the WrapperSpawner is not our child: no wait status, but its "error"
  // line says why it did not start the command.
  if (!entry->wrapper_error.empty()) {
    lost = "task wrapper could not start the command: " + entry->wrapper_error;
  } else if (status && WIFEXITED(*status) && WEXITSTATUS(*status) == kWrapperRefusedExit) {
    lost = "another task wrapper already runs this try (or it already ran); not started again";
  } else if (status && WIFEXITED(*status) && WEXITSTATUS(*status) == kWrapperSetupFailedExit) {
    lost = "task wrapper could not start the command (see its message in the log or the daemon's stderr)";
  } else if (status) {
    lost += " (" + DescribeWaitStatus(*status) + ")";
  }
  Conclude(entry->key, entry->paths, std::move(lost));
}

void LocalExecutor::Conclude(const TaskInstanceKey& key, const TaskSidecarPaths& paths,
                             std::string lost_reason) {
  ExecutorEvent event;
  event.key = key;
  auto exit = ReadStatusFile(paths.status);
  if (exit.ok()) {
    event.kind = ExecutorEvent::Kind::kFinished;
    event.exit_code = exit->exit_code;
    event.reason = exit->reason;
    // When the wrapper recorded it, which after a restart may be long ago.
    event.at = FileModifiedAt(paths.status).value_or(Now());
  } else {
    event.kind = ExecutorEvent::Kind::kLost;
    event.reason = exit.status().IsNotFound() ? std::move(lost_reason)
                                              : "unreadable status file: " + exit.status().message();
    event.at = Now();
  }
  Emit(std::move(event));
}

void LocalExecutor::Emit(ExecutorEvent event) { events_.Push(std::move(event)); }

TimePoint LocalExecutor::Now() const {
  if (options_.clock) return options_.clock->Now();
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

}  // namespace nightshift

#include "executor/task_wrapper.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "executor/task_protocol.h"

namespace nightshift {
namespace {

constexpr std::string_view kDirective = "::progress";
// An unfinished line is held back only while it may still turn out to be a progress directive;
// past this size it cannot be one and goes to the log as it is.
constexpr size_t kMaxHeldLine = 4096;
// Output copied per poll round, so that a command printing without pause cannot delay our
// reaction to a stop request.
constexpr size_t kMaxReadPerRound = 1 << 20;
// RLIMIT_CPU's soft limit sends SIGXCPU; the hard limit, this much later, SIGKILL for a command
// that catches or ignores SIGXCPU.
constexpr rlim_t kCpuTimeKillAfterSeconds = 5;

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::optional<double> ParseDouble(std::string_view text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

// True while `held` (the start of an unfinished line) may still become "::progress ...".
bool CouldBeDirective(std::string_view held) {
  return held.size() <= kDirective.size() ? kDirective.starts_with(held) : held.starts_with(kDirective);
}

int64_t MonotonicMs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// 0, or the errno of the write that failed.
int WriteFully(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return 0;
}

rlim_t CpuSeconds(Duration cpu_time) {
  return static_cast<rlim_t>((cpu_time.count() + 999) / 1000);  // a limit of 1.5s allows 2
}

// Applies `limits` to the calling process (the command, just before exec). The error text, or
// empty when all were applied.
std::string ApplyProcessLimits(const TaskLimits& limits) {
  auto set = [](int resource, rlim_t soft, rlim_t hard, std::string_view name) -> std::string {
    const rlimit value{soft, hard};
    if (::setrlimit(resource, &value) == 0) return "";
    return "cannot set limits." + std::string(name) + ": " + std::strerror(errno);
  };
  std::string error;
  if (limits.cpu_time && error.empty()) {
    const rlim_t seconds = CpuSeconds(*limits.cpu_time);
    error = set(RLIMIT_CPU, seconds, seconds + kCpuTimeKillAfterSeconds, "cpu_time");
  }
  if (limits.address_space && error.empty()) {
    const auto bytes = static_cast<rlim_t>(*limits.address_space);
    error = set(RLIMIT_AS, bytes, bytes, "address_space");
  }
  if (limits.open_files && error.empty()) {
    const auto files = static_cast<rlim_t>(*limits.open_files);
    error = set(RLIMIT_NOFILE, files, files, "open_files");
  }
  if (limits.nice && error.empty() && ::setpriority(PRIO_PROCESS, 0, *limits.nice) != 0) {
    error = "cannot set limits.nice: " + std::string(std::strerror(errno));
  }
  return error;
}

// Runs in the forked child; never returns. The wrapper is single-threaded, so the child may
// use ordinary calls before exec.
[[noreturn]] void ExecCommand(const TaskWrapperArgs& args, int out_fd) {
  // Its own process group, so that stopping the task reaches everything it started.
  ::setpgid(0, 0);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);  // EINVAL for libc's own: fine
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull > 0) {
    ::dup2(devnull, 0);
    ::close(devnull);
  }
  ::dup2(out_fd, 1);
  ::dup2(out_fd, 2);
  if (out_fd > 2) ::close(out_fd);
  if (!args.cwd.empty() && ::chdir(args.cwd.c_str()) != 0) {
    std::string msg =
        "nightshift: cannot change directory to " + args.cwd + ": " + std::strerror(errno) + "\n";
    WriteFully(2, msg);
    ::_exit(127);
  }
  // Last, so that nothing of ours runs under them.
  if (std::string error = ApplyProcessLimits(args.limits); !error.empty()) {
    WriteFully(2, "nightshift: " + error + "\n");
    ::_exit(126);
  }
  ::execl("/bin/sh", "sh", "-c", args.command.c_str(), static_cast<char*>(nullptr));
  std::string msg = std::string("nightshift: cannot run /bin/sh: ") + std::strerror(errno) + "\n";
  WriteFully(2, msg);
  ::_exit(127);
}

class Wrapper {
 public:
  Wrapper(TaskWrapperArgs args, bool pid_file_written)
      : args_(std::move(args)), pid_file_written_(pid_file_written) {}
  ~Wrapper() {
    for (int fd : {log_fd_, signal_fd_, pipe_fd_}) {
      if (fd >= 0) ::close(fd);
    }
  }
  Wrapper(const Wrapper&) = delete;
  Wrapper& operator=(const Wrapper&) = delete;

  int Run();

 private:
  int Fail(const std::string& what);  // before the command started
  void Note(const std::string& text);
  bool ReadPipe(size_t limit);  // false at end of file
  void OnOutput(std::string_view chunk);
  void WriteLog(std::string_view data);  // the task's output, within the log's limits
  TaskExit Outcome(int wait_status, const rusage& usage) const;
  void FlushHeld();
  void ReportProgress(double fraction);
  void WriteStdout(std::string_view text);
  void HandleSignals();
  bool ChildExited();

  TaskWrapperArgs args_;
  bool pid_file_written_ = false;  // by the WrapperSpawner's child, before it became us
  int log_fd_ = -1;
  int signal_fd_ = -1;
  int pipe_fd_ = -1;
  pid_t child_ = -1;
  bool stdout_ok_ = true;
  std::string held_;       // the start of an unfinished line that may become a directive
  bool mid_line_ = false;  // the output is inside a line: what follows cannot be a directive
  bool log_mid_line_ = false;  // the log file ends inside a line: a note starts a new one
  bool child_changed_ = false;
  bool stopping_ = false;  // we sent SIGTERM to the group
  bool killed_ = false;    // we sent SIGKILL to the group
  int64_t kill_deadline_ms_ = 0;
  std::optional<ReservedFile> status_file_;  // its space taken before the command starts
  int64_t log_size_limit_ = kDefaultTaskLogSize;
  int64_t log_bytes_ = 0;      // in the log file, notes aside
  int64_t dropped_bytes_ = 0;  // output past log_size_limit_
  int log_errno_ = 0;          // the first failed write to the log; nothing is written after it
  int64_t unwritten_bytes_ = 0;  // output lost to that failure
  bool log_cut_ = false;         // the log reached its limit
};

int Wrapper::Fail(const std::string& what) {
  std::string msg = "nightshift " + std::string(kTaskWrapperCommand) + ": " + what + "\n";
  WriteFully(2, msg);
  if (log_fd_ >= 0) Note(what);
  WriteStdout(FormatWrapperError(what));
  return kWrapperSetupFailedExit;
}

void Wrapper::Note(const std::string& text) {
  std::string line = (log_mid_line_ ? "\nnightshift: " : "nightshift: ") + text + "\n";
  log_mid_line_ = false;
  (void)WriteFully(log_fd_, line);  // best effort: a note must not hide the error it reports
}

void Wrapper::WriteLog(std::string_view data) {
  if (data.empty()) return;
  if (log_errno_ != 0) {
    unwritten_bytes_ += static_cast<int64_t>(data.size());
    return;
  }
  const int64_t room = std::max<int64_t>(0, log_size_limit_ - log_bytes_);
  const bool reaches_limit = static_cast<int64_t>(data.size()) > room;
  if (reaches_limit) {
    dropped_bytes_ += static_cast<int64_t>(data.size()) - room;
    data = data.substr(0, static_cast<size_t>(room));
  }
  if (int err = WriteFully(log_fd_, data); err != 0) {
    // The rest of the output is drained and counted but not written: a log with a hole would
    // look complete. The try fails for it when the command ends.
    log_errno_ = err;
    unwritten_bytes_ += static_cast<int64_t>(data.size());
    return;
  }
  log_bytes_ += static_cast<int64_t>(data.size());
  if (!data.empty()) log_mid_line_ = data.back() != '\n';
  if (reaches_limit && !log_cut_) {
    log_cut_ = true;
    // Said at once for whoever follows the log; the count of what was dropped comes at the end.
    Note("the log reached limits.log_size (" + FormatByteSize(log_size_limit_) +
         "); the rest of the task's output is dropped");
  }
}

int Wrapper::Run() {
  // A daemon that is gone must not kill us through a broken pipe or a hangup, and we must see
  // our child's exit (an inherited SIG_IGN for SIGCHLD would make the kernel reap it for us).
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  ::signal(SIGCHLD, SIG_DFL);
  sigset_t handled;
  sigemptyset(&handled);
  sigaddset(&handled, SIGTERM);
  sigaddset(&handled, SIGINT);
  sigaddset(&handled, SIGCHLD);
  // The executor starts us with SIGTERM/SIGINT already blocked, so a cancel that arrives this
  // early stays pending instead of killing us before we can record anything.
  ::sigprocmask(SIG_BLOCK, &handled, nullptr);
  // Descriptors we did not open (the daemon's sockets, its state-dir lock) must not reach the
  // task, which may outlive the daemon and would keep them busy.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  ::setsid();  // EPERM when already a session or group leader: we are out of the daemon's group then

  signal_fd_ = ::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd_ < 0) return Fail(std::string("signalfd: ") + std::strerror(errno));
  struct stat out_stat {};
  if (::fstat(1, &out_stat) == 0 && S_ISFIFO(out_stat.st_mode)) {
    // A daemon that is alive but busy must not stall the task's log; progress lines are
    // dropped rather than waited for (the progress file keeps the latest value).
    ::fcntl(1, F_SETFL, ::fcntl(1, F_GETFL) | O_NONBLOCK);
  }

  log_fd_ = ::open(args_.log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (log_fd_ < 0) return Fail("cannot open log " + args_.log_path + ": " + std::strerror(errno));
  // The lock lives as long as this process: a second wrapper for the same try refuses to run.
  if (::flock(log_fd_, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
    WriteFully(2, "nightshift __task-wrapper: another task wrapper already runs this try\n");
    WriteStdout(FormatWrapperError("another task wrapper already runs this try; not started again"));
    return kWrapperRefusedExit;
  }
  if (::access(args_.status_path.c_str(), F_OK) == 0) {
    WriteFully(2, "nightshift __task-wrapper: this try already has a status; not running it again\n");
    WriteStdout(FormatWrapperError("this try already has a status; not started again"));
    return kWrapperRefusedExit;
  }
  log_size_limit_ = args_.limits.log_size.value_or(kDefaultTaskLogSize);
  if (struct stat log_stat {}; ::fstat(log_fd_, &log_stat) == 0) {
    log_bytes_ = log_stat.st_size;
    log_mid_line_ = log_stat.st_size > 0;  // cannot tell cheaply; a blank line is the lesser harm
  }
  // A task that fills the disk with its output (or anything else that does) must not keep its
  // result from being recorded: the status file's space is taken now.
  auto reserved = ReservedFile::Create(args_.status_path, kStatusFileReserve);
  if (!reserved.ok()) return Fail("cannot write the status file: " + reserved.status().message());
  status_file_.emplace(std::move(*reserved));
  auto self = ReadProcStat(::getpid());
  if (!self) return Fail("cannot read /proc/self/stat");
  // Not fsync'ed, like the status file below and like SQLite's commits (synchronous=NORMAL):
  // written before the command starts, the file survives any process being killed, the
  // daemon and this wrapper included; only a machine crash can lose it, and that also kills
  // the command. The fsyncs cost more than the rest of a short try (docs/adr/0004).
  Status s;
  if (!pid_file_written_) {
    s = WriteFileAtomically(args_.pid_path, FormatPidFile({::getpid(), self->start_time}), false);
    if (!s.ok()) return Fail("cannot write pid file: " + s.message());
  }

  sigset_t pending;
  sigemptyset(&pending);
  ::sigpending(&pending);
  for (int sig : {SIGTERM, SIGINT}) {
    if (!sigismember(&pending, sig)) continue;
    const int code = 128 + sig;
    Note("stopped before the command started");
    s = status_file_->Commit(FormatStatusFile({code, "cancelled before the command started"}), false);
    if (!s.ok()) return Fail("cannot write status: " + s.message());
    return code;
  }

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Fail(std::string("pipe: ") + std::strerror(errno));
  child_ = ::fork();
  if (child_ < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return Fail(std::string("fork: ") + std::strerror(errno));
  }
  if (child_ == 0) ExecCommand(args_, fds[1]);
  // Also set here: a stop request right after fork must find the group already in place.
  ::setpgid(child_, child_);
  ::close(fds[1]);
  pipe_fd_ = fds[0];
  ::fcntl(pipe_fd_, F_SETFL, ::fcntl(pipe_fd_, F_GETFL) | O_NONBLOCK);

  bool pipe_open = true;
  while (!ChildExited()) {
    pollfd pfds[2] = {{signal_fd_, POLLIN, 0}, {pipe_open ? pipe_fd_ : -1, POLLIN, 0}};
    int timeout = -1;
    if (stopping_ && !killed_) {
      timeout = static_cast<int>(std::clamp<int64_t>(kill_deadline_ms_ - MonotonicMs(), 0, 1 << 30));
    }
    if (::poll(pfds, 2, timeout) < 0 && errno != EINTR) {
      // Cannot happen with valid arguments; if it does, we cannot watch the task any more:
      // stop it and record that, rather than leave it running unobserved.
      Note(std::string("poll failed: ") + std::strerror(errno) + "; killing the task");
      ::kill(-child_, SIGKILL);
      killed_ = stopping_ = true;
      siginfo_t info{};
      ::waitid(P_PID, static_cast<id_t>(child_), &info, WEXITED | WNOWAIT);
      break;
    }
    if (pipe_open && (pfds[1].revents & (POLLIN | POLLHUP | POLLERR))) pipe_open = ReadPipe(kMaxReadPerRound);
    if (pfds[0].revents & POLLIN) HandleSignals();
    if (stopping_ && !killed_ && MonotonicMs() >= kill_deadline_ms_) {
      Note("the task did not stop within " + std::to_string(args_.kill_grace_ms) + " ms; sending SIGKILL");
      ::kill(-child_, SIGKILL);
      killed_ = true;
    }
  }

  // The child is a zombie until waitpid below, so its pid still names the group: no other
  // process can have taken it. Background processes of a task we did not stop are left alone.
  if (stopping_) ::kill(-child_, SIGKILL);
  if (pipe_open) {
    // Everything the command wrote is in the pipe now; read that much and no more, since a
    // background process may keep writing forever.
    int available = 0;
    if (::ioctl(pipe_fd_, FIONREAD, &available) == 0 && available > 0) {
      ReadPipe(static_cast<size_t>(available));
    }
  }
  FlushHeld();
  int wait_status = 0;
  rusage usage{};
  while (::wait4(child_, &wait_status, 0, &usage) < 0 && errno == EINTR) {
  }
  if (dropped_bytes_ > 0) {
    Note(std::to_string(dropped_bytes_) + " bytes of output were dropped: the log is limited to " +
         FormatByteSize(log_size_limit_) + " (limits.log_size)");
  }
  const TaskExit exit = Outcome(wait_status, usage);
  if (log_errno_ != 0) Note(exit.reason);  // may fail too; the status file has it
  s = status_file_->Commit(FormatStatusFile(exit), false);
  if (!s.ok()) {
    std::string msg = "nightshift __task-wrapper: cannot write status: " + s.message() + "\n";
    WriteFully(2, msg);
    Note("cannot write status: " + s.message());
  }
  return exit.exit_code;
}

TaskExit Wrapper::Outcome(int wait_status, const rusage& usage) const {
  TaskExit exit{ExitCodeOfWaitStatus(wait_status), {}};
  if (exit.exit_code != 0) exit.reason = DescribeWaitStatus(wait_status);
  if (exit.exit_code != 0 && stopping_) {
    exit.reason += killed_ ? " (stopped: SIGTERM, then SIGKILL)" : " (stopped)";
  }
  const TaskLimits& limits = args_.limits;
  if (exit.exit_code != 0 && !stopping_ && limits.cpu_time) {
    // SIGXCPU at the soft limit, SIGKILL at the hard one; a shell that ran the command as its
    // child reports 128+SIGXCPU instead.
    const int64_t used_ms = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * int64_t{1000} +
                            (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000;
    const bool by_signal = WIFSIGNALED(wait_status) &&
                           (WTERMSIG(wait_status) == SIGXCPU ||
                            (WTERMSIG(wait_status) == SIGKILL &&
                             used_ms >= static_cast<int64_t>(CpuSeconds(*limits.cpu_time)) * 1000));
    if (by_signal || exit.exit_code == 128 + SIGXCPU) {
      exit.reason += ": CPU time limit exceeded (limits.cpu_time: " + FormatDuration(*limits.cpu_time) + ")";
      return exit;
    }
  }
  if (exit.exit_code != 0 && !stopping_) {
    if (std::string applied = limits.DescribeProcessLimits(); !applied.empty()) {
      exit.reason += " (under limits: " + applied + ")";
    }
  }
  if (log_errno_ != 0) {
    // Its output is lost, so its success cannot be told apart from a failure.
    if (exit.exit_code == 0) {
      exit.exit_code = kWrapperSetupFailedExit;
      exit.reason = "exit code 0";
    }
    exit.reason += "; cannot write the log " + args_.log_path + ": " + std::strerror(log_errno_) + " (" +
                   std::to_string(unwritten_bytes_) + " bytes of output lost)";
  }
  return exit;
}

bool Wrapper::ReadPipe(size_t limit) {
  char buf[65536];
  while (limit > 0) {
    ssize_t n = ::read(pipe_fd_, buf, std::min(sizeof buf, limit));
    if (n > 0) {
      OnOutput(std::string_view(buf, static_cast<size_t>(n)));
      limit -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN;
  }
  return true;
}

void Wrapper::OnOutput(std::string_view chunk) {
  std::optional<double> progress;
  // Scanned in place, line by line, and logged in runs between directives: a task printing
  // short lines at full speed must not be slowed down by us.
  std::string joined;
  if (!held_.empty()) {
    joined = std::exchange(held_, {});
    joined.append(chunk);
    chunk = joined;
  }
  size_t logged = 0;  // chunk[logged, start) is output not yet written to the log
  size_t start = 0;
  while (const void* found = std::memchr(chunk.data() + start, '\n', chunk.size() - start)) {
    const size_t nl = static_cast<size_t>(static_cast<const char*>(found) - chunk.data());
    if (!mid_line_ && chunk[start] == kDirective.front()) {
      if (auto p = ParseProgressDirective(chunk.substr(start, nl - start))) {
        progress = p;  // only the latest of a burst matters
        WriteLog(chunk.substr(logged, start - logged));
        logged = nl + 1;
      }
    }
    mid_line_ = false;
    start = nl + 1;
  }
  // Hold back an unfinished line only while it may still be a directive, so that partial
  // lines ("downloading... ") show up in the log at once.
  const std::string_view rest = chunk.substr(start);
  if (!rest.empty() && !mid_line_ && CouldBeDirective(rest) && rest.size() <= kMaxHeldLine) {
    held_.assign(rest);
    WriteLog(chunk.substr(logged, start - logged));
  } else {
    if (!rest.empty()) mid_line_ = true;
    WriteLog(chunk.substr(logged));
  }
  if (progress) ReportProgress(*progress);
}

void Wrapper::FlushHeld() {
  if (held_.empty()) return;
  if (auto p = mid_line_ ? std::nullopt : ParseProgressDirective(held_)) {
    ReportProgress(*p);
  } else {
    WriteLog(held_);  // a final line without newline stays as the task wrote it
    mid_line_ = true;
  }
  held_.clear();
}

void Wrapper::ReportProgress(double fraction) {
  if (!args_.progress_path.empty()) {
    // Not fsync'ed: progress is a hint, and a crash losing the latest value costs nothing.
    (void)WriteFileAtomically(args_.progress_path, FormatFraction(fraction) + "\n", false);
  }
  WriteStdout(FormatProgressReport(fraction));
}

void Wrapper::WriteStdout(std::string_view text) {
  while (stdout_ok_ && !text.empty()) {
    ssize_t n = ::write(1, text.data(), text.size());
    if (n > 0) {
      text.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return;  // the daemon is not reading right now; the progress file has the value
    } else {
      stdout_ok_ = false;  // EPIPE: the daemon is gone, and the task goes on without it
    }
  }
}

void Wrapper::HandleSignals() {
  signalfd_siginfo info;
  while (::read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGCHLD) {
      child_changed_ = true;
    } else if (!stopping_) {
      stopping_ = true;
      kill_deadline_ms_ = MonotonicMs() + args_.kill_grace_ms;
      Note(std::string("received ") + (info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM") +
           "; sending SIGTERM to the task's process group");
      ::kill(-child_, SIGTERM);
    }
  }
}

bool Wrapper::ChildExited() {
  if (!child_changed_) return false;
  child_changed_ = false;
  // WNOWAIT: look without reaping, so the group id stays ours until we are done with it.
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(child_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    return errno == ECHILD;  // cannot happen with SIGCHLD at its default; do not spin if it does
  }
  return info.si_pid == child_;
}

}  // namespace

std::optional<double> ParseProgressDirective(std::string_view line) {
  if (!line.starts_with(kDirective)) return std::nullopt;
  std::string_view rest = line.substr(kDirective.size());
  if (rest.empty() || (rest.front() != ' ' && rest.front() != '\t')) return std::nullopt;
  rest = TrimBlanks(rest);
  if (rest.ends_with('%')) {
    auto pct = ParseDouble(TrimBlanks(rest.substr(0, rest.size() - 1)));
    if (!pct) return std::nullopt;
    return std::clamp(*pct / 100.0, 0.0, 1.0);
  }
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto done = ParseDouble(TrimBlanks(rest.substr(0, slash)));
  auto total = ParseDouble(TrimBlanks(rest.substr(slash + 1)));
  if (!done || !total || *total <= 0 || *done < 0) return std::nullopt;
  return std::clamp(*done / *total, 0.0, 1.0);
}

int RunTaskWrapper(int argc, char** argv, bool pid_file_written) {
  auto args = ParseTaskWrapperArgs(argc, argv);
  if (!args.ok()) {
    std::string msg = "nightshift " + std::string(kTaskWrapperCommand) + ": " + args.status().message() +
                      "\nusage: nightshift " + std::string(kTaskWrapperCommand) +
                      " --log PATH --status PATH --pid-file PATH [--progress-file PATH] [--cwd DIR]"
                      " [--kill-grace-ms N] [--log-size BYTES] [--cpu-time DURATION] [--address-space BYTES]"
                      " [--open-files N] [--nice N] -- COMMAND\n";
    WriteFully(2, msg);
    return kWrapperSetupFailedExit;
  }
  Wrapper wrapper(std::move(*args), pid_file_written);
  return wrapper.Run();
}

}  // namespace nightshift

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
#include "executor/try_output.h"

namespace nightshift {
namespace {

// Output copied per poll round, so that a command printing without pause cannot delay our
// reaction to a stop request.
constexpr size_t kMaxReadPerRound = 1 << 20;

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
    const auto seconds = static_cast<rlim_t>(CpuLimitSeconds(*limits.cpu_time));
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
  explicit Wrapper(TaskWrapperArgs args) : args_(std::move(args)) {}
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
  void ReportProgress(double fraction);
  void WriteStdout(std::string_view text);
  void HandleSignals();
  bool ChildExited();

  TaskWrapperArgs args_;
  int log_fd_ = -1;
  int signal_fd_ = -1;
  int pipe_fd_ = -1;
  pid_t child_ = -1;
  bool stdout_ok_ = true;
  bool child_changed_ = false;
  bool stopping_ = false;  // we sent SIGTERM to the group
  bool killed_ = false;    // we sent SIGKILL to the group
  int64_t kill_deadline_ms_ = 0;
  std::optional<ReservedFile> status_file_;  // its space taken before the command starts
  std::optional<TryOutput> output_;  // once the log is open
};

int Wrapper::Fail(const std::string& what) {
  std::string msg = "nightshift " + std::string(kTaskWrapperCommand) + ": " + what + "\n";
  WriteFully(2, msg);
  if (log_fd_ >= 0) Note(what);
  WriteStdout(FormatWrapperError(what));
  return kWrapperSetupFailedExit;
}

void Wrapper::Note(const std::string& text) {
  if (output_) output_->Note(text);
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
  struct stat log_stat {};
  const int64_t existing = ::fstat(log_fd_, &log_stat) == 0 ? log_stat.st_size : 0;
  output_.emplace(log_fd_, args_.log_path, args_.limits.log_size.value_or(kDefaultTaskLogSize), existing);
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
  Status s = WriteFileAtomically(args_.pid_path, FormatPidFile({::getpid(), self->start_time}), false);
  if (!s.ok()) return Fail("cannot write pid file: " + s.message());

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
  if (auto p = output_->Flush()) ReportProgress(*p);
  int wait_status = 0;
  rusage usage{};
  while (::wait4(child_, &wait_status, 0, &usage) < 0 && errno == EINTR) {
  }
  TaskExit exit = DescribeExit(wait_status, usage, args_.limits, stopping_, killed_);
  output_->Conclude(exit);
  s = status_file_->Commit(FormatStatusFile(exit), false);
  if (!s.ok()) {
    std::string msg = "nightshift __task-wrapper: cannot write status: " + s.message() + "\n";
    WriteFully(2, msg);
    Note("cannot write status: " + s.message());
  }
  return exit.exit_code;
}

bool Wrapper::ReadPipe(size_t limit) {
  char buf[65536];
  while (limit > 0) {
    ssize_t n = ::read(pipe_fd_, buf, std::min(sizeof buf, limit));
    if (n > 0) {
      if (auto p = output_->OnOutput(std::string_view(buf, static_cast<size_t>(n)))) ReportProgress(*p);
      limit -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN;
  }
  return true;
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
  constexpr std::string_view kDirective = "::progress";
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

int RunTaskWrapper(int argc, char** argv) {
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
  Wrapper wrapper(std::move(*args));
  return wrapper.Run();
}

}  // namespace nightshift

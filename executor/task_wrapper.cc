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

#include "core/unique_fd.h"
#include "executor/process.h"
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

class Wrapper {
 public:
  explicit Wrapper(TaskWrapperArgs args) : args_(std::move(args)) {}
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
  UniqueFd log_fd_;
  UniqueFd signal_fd_;
  UniqueFd pipe_fd_;
  pid_t child_ = -1;
  bool stdout_ok_ = true;
  bool child_changed_ = false;
  GroupStop stop_;
  std::optional<ReservedFile> status_file_;  // its space taken before the command starts
  std::optional<TryOutput> output_;  // once the log is open
};

int Wrapper::Fail(const std::string& what) {
  std::string msg = "nightshift " + std::string(kTaskWrapperCommand) + ": " + what + "\n";
  WriteFully(2, msg);
  if (log_fd_) Note(what);
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

  signal_fd_.Reset(::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_) return Fail(std::string("signalfd: ") + std::strerror(errno));
  struct stat out_stat {};
  if (::fstat(1, &out_stat) == 0 && S_ISFIFO(out_stat.st_mode)) {
    // A daemon that is alive but busy must not stall the task's log; progress lines are
    // dropped rather than waited for (the progress file keeps the latest value).
    ::fcntl(1, F_SETFL, ::fcntl(1, F_GETFL) | O_NONBLOCK);
  }

  log_fd_.Reset(::open(args_.log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  if (!log_fd_) return Fail("cannot open log " + args_.log_path + ": " + std::strerror(errno));
  // The lock lives as long as this process: a second wrapper for the same try refuses to run.
  if (::flock(log_fd_.get(), LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
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
  const int64_t existing = ::fstat(log_fd_.get(), &log_stat) == 0 ? log_stat.st_size : 0;
  output_.emplace(log_fd_.get(), args_.log_path, args_.limits.log_size.value_or(kDefaultTaskLogSize), existing);
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
  pipe_fd_.Reset(fds[0]);
  UniqueFd pipe_write(fds[1]);
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull) return Fail(std::string("cannot open /dev/null: ") + std::strerror(errno));
  ShellArgv argv(args_.command);
  ChildSpec spec;
  spec.argv = argv.get();
  spec.cwd = args_.cwd.empty() ? nullptr : args_.cwd.c_str();
  spec.stdin_fd = devnull.get();
  spec.stdout_fd = spec.stderr_fd = pipe_write.get();
  spec.limits = ChildLimitsFor(args_.limits);
  Result<StartedChild> child = StartChild(spec);
  if (!child.ok()) return Fail(child.status().message());
  child_ = child->pid;
  stop_ = GroupStop(child_);
  pipe_write.Reset();
  devnull.Reset();
  ::fcntl(pipe_fd_.get(), F_SETFL, ::fcntl(pipe_fd_.get(), F_GETFL) | O_NONBLOCK);

  bool pipe_open = true;
  while (!ChildExited()) {
    pollfd pfds[2] = {{signal_fd_.get(), POLLIN, 0}, {pipe_open ? pipe_fd_.get() : -1, POLLIN, 0}};
    const int timeout = static_cast<int>(std::min<int64_t>(stop_.MsUntilKill(), 1 << 30));
    if (::poll(pfds, 2, timeout) < 0 && errno != EINTR) {
      // Cannot happen with valid arguments; if it does, we cannot watch the task any more:
      // stop it and record that, rather than leave it running unobserved.
      Note(std::string("poll failed: ") + std::strerror(errno) + "; killing the task");
      stop_.KillNow();
      siginfo_t info{};
      ::waitid(P_PID, static_cast<id_t>(child_), &info, WEXITED | WNOWAIT);
      break;
    }
    if (pipe_open && (pfds[1].revents & (POLLIN | POLLHUP | POLLERR))) pipe_open = ReadPipe(kMaxReadPerRound);
    if (pfds[0].revents & POLLIN) HandleSignals();
    if (stop_.KillIfDue()) Note(GraceOverNote(stop_));
  }

  // The child is a zombie until ReapChild below.
  stop_.LeaderExited();
  if (pipe_open) {
    // Everything the command wrote is in the pipe now; read that much and no more, since a
    // background process may keep writing forever.
    int available = 0;
    if (::ioctl(pipe_fd_.get(), FIONREAD, &available) == 0 && available > 0) {
      ReadPipe(static_cast<size_t>(available));
    }
  }
  if (auto p = output_->Flush()) ReportProgress(*p);
  rusage usage{};
  const int wait_status = ReapChild(child_, &usage);
  TaskExit exit = DescribeExit(wait_status, usage, args_.limits, stop_.stopping(), stop_.killed());
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
    ssize_t n = ::read(pipe_fd_.get(), buf, std::min(sizeof buf, limit));
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
  while (::read(signal_fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGCHLD) {
      child_changed_ = true;
    } else if (!stop_.stopping()) {
      Note(std::string("received ") + (info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM") +
           "; sending SIGTERM to the task's process group");
      stop_.Begin(args_.kill_grace_ms);
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

#include "executor/process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "core/unique_fd.h"
#include "executor/task_protocol.h"
#include "executor/try_output.h"

extern char** environ;  // (unistd.h declares it only under _GNU_SOURCE)

namespace nightshift {
namespace {

// Nanoseconds per clock tick of /proc/PID/stat's times (USER_HZ); 0 when unknown.
int64_t NsPerTick() {
  static const int64_t ns = [] {
    const long hz = ::sysconf(_SC_CLK_TCK);
    return hz > 0 ? int64_t{1000000000} / hz : int64_t{0};
  }();
  return ns;
}

// CLOCK_BOOTTIME in clock ticks, as /proc/PID/stat counts a process's start; 0 when unknown.
uint64_t BootTicks(int64_t ns_per_tick) {
  timespec now{};
  if (ns_per_tick <= 0 || ::clock_gettime(CLOCK_BOOTTIME, &now) != 0) return 0;
  return static_cast<uint64_t>((now.tv_sec * int64_t{1000000000} + now.tv_nsec) / ns_per_tick);
}

// What the child writes back into the parent's memory (vfork shares it; a fork's copy is its own).
struct ChildState {
  ChildSpec* spec = nullptr;
  // The child's start time as /proc/PID/stat gives it, which the kernel takes from
  // CLOCK_BOOTTIME while it forks: so it is `ticks_before_fork` when the clock is still on that
  // tick afterwards, as it nearly always is (a tick is 10 ms, a vfork a fraction of one). Else
  // the child reads its /proc/self/stat into stat_text.
  uint64_t ticks_before_fork = 0;
  int64_t ns_per_tick = 0;
  char stat_text[1024];
  ssize_t stat_size = -1;
  int exec_errno = 0;  // the failed exec's errno (exec_failure_is_error)
  int report_fd = -1;  // a fork's way to tell exec_errno: a close-on-exec pipe
};

void ChildSay(const char* a, const char* b, int err) {
  const char* parts[] = {"nightshift: ", a, b, ": ", std::strerror(err), "\n"};
  for (const char* p : parts) (void)!::write(2, p, std::strlen(p));
}

void ChildDup(int fd, int target) {
  if (fd < 0) return;
  if (fd == target) {
    ::fcntl(fd, F_SETFD, 0);  // dup2 onto itself would leave close-on-exec set
  } else {
    ::dup2(fd, target);
  }
}

[[noreturn]] void ChildExec(ChildState& state) {
  ChildSpec& spec = *state.spec;
  // First, so that the parent, which runs on as soon as our exec begins, never waits for the
  // rest of that exec (measured: -j 2 on 2 CPUs, about 5% off `wide 2000` and `chain 1000`):
  // - a lock of the parent's on close_first would stay taken until exec closes our copy;
  // - the parent reading /proc/PID/stat would sleep on the kernel's exec lock; the wake-up then
  //   queues it on this CPU behind our exec while the other CPU may go idle. Read here, the
  //   file costs the same and waits for nothing; and only when the clock has moved on to the
  //   next tick since the fork began (see ChildState).
  if (spec.close_first >= 0) ::close(spec.close_first);
  if (spec.want_start_time && BootTicks(state.ns_per_tick) != state.ticks_before_fork) {
    if (const int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC); fd >= 0) {
      state.stat_size = ::read(fd, state.stat_text, sizeof state.stat_text);
      ::close(fd);
    }
  }
  if (spec.own_process_group) ::setpgid(0, 0);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sigismember(spec.reset_signals, sig) == 1) ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ChildDup(spec.stdin_fd, 0);
  ChildDup(spec.stdout_fd, 1);
  ChildDup(spec.stderr_fd, 2);
  // Marked rather than closed: the report pipe must stay open until the exec.
  if (spec.close_other_fds) ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  if (spec.cwd && ::chdir(spec.cwd) != 0) {
    ChildSay("cannot change directory to ", spec.cwd, errno);
    ::_exit(127);
  }
  // Last, so that nothing of ours runs under them.
  const ChildLimits& limits = spec.limits;
  if (limits.cpu && ::setrlimit(RLIMIT_CPU, &*limits.cpu) != 0) {
    ChildSay("cannot set limits.", "cpu_time", errno);
    ::_exit(126);
  }
  if (limits.address_space && ::setrlimit(RLIMIT_AS, &*limits.address_space) != 0) {
    ChildSay("cannot set limits.", "address_space", errno);
    ::_exit(126);
  }
  if (limits.open_files && ::setrlimit(RLIMIT_NOFILE, &*limits.open_files) != 0) {
    ChildSay("cannot set limits.", "open_files", errno);
    ::_exit(126);
  }
  if (limits.nice && ::setpriority(PRIO_PROCESS, 0, *limits.nice) != 0) {
    ChildSay("cannot set limits.", "nice", errno);
    ::_exit(126);
  }
  char* const* envp = spec.envp ? spec.envp : environ;
  if (spec.search_path) {
    ::execvpe(spec.file, spec.argv, envp);
  } else {
    ::execve(spec.file, spec.argv, envp);
  }
  const int err = errno;
  if (spec.exec_failure_is_error) {
    state.exec_errno = err;
    if (state.report_fd >= 0) (void)!::write(state.report_fd, &err, sizeof err);
  } else {
    ChildSay("cannot run ", spec.file, err);
  }
  ::_exit(127);
}

// Kept in a function of its own so that no local of the caller lives across the vfork.
__attribute__((noinline)) pid_t Spawn(ChildState& state) {
#if defined(__SANITIZE_ADDRESS__)
  const pid_t pid = ::fork();  // ASan's bookkeeping does not survive a shared address space
  constexpr bool kShared = false;
#else
  const pid_t pid = ::vfork();
  constexpr bool kShared = true;
#endif
  if (pid == 0) ChildExec(state);
  // A fork runs on while its child sets up: a stop right after this must find the group.
  if (!kShared && pid > 0 && state.spec->own_process_group) ::setpgid(pid, pid);
  return pid;
}

}  // namespace

ChildLimits ChildLimitsFor(const TaskLimits& limits) {
  ChildLimits out;
  if (limits.cpu_time) {
    const auto seconds = static_cast<rlim_t>(CpuLimitSeconds(*limits.cpu_time));
    out.cpu = rlimit{seconds, seconds + kCpuTimeKillAfterSeconds};
  }
  if (limits.address_space) {
    const auto bytes = static_cast<rlim_t>(*limits.address_space);
    out.address_space = rlimit{bytes, bytes};
  }
  if (limits.open_files) {
    const auto files = static_cast<rlim_t>(*limits.open_files);
    out.open_files = rlimit{files, files};
  }
  out.nice = limits.nice;
  return out;
}

sigset_t SignalsNotAtDefault() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction current {};
    if (sig == SIGKILL || sig == SIGSTOP || ::sigaction(sig, nullptr, &current) != 0) continue;
    if (current.sa_handler != SIG_DFL) sigaddset(&set, sig);
  }
  return set;
}

ShellArgv::ShellArgv(const std::string& command) {
  static char sh[] = "sh";
  static char dash_c[] = "-c";
  argv_ = {sh, dash_c, const_cast<char*>(command.c_str()), nullptr};
}

Result<StartedChild> StartChild(ChildSpec& spec) {
  sigset_t found;
  if (!spec.reset_signals) {
    found = SignalsNotAtDefault();
    spec.reset_signals = &found;
  }
  ChildState state;
  state.spec = &spec;
  UniqueFd report_read;
#if defined(__SANITIZE_ADDRESS__)
  if (spec.exec_failure_is_error) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return Status::IOError(std::string("pipe: ") + std::strerror(errno));
    report_read.Reset(fds[0]);
    state.report_fd = fds[1];
  }
#endif
  if (spec.want_start_time) {
    state.ns_per_tick = NsPerTick();
    state.ticks_before_fork = BootTicks(state.ns_per_tick);
  }
  // Every signal blocked across the vfork, so that none of our handlers runs in the child
  // before it has set them back to their defaults.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = Spawn(state);
  const int spawn_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  const uint64_t ticks_after_fork = spec.want_start_time ? BootTicks(state.ns_per_tick) : 0;
  if (spec.reset_signals == &found) spec.reset_signals = nullptr;
  if (state.report_fd >= 0) ::close(state.report_fd);
  if (pid < 0) return Status::IOError(std::string("cannot start ") + spec.file + ": " + std::strerror(spawn_errno));

  if (report_read) {
    int err = 0;
    while (::read(report_read.get(), &err, sizeof err) < 0 && errno == EINTR) {
    }
    state.exec_errno = err;
  }
  if (state.exec_errno != 0) {
    ReapChild(pid);
    return Status::IOError(std::string("cannot run ") + spec.file + ": " + std::strerror(state.exec_errno));
  }

  StartedChild started;
  started.pid = pid;
  if (spec.want_start_time) {
    if (state.ticks_before_fork != 0 && ticks_after_fork == state.ticks_before_fork) {
      started.start_time = state.ticks_before_fork;
    } else {
      std::optional<ProcStat> stat;
      if (state.stat_size > 0 && static_cast<size_t>(state.stat_size) < sizeof state.stat_text) {
        stat = ParseProcStat(std::string_view(state.stat_text, static_cast<size_t>(state.stat_size)));
      }
      if (!stat) stat = ReadProcStat(pid);  // a fork (sanitizer builds) wrote into its own copy
      if (stat) started.start_time = stat->start_time;
    }
  }
  return started;
}

int ReapChild(pid_t pid, rusage* usage) {
  int wait_status = 0;
  rusage ignored{};
  while (::wait4(pid, &wait_status, 0, usage ? usage : &ignored) < 0 && errno == EINTR) {
  }
  return wait_status;
}

bool PidfdExited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

bool GroupStop::Signal(int sig) const {
  if (leader_ <= 0) return false;
  // Checked through the pidfd, so the group id cannot belong to a process that took the pid.
  if (guard_pidfd_ >= 0 && PidfdExited(guard_pidfd_)) return false;
  return ::kill(-leader_, sig) == 0;
}

bool GroupStop::Begin(int64_t grace_ms) {
  if (stopping_) return false;
  if (guard_pidfd_ >= 0 && PidfdExited(guard_pidfd_)) return false;
  stopping_ = true;
  grace_ms_ = grace_ms;
  kill_at_ms_ = MonotonicMs() + grace_ms;
  Signal(SIGTERM);
  return true;
}

bool GroupStop::KillIfDue() {
  if (!stopping_ || killed_ || MonotonicMs() < kill_at_ms_) return false;
  KillNow();
  return true;
}

void GroupStop::KillNow() {
  stopping_ = killed_ = true;
  Signal(SIGKILL);
}

int64_t GroupStop::MsUntilKill() const {
  if (!stopping_ || killed_) return -1;
  const int64_t left = kill_at_ms_ - MonotonicMs();
  return left > 0 ? left : 0;
}

void GroupStop::LeaderExited() {
  if (stopping_) Signal(SIGKILL);
}

std::string GraceOverNote(const GroupStop& stop) {
  return "the task did not stop within " + std::to_string(stop.grace_ms()) + " ms; sending SIGKILL";
}

}  // namespace nightshift

// Starting and stopping the processes that run tries, in one place: the supervisor (local
// tries, supervisor.h), the task wrapper (Slurm tries, task_wrapper.h), the local executor
// (tries adopted after a restart) and the Slurm executor (its sbatch, squeue... calls) all
// start children with StartChild and stop process groups with GroupStop.
//
// StartChild is the hot path of a local try (a `true` task costs little more than it), so it
// uses vfork: no page tables are copied, and the parent sleeps only until the child has
// exec'ed. Between vfork and exec the child shares our memory, so it allocates nothing and
// only makes system calls on what ChildSpec prepared beforehand.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "core/status.h"
#include "core/task_limits.h"

namespace nightshift {

// The rlimits and niceness a child runs under, as setrlimit(2) and setpriority(2) take them.
struct ChildLimits {
  std::optional<rlimit> cpu, address_space, open_files;
  std::optional<int> nice;
};
// A task's limits: cpu_time rounded up to whole seconds, with the hard limit (SIGKILL)
// kCpuTimeKillAfterSeconds after the soft one (SIGXCPU); the others as given. log_size is not
// a process limit (TryOutput applies it).
ChildLimits ChildLimitsFor(const TaskLimits& limits);

// What a child gets. Every pointer must stay valid until StartChild returns.
struct ChildSpec {
  const char* file = "/bin/sh";
  char* const* argv = nullptr;  // argv[0] first, nullptr last
  bool search_path = false;     // `file` without a slash is looked up in PATH (execvpe)
  char* const* envp = nullptr;  // nullptr: this process's environment
  const char* cwd = nullptr;    // nullptr: this process's working directory
  int stdin_fd = -1;            // becomes 0 (e.g. /dev/null); -1: inherited
  int stdout_fd = -1;           // becomes 1; -1: inherited
  int stderr_fd = -1;           // becomes 2; -1: inherited
  // Descriptors other than 0, 1 and 2 are closed (for a parent whose descriptors are not all
  // close-on-exec: the daemon's libraries open some).
  bool close_other_fds = false;
  // A process group of its own, so that stopping it (GroupStop) reaches everything it started.
  // Not a session: the supervisor's has no terminal already, and each new session is a new
  // scheduler autogroup, which the kernel builds and tears down per try (about 10 us of CPU
  // each, measured on `wide 2000`) and which splits the CPU between tries, not sessions.
  bool own_process_group = true;
  ChildLimits limits;
  // The signals to set back to their default disposition: those this process ignores or
  // handles (SignalsNotAtDefault). nullptr: found now, 64 sigaction(2) calls, which a caller
  // starting many children saves by finding them once.
  const sigset_t* reset_signals = nullptr;
  // Closed first thing in the child: a descriptor whose copy would otherwise live on until
  // exec, such as a file whose flock(2) the parent releases right after the start (the lock
  // belongs to the open file, so our copy would keep it taken until the exec is done).
  int close_first = -1;
  // Whether StartChild should find the child's start time (StartedChild::start_time). Costs a
  // clock read before and after the vfork, rarely a read of /proc/PID/stat.
  bool want_start_time = false;
  // Whether a failed exec is StartChild's error (the child reaped) rather than the child's exit
  // 127 with a message on its stderr; a failed chdir or limit is always the child's (127, 126).
  bool exec_failure_is_error = false;
};

struct StartedChild {
  pid_t pid = 0;
  // Field 22 of /proc/PID/stat (clock ticks after boot), which tells this child from a later
  // process with the same pid; 0 when not asked for or unknown.
  uint64_t start_time = 0;
};

// Starts a child: own process group (unless told not to), every signal at its default
// disposition and none blocked, the given stdin/stdout/stderr, working directory, limits
// (applied last, so nothing of ours runs under them) and environment, then exec. In the
// child, a failed chdir prints "nightshift: cannot change directory to DIR: ERROR" on its
// stderr and exits 127; a limit that cannot be set, "nightshift: cannot set limits.NAME:
// ERROR" and exits 126; a failed exec, "nightshift: cannot run FILE: ERROR" and 127.
// IOError when no child could be made (fork's errno), or, with exec_failure_is_error, when
// the exec failed.
Result<StartedChild> StartChild(ChildSpec& spec);

// The signals whose disposition here is not SIG_DFL. An exec resets handled ones itself, but
// ignored ones stay ignored, and a vforked child must not run our handlers before its exec.
sigset_t SignalsNotAtDefault();

// argv for /bin/sh -c COMMAND (ChildSpec's default `file`), valid while `command` lives.
class ShellArgv {
 public:
  explicit ShellArgv(const std::string& command);
  char* const* get() { return argv_.data(); }

 private:
  std::array<char*, 4> argv_{};
};

// Waits for our child `pid` to end and reaps it (through EINTR): its wait status, and its
// resource usage into `usage` when given.
int ReapChild(pid_t pid, rusage* usage = nullptr);

// Whether the process of a pidfd has exited (a zombie counts as exited). Never blocks.
bool PidfdExited(int pidfd);

// Stops a process group: SIGTERM to all of it, SIGKILL once the grace is over. Driven by its
// owner's event loop: Begin() when a stop is asked for, KillIfDue() whenever the loop wakes
// (MsUntilKill() says when to), and LeaderExited() once the group's leader has exited.
class GroupStop {
 public:
  // The group whose leader is `leader` (its pid is the group id). `guard_pidfd`: a pidfd of the
  // leader when it is not our child (an adopted try): signals go only while it has not exited,
  // since its pid, and so the group id, may name another process after that. -1 for our own
  // child, whose pid is ours until we reap it.
  explicit GroupStop(pid_t leader = 0, int guard_pidfd = -1) : leader_(leader), guard_pidfd_(guard_pidfd) {}

  // SIGTERM to the group, and the SIGKILL due `grace_ms` from now. False when it was stopping
  // already, or its leader is gone (nothing sent then).
  bool Begin(int64_t grace_ms);
  // The SIGKILL, if its time has come and it was not sent yet; true when sent now.
  bool KillIfDue();
  // SIGKILL to the group now (counts as stopping it).
  void KillNow();
  // Milliseconds until the SIGKILL is due (0: overdue); -1 when none is pending.
  int64_t MsUntilKill() const;
  // The leader has exited but is not reaped yet, so its pid still names the group: when we were
  // stopping it, SIGKILL takes what it left behind. Background processes of a group we did not
  // stop are left alone.
  void LeaderExited();

  int64_t grace_ms() const { return grace_ms_; }
  bool stopping() const { return stopping_; }  // SIGTERM sent
  bool killed() const { return killed_; }      // SIGKILL sent

 private:
  bool Signal(int sig) const;

  pid_t leader_ = 0;
  int guard_pidfd_ = -1;
  bool stopping_ = false;
  bool killed_ = false;
  int64_t grace_ms_ = 0;
  int64_t kill_at_ms_ = 0;  // MonotonicMs()
};

// What a try's log says when the SIGKILL went: "the task did not stop within N ms; sending SIGKILL".
std::string GraceOverNote(const GroupStop& stop);

}  // namespace nightshift

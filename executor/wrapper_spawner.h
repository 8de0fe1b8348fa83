// Starts task wrappers by forking a small helper process instead of exec'ing the nightshift
// binary for every try (Android's zygote, on a small scale). Exec'ing a binary linked
// against a dozen shared libraries costs milliseconds in the dynamic loader alone, which was
// most of the cost of a short task; a fork of a process that has done nothing yet costs a
// tenth of that.
//
// The helper is forked at the very start of `serve` and `run`, before the daemon loads
// anything, so it stays small. For each try the executor sends it the wrapper's argv and
// environment and the write end of the pipe the wrapper's stdout goes to; the helper forks,
// the child becomes the wrapper (the same code as `nightshift __task-wrapper`, without the
// exec), and the helper answers with a pidfd for it. The child writes the wrapper's pid file
// before the helper answers, so a pid the daemon records always has its pid file: after a
// restart, "no pid file" still means "never started".
//
// The helper dies with the daemon (PR_SET_PDEATHSIG); the wrappers do not: they are in
// sessions of their own and carry on, to be adopted by the next daemon.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/status.h"

namespace nightshift {

struct SpawnedWrapper {
  pid_t pid = 0;
  int pidfd = -1;  // owned by the caller; names the process even after it exits
};

class WrapperSpawner {
 public:
  // Forks the helper. Call before any thread starts and before much memory is in use.
  static Result<WrapperSpawner*> Start();
  // The helper this process started, or nullptr.
  static WrapperSpawner* Global();

  // Starts a wrapper with `argv` (as `nightshift __task-wrapper ...` would get it) and `env`,
  // its stdin /dev/null and its stdout `stdout_fd` (not closed here). IOError when the helper
  // is gone or the fork failed: the caller falls back to exec'ing the binary.
  Result<SpawnedWrapper> Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                               int stdout_fd);

 private:
  explicit WrapperSpawner(int socket_fd, pid_t helper_pid) : socket_(socket_fd), helper_pid_(helper_pid) {}

  int socket_ = -1;
  pid_t helper_pid_ = 0;
};

}  // namespace nightshift

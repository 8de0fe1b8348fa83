// The supervisor: one small process per daemon that starts, watches and records every local
// try. It replaced a wrapper process per try (docs/adr/0005): a `true` task then cost two
// forks, four new files and a wrapper's whole life; now it costs one vfork+exec of /bin/sh, its
// log file and two lines in the run's tries journal (try_journal.h), like a make or ninja job.
//
// What makes a try's result durable is that the supervisor does not die with the daemon. It is
// forked at the start of `serve` and `run` (before the daemon loads anything, so it stays
// small), lives in a session of its own and ignores the terminal's signals. When the daemon
// goes away, even with kill -9, the supervisor goes on copying output into the logs and
// records every end in the journal, then exits once its last try has ended. A restarted daemon
// starts a supervisor of its own and adopts the old one's tries from the journals.
//
// For each try it:
//  1. creates the log's folder, reserves room in the journal (so a full disk cannot keep the
//     end from being recorded) and opens the log;
//  2. starts /bin/sh -c COMMAND with StartChild (process.h): a process group of its own (so
//     stopping it reaches everything it started; in the supervisor's session, which has no
//     terminal), stdin /dev/null, stdout+stderr into a pipe, in the task's folder, under its
//     rlimits and niceness (failure: a message in the log, exit 127 or 126);
//  3. appends the S record (pid and start time) to the journal and tells the daemon;
//  4. copies the pipe into the log through TryOutput (progress lines become progress events,
//     the log's size limit is applied);
//  5. on a stop request: SIGTERM to the try's process group, SIGKILL after its grace (GroupStop);
//  6. when the command exits (seen through its pidfd): copies what is left in the pipe, kills
//     the group if it was being stopped, reaps it, appends the E record and tells the daemon.
//
// The daemon's side of the conversation is SupervisorClient; the wire format is private to
// supervisor.cc, since both ends are the same binary.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "core/task_limits.h"
#include "core/unique_fd.h"

namespace nightshift {

struct SupervisedTry {
  uint64_t id = 0;          // the daemon's name for it in events
  std::string command;      // run by /bin/sh -c
  std::string cwd;          // empty: the supervisor's own
  std::string log_path;     // absolute; names the try in the journal
  std::string journal_path;
  // NAME=VALUE sorted by name: the try's variables, set over the base environment the
  // client sent (SetBaseEnvironment; none: these are the whole environment).
  std::vector<std::string> env;
  TaskLimits limits;
  int64_t kill_grace_ms = 10000;
  std::string output_path;  // NIGHTSHIFT_OUTPUT, looked at when a standby waits on this try
  // A standby (after != 0): not started now but the moment the try with id `after` ends, in
  // its slot, without a round trip through the daemon. With `after_success` only if that try
  // exited 0, was not asked to stop and wrote no output (which the daemon must read first).
  // Otherwise it is declined (kDeclined) and used nothing. When `after` ended before this
  // arrived, with no standby to take its slot, the slot is still this one's (the daemon hands
  // it over when it hears of the end): it starts at once, unless it waits for a success,
  // which the daemon judges then; declined too.
  uint64_t after = 0;
  bool after_success = false;
  // Standbys start only while the daemon that sent them is the newest: a restarted daemon
  // writes its own token into `fence_path` before it adopts anything (StandbyFence), and the
  // supervisor compares the file with `fence_token` under a lock right before each standby
  // starts. So an old supervisor cannot start one behind the back of the daemon that took over.
  std::string fence_path;
  std::string fence_token;
};

// Claims the standbys of `path` for `token` (see SupervisedTry::fence_path): every supervisor
// of an earlier daemon declines its standbys from now on. Creates the file.
Status ClaimStandbyFence(const std::string& path, const std::string& token);

struct SupervisorEvent {
  // kDeclined: a standby that did not start (its try failed, ended early, was stopped, or a
  // newer daemon took over); kNotStarted: a try that could not be started (a system error).
  enum class Kind : uint8_t { kStarted = 1, kNotStarted, kProgress, kExited, kDeclined };
  Kind kind = Kind::kStarted;
  uint64_t id = 0;
  int64_t pid = 0;        // kStarted
  int exit_code = 0;      // kExited
  double progress = 0;    // kProgress
  std::string reason;     // kNotStarted: why; kExited: why it failed, or empty
  int64_t at_unix_ms = 0; // kStarted: when it started; kExited: when the supervisor saw it end
  bool handed_off = false; // kExited: its standby started in its slot as it ended
};

class SupervisorClient {
 public:
  // Forks a supervisor. Best called before threads start and while the process is small
  // (main() does, through Prestart); later calls work too.
  static Result<std::unique_ptr<SupervisorClient>> Start();
  // Forks one now for the first TakePrestarted() to pick up.
  static void Prestart();
  // The prestarted supervisor, once; nullptr when there is none (left).
  static std::unique_ptr<SupervisorClient> TakePrestarted();

  // Closes both sockets: the supervisor finishes its tries on its own, then exits.
  ~SupervisorClient();
  SupervisorClient(const SupervisorClient&) = delete;
  SupervisorClient& operator=(const SupervisorClient&) = delete;

  pid_t pid() const { return pid_; }
  // Where events arrive; the caller reads it (it may make it non-blocking) and Feed()s the bytes.
  int events_fd() const { return events_.get(); }

  // IOError when the supervisor is gone.
  Status Send(const SupervisedTry& request);
  // NAME=VALUE sorted by name: what every try started after this gets, under its own `env`.
  // Sent once, not with each try, since it is the daemon's whole environment.
  Status SetBaseEnvironment(const std::vector<std::string>& env);
  Status Stop(uint64_t id);
  // A standby not started yet is declined; a started try goes on.
  Status Withdraw(uint64_t id);

  // Appends the whole events in `bytes` (which may end mid-event) to `out`.
  void Feed(std::string_view bytes, std::vector<SupervisorEvent>* out);

 private:
  SupervisorClient(UniqueFd requests, UniqueFd events, pid_t pid)
      : requests_(std::move(requests)), events_(std::move(events)), pid_(pid) {}
  Status Write(const std::string& frame);

  UniqueFd requests_;
  UniqueFd events_;
  pid_t pid_ = 0;
  std::string partial_;  // bytes of an event not complete yet
};

}  // namespace nightshift

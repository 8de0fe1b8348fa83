// The local executor: runs each try as `nightshift __task-wrapper ... -- COMMAND` (see
// task_wrapper.h) on this machine. Its point is durability:
//  - a try's result is never lost: the wrapper outlives the daemon (own session) and records
//    the exit code in `<log>.status` before it exits; a restarted daemon Adopt()s the wrappers
//    that still run and reads the status files of those that ended meanwhile;
//  - a try never starts twice by accident: Submit() refuses a try whose wrapper still runs or
//    whose status exists, and the wrapper itself holds a lock on the log for its whole life.
// Everything happens on the io_context's thread (not thread-safe); nothing blocks it: exits
// are watched through pidfds and progress through the wrappers' stdout pipes. Events are queued
// and announced with `on_event` (posted, so never from inside Submit/Adopt/Cancel); the owner
// then calls Drain(). A kFinished event's `at` is when the wrapper recorded the exit (the status
// file's mtime), which after a restart may be long ago; other events are stamped when queued.
// Wrappers are reaped with waitid(P_PIDFD). Results never depend on it (they come from the
// status files), but the reason of a kLost does: a waitpid(-1) elsewhere in the process would
// only make those reasons vaguer.
// Deployment: the wrappers must be allowed to outlive the daemon: under systemd use
// KillMode=process (the default control-group mode kills them on restart); in a container, run
// an init as PID 1 (docker's `init: true`) so that orphaned task processes are reaped.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/time.h"
#include "executor/event_queue.h"
#include "executor/executor.h"

namespace nightshift {

// The files a try's wrapper keeps next to its log. They derive from the log path alone, so a
// restarted daemon (and the scheduler) find them from what the store recorded.
struct TaskSidecarPaths {
  std::string status;    // <log>.status: "EXIT_CODE\n[REASON\n]", written once when the try ends
  std::string pid;       // <log>.pid: "PID STARTTIME\n", written before the command starts
  std::string progress;  // <log>.progress: "FRACTION\n", the latest progress (0..1)
};
TaskSidecarPaths SidecarPathsFor(std::string_view log_path);

struct LocalExecutorOptions {
  // Tries running at once; Submit() beyond it returns Busy. Default: 32.
  size_t slots = 32;
  // The binary that acts as wrapper when given `__task-wrapper` as argv[1]. Default (empty):
  // this process's own binary (/proc/self/exe, resolved once at construction).
  std::string wrapper_argv0;
  // On Cancel, SIGTERM to the task's process group, then SIGKILL after this long. Default: 10 s.
  std::chrono::milliseconds kill_grace{10000};
  // Stamps events. Default (nullptr): the system clock.
  const Clock* clock = nullptr;
  // Start wrappers through the process's WrapperSpawner when one was started (a fork instead
  // of an exec of wrapper_argv0); without one, or when it fails, wrapper_argv0 is exec'ed.
  bool use_spawner = true;
};

class LocalExecutor final : public Executor {
 public:
  LocalExecutor(boost::asio::io_context& io, LocalExecutorOptions options, std::function<void()> on_event);
  // Stops watching but leaves every wrapper running: a later executor may Adopt() them.
  // Must run before the io_context is destroyed.
  ~LocalExecutor() override;
  LocalExecutor(const LocalExecutor&) = delete;
  LocalExecutor& operator=(const LocalExecutor&) = delete;

  size_t FreeSlots() const override;

  // Creates the log's folder and starts the wrapper; emits kStarted with the wrapper's pid.
  // AlreadyExists when this key is running here, when a wrapper for this log path is alive
  // (Adopt it instead) or when the try already has a status; Busy without a free slot;
  // IOError when the process cannot be started (then no event follows). `log_path` should be
  // absolute: it is how a restarted daemon finds the try again.
  Status Submit(const TaskSpec& spec) override;

  std::vector<ExecutorEvent> Drain() override;

  // SIGTERM to the wrapper, which stops the task's process group (SIGKILL after kill_grace).
  // The try then finishes as usual, normally with 143 or 137. OK for unknown keys, repeatable.
  Status Cancel(const TaskInstanceKey& key) override;

  // After a restart, for each try the store says is queued or running:
  //  - `<log>.status` exists: kFinished with its exit code at once;
  //  - the pid file names a live process with the recorded start time (not a reused pid) that
  //    is this try's wrapper (by its command line): followed like a submitted try (kProgress
  //    from the progress file, then kFinished or kLost when it ends); such keys are returned;
  //  - no pid file: kLost "never started" (the command did not run, so it may run again),
  //    unless task.pid is a wrapper still starting up for this very log (then followed);
  //  - otherwise kLost "process vanished without a status".
  // Every task passed gets exactly one kFinished or kLost, now or later.
  std::vector<TaskInstanceKey> Adopt(std::span<const RunningTask> tasks) override;

 private:
  struct Running;

  // Records a wrapper that just started, reports it and follows it to its end.
  Status Started(const std::shared_ptr<Running>& entry);
  void Follow(const std::shared_ptr<Running>& entry);
  void ReadOutput(const std::shared_ptr<Running>& entry);
  void OnOutput(Running& entry, std::string_view chunk);
  // The pidfd fired: reaps the wrapper if it is our child, then finishes once its stdout ended.
  void OnWrapperExited(const std::shared_ptr<Running>& entry);
  void Finish(const std::shared_ptr<Running>& entry);
  // Reads the status file once the wrapper is gone and queues the try's final event.
  void Conclude(const TaskInstanceKey& key, const TaskSidecarPaths& paths, std::string lost_reason);
  void Emit(ExecutorEvent event);
  TimePoint Now() const;

  boost::asio::io_context& io_;
  LocalExecutorOptions options_;
  std::map<TaskInstanceKey, std::shared_ptr<Running>> running_;
  ExecutorEventQueue events_;
  // Handlers hold a weak copy: once it expires, the executor is gone and they touch nothing.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace nightshift

// The local executor: runs tries on this machine through a supervisor process (supervisor.h).
// Its point is durability:
//  - a try's result is never lost: the supervisor outlives the daemon and records each try's
//    start and end in the run's tries journal (try_journal.h); a restarted daemon Adopt()s the
//    tries that still run and reads the ends of those that finished meanwhile;
//  - a try never starts twice by accident: Submit() refuses a try the journal already knows.
// Everything happens on the io_context's thread (not thread-safe); nothing blocks it: the
// supervisor's events arrive on a socket, adopted tries' exits through pidfds. Events are
// queued and announced with `on_event` (posted, so never from inside Submit/Adopt/Cancel); the
// owner then calls Drain(). A kFinished event's `at` is when the supervisor saw the try end,
// which after a restart may be long ago; other events are stamped when queued.
// Deployment: the supervisor and the tries must be allowed to outlive the daemon: under
// systemd use KillMode=process (the default control-group mode kills them on restart); in a
// container, run an init as PID 1 (docker's `init: true`) so that orphans are reaped.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/time.h"
#include "executor/event_queue.h"
#include "executor/executor.h"
#include "executor/supervisor.h"
#include "executor/try_journal.h"

namespace nightshift {

struct LocalExecutorOptions {
  // Tries running at once; Submit() beyond it returns Busy. Default: 32.
  size_t slots = 32;
  // On Cancel, SIGTERM to the task's process group, then SIGKILL after this long. Default: 10 s.
  std::chrono::milliseconds kill_grace{10000};
  // Stamps events. Default (nullptr): the system clock.
  const Clock* clock = nullptr;
  // Where this executor claims its standbys (SupervisedTry::fence_path), at construction,
  // before it adopts anything; one file per state folder. Empty: it takes no standbys.
  std::string fence_path;
};

class LocalExecutor final : public Executor {
 public:
  // Takes the supervisor main() prestarted, or forks one.
  LocalExecutor(boost::asio::io_context& io, LocalExecutorOptions options, std::function<void()> on_event);
  // Stops listening but leaves every try running: the supervisor finishes them and records
  // their ends, and a later executor may Adopt() them. Must run before the io_context dies.
  ~LocalExecutor() override;
  LocalExecutor(const LocalExecutor&) = delete;
  LocalExecutor& operator=(const LocalExecutor&) = delete;

  size_t FreeSlots() const override;

  // Hands the try to the supervisor; kStarted (with the command's pid) follows, or kLost with
  // why it could not start (no log folder, full disk, ...). AlreadyExists when this key is
  // running here or the run's journal, as read when this executor first met the run, has the
  // try already (an earlier daemon started it); Busy without a free slot;
  // InvalidArgument without a log or journal path; IOError when no supervisor can be started.
  // `log_path` and `journal_path` should be absolute: they are how a restarted daemon finds the
  // try again.
  Status Submit(const TaskSpec& spec) override;

  std::vector<ExecutorEvent> Drain() override;

  // SIGTERM to the try's process group, SIGKILL after kill_grace. The try then finishes as
  // usual, normally with 143 or 137. OK for unknown keys, repeatable.
  Status Cancel(const TaskInstanceKey& key) override;

  // Yes when our supervisor has the holder (started here, not adopted; itself maybe a standby),
  // or it is not here yet (submitted just before). A standby's
  // Submit does not take a slot: it takes the holder's when that one ends; if the holder has
  // ended already, it is declined.
  bool TakesStandby(const TaskSpec& holder, const TaskSpec& standby) const override;
  void Withdraw(const TaskInstanceKey& key) override;
  // Whether our supervisor has this try, running or waiting for a slot.
  bool HoldsSlot(const TaskInstanceKey& key) const;

  // After a restart, for each try the store says is queued or running, from its journal:
  //  - an end is recorded: kFinished with it at once;
  //  - a start is recorded and that process (pid and start time) still runs: followed to its
  //    end, which its supervisor records (kLost if that supervisor is gone without recording
  //    it); such keys are returned;
  //  - no start is recorded: kLost "never started" (the command did not run, so it may run
  //    again).
  // Every task passed gets exactly one kFinished or kLost, now or later.
  std::vector<TaskInstanceKey> Adopt(std::span<const RunningTask> tasks) override;

 private:
  struct Running;

  Status EnsureSupervisor();
  // Makes `supervisor` ours and starts reading its events.
  void ListenTo(std::unique_ptr<SupervisorClient> supervisor);
  void ReadEvents();
  void OnSupervisorEvent(const SupervisorEvent& event);
  void OnSupervisorGone();
  // The journal of `path` as it was when this executor first needed it.
  const std::map<std::string, JournalTry>& KnownTries(const std::string& path);
  void FollowAdopted(const std::shared_ptr<Running>& entry);
  // An adopted try's process is gone: its end is in the journal, or soon will be.
  void ConcludeAdopted(const std::shared_ptr<Running>& entry, int attempt);
  void StopAdopted(const std::shared_ptr<Running>& entry);
  // kFinished with the end the journal recorded.
  void FinishedAsJournaled(const TaskInstanceKey& key, const JournalEnd& end);
  void Lost(const TaskInstanceKey& key, std::string reason);
  void Declined(const TaskInstanceKey& key, std::string reason);
  // A last event for `key`, stamped now.
  void EmitEnd(ExecutorEvent::Kind kind, const TaskInstanceKey& key, std::string reason);
  // A standby started (or will never start): it is counted as using a slot from now on.
  void StopWaiting(Running& entry);
  // The entry is done: no more events for it.
  void Forget(const std::shared_ptr<Running>& entry);
  void Emit(ExecutorEvent event);
  TimePoint Now() const;

  boost::asio::io_context& io_;
  LocalExecutorOptions options_;
  std::unique_ptr<SupervisorClient> supervisor_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> supervisor_events_;
  std::array<char, 16384> read_buf_{};
  // The daemon's own environment, NAME=VALUE sorted by name, read once.
  std::vector<std::string> base_env_;
  uint64_t next_id_ = 1;
  std::map<TaskInstanceKey, std::shared_ptr<Running>> running_;
  std::map<uint64_t, std::shared_ptr<Running>> by_id_;  // tries this executor's supervisor runs
  std::map<std::string, std::map<std::string, JournalTry>> journals_;
  std::string fence_token_;  // empty: no standbys
  size_t standbys_ = 0;      // entries of running_ that wait for a slot
  ExecutorEventQueue events_;
  // Handlers hold a weak copy: once it expires, the executor is gone and they touch nothing.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace nightshift

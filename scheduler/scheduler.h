// The scheduler: the one owner of every state change. Each pass it applies the executor's
// events, creates the runs schedules owe, decides which task instances are ready (trigger
// rules), which of those may start (windows, parallelism, max_active_tasks, pools, priority),
// commits all of it in one transaction, and only then hands the queued tries to the executor.
// It never blocks and never sleeps: SchedulerLoop (scheduler_loop.h) calls RunPass() when an
// event arrives or the time it returns has come.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/dag.h"
#include "core/run.h"
#include "core/time.h"
#include "core/window.h"
#include "executor/executor.h"
#include "scheduler/active_run.h"
#include "scheduler/ready_queue.h"
#include "scheduler/metrics.h"
#include "store/store.h"

namespace nightshift {

struct SchedulerOptions {
  bool create_scheduled_runs = true;  // false for `nightshift run`: only the runs it is given
  bool respect_windows = true;        // `nightshift run` ignores windows unless asked
  int parallelism = 32;
  std::map<std::string, int> pools = {{"default", 128}};
  std::map<std::string, Window> windows;
  std::string logs_dir;  // <state_dir>/logs
  size_t max_runs_created_per_pass = 64;  // catchup creates many; spread them over passes
  bool use_cache = true;                  // false: `nightshift run --no-cache`
  TaskLimits limits;                      // the config's `limits:`; a task's own fields win

  static SchedulerOptions FromConfig(const Config& config);
};

// Counts for a progress display: the instances of one run by state.
struct RunProgress {
  int total = 0;
  int done = 0;  // finished in any way
  int running = 0;
  int failed = 0;  // failed or upstream_failed
  int success = 0;

  static RunProgress Of(const StateCounts& counts);
  static RunProgress Of(std::span<const TaskInstance> task_instances);
};

// What a pass asks of the world, carried out by Scheduler::CarryOut only after the pass's
// state changes are committed (docs/adr/0007-planner-and-driver.md). A command is never the
// only record of anything: what must survive a crash is a state change in the same commit.
struct SchedulerCommand {
  enum class Kind {
    kSubmit,     // start `spec` (or, with spec.after, hand it over as a standby)
    kCancel,     // stop the try `key`; its end comes back as an event
    kWithdraw,   // decline the standby `key` if it has not started
    kWriteFile,  // write `content` to `path` (an input file, a cache hit's log)
  };
  Kind kind = Kind::kSubmit;
  TaskSpec spec;            // kSubmit
  TaskInstanceKey key;      // kCancel, kWithdraw; kWriteFile: the try that reads the file
  std::string path;         // kWriteFile
  std::string content;      // kWriteFile
  bool needed_to_start = false;  // kWriteFile: the try `key` cannot start without it
};

// An executor event with what the scheduler needs from disk for it, read before the pass plans
// (by the driver, so that planning reads no file).
struct TryEvent {
  ExecutorEvent event;
  // A try that exited 0: the JSON it wrote to NIGHTSHIFT_OUTPUT (nullopt: none), or why that
  // output is unusable (which fails the try).
  std::optional<std::string> output;
  std::string output_error;
};

class Scheduler {
 public:
  // `dags` is the set of DAGs that schedules are read from (the registry's map, or one DAG for
  // `nightshift run`); it must outlive the scheduler and may change between passes.
  Scheduler(SchedulerOptions options, Store& store, Executor& executor, const Clock& clock,
            const std::map<std::string, Dag>& dags);

  // Loads the unfinished runs and hands the tries that were queued or running when the daemon
  // stopped to the executor for adoption. Call once before the first pass.
  Status Recover();

  // One pass. Returns the instant by which the next pass is due even if no event arrives
  // (a retry, a timeout, a window change, a schedule), or nullopt when only events matter.
  Result<std::optional<TimePoint>> RunPass();

  // Creates a manual run (Airflow's trigger). `conf` is a JSON object's text; its keys
  // override the DAG's params. run_id defaults to "manual__<logical_date>".
  // AlreadyExists when the run id is taken; NotFound for an unknown DAG.
  // `only_tasks`, when not empty, limits the run to those tasks (edges to others dropped).
  Result<DagRun> TriggerRun(const std::string& dag_id, std::optional<std::string> run_id,
                            std::optional<TimePoint> logical_date, const std::string& conf,
                            const std::vector<std::string>& only_tasks = {});

  // Fails an active run now: its running tries are stopped (and fail with `reason`), the
  // tasks still waiting are skipped, on_failure runs. NotFound when the run is not active.
  Status CancelRun(int64_t run_pk, const std::string& reason);

  // Clears a task instance (all its map indexes) so it runs again in the same run, with a fresh
  // retry budget; with `downstream`, every task that depends on it (transitively) too. A
  // running try is stopped. A finished run becomes queued again. NotFound for unknown ids.
  Status ClearTask(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                   bool downstream);
  // Marks a task instance success or failed as a user decision: a running try is stopped,
  // the downstream tasks that had been ruled out are evaluated again, and the run goes on.
  Status MarkTask(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                  TaskState state);
  // Marks a run success or failed: its running tries are stopped, unfinished task instances
  // take the run's state (failed: skipped for those that never started). No callback runs.
  Status MarkRun(const std::string& dag_id, const std::string& run_id, RunState state);

  const SchedulerMetrics& metrics() const { return metrics_; }

  // A reloaded config's limits and windows apply from the next pass.
  void set_options(SchedulerOptions options) { options_ = std::move(options); }

  // Stops starting tries (SIGTERM), standbys included; running ones go on and are still followed.
  void StopDispatching();
  // Tries queued or running, as the scheduler counts them.
  size_t ActiveTries() const { return active_tries_.size(); }
  std::optional<TimePoint> latest_heartbeat() const { return heartbeat_; }
  // Progress of an active run (nullopt once it is finished and unloaded).
  std::optional<RunProgress> Progress(int64_t run_pk) const;
  bool IsActive(int64_t run_pk) const { return runs_.count(run_pk) > 0; }

 private:
  struct ActiveTry {
    int64_t run_pk = 0;
    size_t ti_index = 0;
    TaskTry task_try;
    bool dirty = false;
    std::optional<std::string> cancel_reason;  // why we asked the executor to stop it
    bool window_kill = false;                  // the stop does not use up a retry
    // The standby waiting in this try's slot (docs/adr/0006), and whether it starts only on
    // this try's success (it is a downstream task) or in any case (it is next in the queue).
    std::optional<TaskInstanceKey> standby;
    bool standby_needs_success = false;
    int standby_depth = 0;  // 0: holds a slot; 1: waits on a holder; 2 and more: on a standby
    bool sent_as_standby = false;  // for nightshift_standbys_total{outcome="started"} when it starts
  };

  Status LoadRun(const DagRun& run);
  // The active run with this id, loading a finished one back into memory when needed.
  Result<ActiveRun*> Activate(const std::string& dag_id, const std::string& run_id);
  // Persists what an API action changed, then starts what it queued; like the end of a pass.
  Status CommitAction();
  // The database did not take a commit: nothing planned is carried out, and memory is reloaded
  // from what the database holds (the executor re-reports live tries). The failure itself is
  // reported by the caller, once: the loop's rate-limited log, or the API's answer.
  void ReloadAfterFailedCommit();
  // Recover's work; `announce` logs what was recovered (at start, not on every reload).
  Status LoadState(bool announce);
  // Stops the try of a queued or running task instance (the try fails with `reason`).
  void StopTry(ActiveRun& active, size_t index, const std::string& reason);
  // Asks the executor to stop a try, after the commit.
  void Cancel(const TaskInstanceKey& key);
  // Carries out the commands of a committed pass or action, in order, and looks at every
  // Status: a try that cannot start becomes an event of the next pass (it fails, and its
  // retries apply); a stop that the executor refused is tried again by the next pass.
  void CarryOut(TimePoint now);
  // Every change of a task instance's state goes through here: it keeps the run's counts,
  // the running totals, the ready queue and the retry timers right.
  void SetState(ActiveRun& active, size_t index, TaskState state);
  // Counts a try of `dag_id` in `pool` as holding a slot (+1) or giving it back (-1): what
  // parallelism, max_active_tasks and pools are checked against.
  void CountSlot(const std::string& dag_id, const std::string& pool, int delta);
  // The trigger decision for a task from its upstream counters.
  TriggerDecision Decide(const ActiveRun& active, const Task& task) const;
  // Applies a decision to one waiting instance (a `from` task expands on its first kReady).
  void ApplyDecision(ActiveRun& active, size_t index, const Task& task, TriggerDecision decision, TimePoint now);
  void MakeReady(ActiveRun& active, size_t index, TimePoint now);
  // Where an instance stands in the ready queue's order.
  static ReadyEntry EntryFor(const ActiveRun& active, size_t index);
  // The executor's events since the last pass (and the tries it refused), each with the output
  // file of a try that exited 0 read from disk: what the pass plans from.
  std::vector<TryEvent> ReadEvents();
  // What planning needs from the store, read at the start of the pass's transaction: which
  // DAGs are paused, and where each schedule stands (its newest scheduled run).
  Status ReadStoreState();
  void HandleEvent(const TryEvent& event, TimePoint now);
  // `handed_off`: the executor started the try's standby as it ended, which it does only on a
  // success when the standby needs one, so that success stands even if a stop was on its way.
  // `read`: the event with the try's output, for a try that exited 0.
  void FinishTry(ActiveTry& active_try, int exit_code, const std::string& reason, TimePoint now,
                 bool handed_off = false, const TryEvent* read = nullptr);
  // A try that never started is undone: its instance waits again and the try number is used
  // again (a declined standby; a try the daemon queued just before it died). An instance that
  // was decided meanwhile (a user, the run's end) keeps its state; the try is recorded failed.
  void Undo(const TaskInstanceKey& key, const std::string& reason, TimePoint now);

  // Standbys (scheduler/standbys.cc, docs/adr/0006): a try the executor starts in the slot of
  // another the moment that one ends, so a slot does not sit idle for a scheduler round trip.
  // The rest of the scheduler treats a standby as any queued try and sees them only through
  // AssignStandbys (the end of Dispatch) and these hooks.
  void AssignStandbys(TimePoint now);
  // The try started (for the standbys_started metric).
  void StandbyStarted(const ActiveTry& active_try);
  // The try ended: its standby, if still waiting, holds the slot now. True when the executor
  // started a standby that needed this try's success (`handed_off`), so that success stands.
  bool StandbyTakesOver(ActiveTry& active_try, int exit_code, bool handed_off, TimePoint now);
  // The try `key` never started (declined or undone): its holder no longer has a standby.
  void ForgetStandby(const TaskInstanceKey& key);
  // Whether the queued try of an instance waits for another try's slot (it holds none).
  bool WaitsForASlot(const ActiveRun& active, size_t index) const;
  // The instance leaves queued or running: true when it held no slot to give back.
  bool LeavesWithoutASlot(ActiveRun& active, size_t index);
  // The instance that may wait in the slot of `holder`, if any: a downstream task whose last
  // unfinished upstream is the holder, else the head of the ready queue.
  struct StandbyPick {
    int64_t run_pk = 0;
    size_t index = 0;
    bool needs_success = false;
  };
  std::optional<StandbyPick> StandbyFor(const ActiveTry& holder, const TaskInstanceKey& holder_key);
  // How many tries may wait, one behind the other, in the slot of a try of this run.
  int MaxStandbyDepth(int64_t run_pk) const;
  // Whether an instance may be a standby at all (plain task, no window, no cache).
  bool MayStandBy(const ActiveRun& active, size_t index, const Task& task) const;
  Status CreateScheduledRuns(TimePoint now);
  Status CreateRun(const Dag& dag, DagRun run, const std::vector<std::string>& only_tasks,
                   DagRun* created);
  void StartQueuedRuns(TimePoint now);
  // How many runs of each DAG are running (what max_active_runs limits).
  std::map<std::string, int> RunningRunsByDag() const;
  void EvaluateRun(ActiveRun& active, TimePoint now);
  // Expands a `map: {from: UP}` task's placeholder over UP's output. Returns false when the
  // task ended instead (an empty list: skipped; a bad output: failed).
  bool ExpandFromOutput(ActiveRun& active, size_t placeholder, const Task& task, TimePoint now);
  // The `from` items of a task, parsed from its upstream's output (cached per run).
  const std::vector<std::string>* FromItems(ActiveRun& active, const Task& task);
  void EnforceTimeouts(ActiveRun& active, TimePoint now);
  void EnforceWindows(TimePoint now);
  void FailRun(ActiveRun& active, const std::string& reason, TimePoint now);
  void FinishRunIfDone(ActiveRun& active, TimePoint now);
  void Dispatch(TimePoint now);
  // Queues the try of a ready instance (or finishes it from the cache).
  void Start(ActiveRun& active, size_t index, const Task& task, TimePoint now);
  TaskSpec MakeSpec(ActiveRun& active, const TaskInstance& ti, const std::string& log_path);
  std::string LogPath(const ActiveRun& active, const TaskInstance& ti, int try_number) const;
  Status Persist();
  std::optional<TimePoint> NextWake(TimePoint now) const;
  std::optional<std::string> WindowOf(const ActiveRun& active, const Task& task) const;
  void SetWaitingReason(ActiveRun& active, size_t index, std::optional<std::string> reason);
  // For a task with `cache:`: records the try's cache key and, when it matches the last
  // successful try's and the outputs exist, finishes the instance as cached. True on a hit.
  bool TryCache(ActiveRun& active, size_t index, const Task& task, const TaskSpec& spec, ActiveTry& at,
                TimePoint now);
  void RunCallback(ActiveRun& active, const std::string& name, const std::string& command);

  SchedulerOptions options_;
  Store& store_;
  Executor& executor_;
  const Clock& clock_;
  const std::map<std::string, Dag>& dags_;
  bool dispatching_ = true;
  std::optional<TimePoint> heartbeat_;

  std::map<int64_t, ActiveRun> runs_;  // unfinished runs by run_pk
  std::map<TaskInstanceKey, ActiveTry> active_tries_;
  std::vector<SchedulerCommand> commands_;  // asked for this pass; carried out after the commit
  std::vector<ExecutorEvent> submit_failures_;  // tries the executor refused; handled next pass
  std::set<TaskInstanceKey> cancels_to_retry_;  // stops the executor refused; asked again next pass
  std::vector<int64_t> finished_runs_;  // unloaded after the commit
  std::vector<int64_t> tries_to_delete_;  // undone tries, deleted by the next Persist
  ReadyQueue ready_;
  std::vector<std::pair<int64_t, size_t>> fresh_ready_;  // became ready this pass
  // Tries queued or running, kept as states change: what parallelism, max_active_tasks and
  // pools are checked against.
  int running_total_ = 0;
  std::map<std::string, int> running_by_dag_;
  std::map<std::string, int> running_by_pool_;
  std::map<std::string, std::optional<TimePoint>> last_scheduled_;  // dag_id -> newest logical_date
  std::map<std::string, bool> paused_;  // dag_id -> is_paused, refreshed when the dags table changes
  std::optional<DagsVersion> paused_version_;  // the dags table's version paused_ was read at
  std::map<int64_t, TimePoint> ready_since_;  // task instance id -> when it became ready
  std::set<int64_t> cache_bypass_;  // task instances cleared by a user: they run, cache or not
  SchedulerMetrics metrics_;
};

}  // namespace nightshift

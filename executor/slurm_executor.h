// The Slurm executor: each try becomes one Slurm batch job that runs the same task wrapper as
// the local executor (task_wrapper.h), so logs, status, progress and outputs work exactly as
// locally, through files next to the try's log. Nightshift decides when a try may start;
// Slurm decides where it runs.
//
//  - Submit() writes `<script dir>/<try>.sbatch` (a POSIX sh script that exports the task's
//    environment with every value single-quoted, then execs the wrapper) and an empty
//    `<log>.slurm_job` (the try may have reached Slurm), then queues the try. A handler posted
//    to the io_context, so run after the scheduler's pass, sends what the pass submitted:
//    `sbatch --parsable` per try, except that the first tries of a mapped task with
//    `slurm: {array: true}` go as one `sbatch --array=INDEXES` whose element N is map index N.
//    The job id ("1234", or "1234_7" for an array element) goes to `<log>.slurm_job` at once,
//    so a daemon killed right after can adopt the job instead of submitting it twice.
//  - One batched `squeue -h -t all -r -j ID,ID,...` per poll_interval follows every job; a job
//    squeue no longer knows is looked up with `scontrol show job` (there is no accounting on
//    every cluster, so sacct is not used), and one unknown to both is lost.
//  - States: PENDING/CONFIGURING keep the try queued (kWaiting with Slurm's reason); RUNNING
//    sends kStarted with external_id = the job id; COMPLETED/FAILED send kFinished with the exit
//    code the wrapper recorded; CANCELLED/TIMEOUT/NODE_FAIL/OUT_OF_MEMORY/... send kFinished
//    with a non-zero code and the reason "slurm: STATE".
//  - Cancel() runs scancel (all cancels made in one pass of the event loop go in one call).
//  - Adopt() follows recorded jobs by id and never submits anything. A try whose
//    `<log>.slurm_job` is empty (the daemon died between sbatch and recording the id) is looked
//    up by its job name in one squeue call; only a try Slurm does not know is started again.
// No Slurm command runs on the io_context's thread: they run on a small thread pool and their
// results are posted back, so a slow or unreachable slurmctld never stalls the daemon. While it
// is unreachable, submissions wait (kWaiting says so) and one of them is retried with
// exponential backoff (poll_interval doubling up to 30 s); polls back off the same way. The
// first command that gets through sends everything that waited.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "core/time.h"
#include "executor/event_queue.h"
#include "executor/executor.h"

namespace nightshift {

struct SlurmExecutorOptions {
  SlurmConfig slurm;
  // Stamps events. Default (nullptr): the system clock.
  const Clock* clock = nullptr;
  // The nightshift binary the job runs as task wrapper; it must be reachable at this path on
  // the compute nodes. Default (empty): this process's own binary.
  std::string wrapper_argv0;
  // The wrapper's SIGTERM-to-SIGKILL grace on cancel.
  std::chrono::milliseconds kill_grace{10000};
  // Tries tracked at once; Submit() beyond it returns Busy. Slurm queues the rest itself.
  size_t slots = 100000;
  // The Slurm commands, found through PATH unless given with a slash.
  std::string sbatch = "sbatch";
  std::string squeue = "squeue";
  std::string scontrol = "scontrol";
  std::string scancel = "scancel";
  // Slurm commands that may run at once (sbatch of many tries goes faster in parallel).
  size_t command_threads = 4;
  // Where problems worth an operator's attention go (Slurm unreachable, scancel refused); the
  // executor library does no logging of its own.
  std::function<void(const std::string&)> warn;
};

// --- pieces with no side effects, public for their unit tests ---

// `text` as one POSIX shell word that the shell never expands: '...' with ' written as '\''.
std::string ShellQuote(std::string_view text);

// "ns:DAG:RUN:TASK:MAP_INDEX:TRY": names the try in squeue and sacct listings.
std::string SlurmJobName(const TaskInstanceKey& key);
// "ns:DAG:RUN:TASK:array:TRY": the name of a job array of a mapped task's tries; each element's
// array index is its map index.
std::string SlurmArrayJobName(const TaskInstanceKey& key);

// The batch script for a try: exports spec.env (and NIGHTSHIFT_OUTPUT), then execs
// `wrapper_argv0 __task-wrapper ... -- COMMAND`. Every value is quoted with ShellQuote.
std::string BuildBatchScript(const TaskSpec& spec, const std::string& wrapper_argv0, int64_t kill_grace_ms);

// The script of a job array: runs the batch script of the element whose map index is
// SLURM_ARRAY_TASK_ID. `elements`: map index and batch script path.
std::string BuildArrayScript(const TaskInstanceKey& key, const std::vector<std::pair<int, std::string>>& elements);

// Sorted, distinct indexes as sbatch --array takes them: "0-3,7,9-10".
std::string FormatArrayIndexes(std::vector<int> indexes);

// sbatch's argv (argv[0] = `sbatch`), the script's path last. Options from the config, then
// the DAG's and task's (spec.slurm), whose partition wins and whose extra_args come later.
// With `array_indexes`, a job array named SlurmArrayJobName(spec.key).
std::vector<std::string> BuildSbatchArgv(const std::string& sbatch, const TaskSpec& spec,
                                         const SlurmConfig& config, const std::string& script_path,
                                         const std::string& chdir, const std::string& array_indexes = {});

// `sbatch --parsable` prints "JOBID" or "JOBID;CLUSTER".
std::optional<std::string> ParseSbatchJobId(std::string_view out);

struct SlurmJobInfo {
  std::string job_id;            // "1234", or "1234_7" for element 7 of an array
  std::string state;             // JobState: PENDING, RUNNING, COMPLETED, ...
  std::string reason;            // "None" or why it waits / failed
  std::optional<int> exit_code;  // scontrol's ExitCode=CODE:SIGNAL (CODE), when known
  std::string work_dir;          // squeue's %Z, when asked for
  std::string name;              // squeue's %j, when asked for
};

// Lines of `squeue -h -o` '%i|%T|%r', '%i|%T|%r|%j' or '%i|%T|%r|%Z|%j'; lines that do not
// parse are skipped.
std::vector<SlurmJobInfo> ParseSqueueOutput(std::string_view out);

// One job from `scontrol show job -o ID` (one line of KEY=VALUE words).
std::optional<SlurmJobInfo> ParseScontrolShowJob(std::string_view out);

enum class SlurmPhase {
  kQueued,     // PENDING, CONFIGURING, REQUEUED...: not started yet
  kRunning,    // RUNNING, COMPLETING, SUSPENDED...: started, not over
  kCompleted,  // COMPLETED, FAILED: the wrapper ran to its end; its status file has the code
  kEnded,      // CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY...: Slurm ended it
};
SlurmPhase ClassifySlurmState(std::string_view state);

// Whether a Slurm command's error means the controller could not be reached (retry later)
// rather than a refusal (bad partition, bad option: retrying would not help).
bool IsTransientSlurmError(std::string_view stderr_text);

class SlurmExecutor final : public Executor {
 public:
  SlurmExecutor(boost::asio::io_context& io, SlurmExecutorOptions options, std::function<void()> on_event);
  // Waits for Slurm commands in flight (they are short), leaves every job running.
  ~SlurmExecutor() override;
  SlurmExecutor(const SlurmExecutor&) = delete;
  SlurmExecutor& operator=(const SlurmExecutor&) = delete;

  size_t FreeSlots() const override;
  // Writes the batch script and starts sbatch in the background. AlreadyExists when the key is
  // tracked or its try already has a status or a job id; IOError when the script cannot be
  // written (then no event follows). Later failures of sbatch arrive as kLost.
  Status Submit(const TaskSpec& spec) override;
  std::vector<ExecutorEvent> Drain() override;
  // scancel; the job then ends CANCELLED and the try finishes as usual. OK for unknown keys.
  Status Cancel(const TaskInstanceKey& key) override;
  // Follows each task's job (external_id, else `<log>.slurm_job`); a try with a status file
  // finishes at once; one with neither a job id nor a status was never submitted: kLost
  // "never started", so the scheduler submits it now.
  std::vector<TaskInstanceKey> Adopt(std::span<const RunningTask> tasks) override;

  // Slurm commands run since the start, for the benchmark and /metrics (sacct is never run).
  // Atomic: the HTTP server may read them from its own thread.
  struct Counters {
    std::atomic<int64_t> sbatch{0};    // each try, or each job array, is one call
    std::atomic<int64_t> squeue{0};    // polls and lookups by job name
    std::atomic<int64_t> scontrol{0};  // jobs squeue no longer knows
    std::atomic<int64_t> scancel{0};
    std::atomic<int64_t> unreachable{0};  // calls that failed because slurmctld did not answer
  };
  const Counters& counters() const { return counters_; }

 private:
  struct Job;
  // One sbatch call: a single try, or the elements of a job array.
  struct Batch {
    std::vector<std::shared_ptr<Job>> jobs;
    bool array = false;
  };
  struct CommandResult {
    int exit_code = -1;  // -1: could not be started
    std::string out;
    std::string err;
  };

  // Runs argv (argv[0] looked up in PATH) and waits for it, on the calling thread.
  static CommandResult RunCommand(std::vector<std::string>& argv);
  // Runs argv on the pool; `done` runs later on the io_context (never if we are gone).
  void RunAsync(std::vector<std::string> argv, std::function<void(CommandResult)> done);
  void PostFlush();
  // Sends the tries submitted since the last flush, arrays grouped.
  void Flush();
  // Queues a batch for sbatch; PumpSends() starts as many as may run at once.
  void Send(Batch batch);
  void PumpSends();
  void StartSbatch(Batch batch);
  void OnSbatchDone(const Batch& batch, const CommandResult& result);
  // Keeps a batch until the controller answers again.
  void Hold(Batch batch);
  void ScheduleRetry();
  void RetryHeld();
  void NoteReachable();
  void NoteUnreachable(const std::string& what, const std::string& err);
  // The delay before the next try at an unreachable controller (poll_interval while it answers).
  std::chrono::milliseconds Backoff() const;
  void StartSearch();
  void OnSearchDone(const CommandResult& result);
  void EmitWaiting(Job& job, const std::string& why);
  std::string ArrayScriptPathFor(const Batch& batch) const;
  void SchedulePoll();
  void Poll();
  void OnSqueueDone(const std::vector<std::string>& ids, const CommandResult& result);
  void OnScontrolDone(const std::string& id, const CommandResult& result);
  // Applies what Slurm says about one job.
  void Apply(const std::shared_ptr<Job>& job, const SlurmJobInfo& info);
  void SendStarted(Job& job);
  void Finish(const std::shared_ptr<Job>& job, ExecutorEvent event);
  void FinishLost(const std::shared_ptr<Job>& job, std::string reason);
  void FlushCancels();
  void Emit(ExecutorEvent event);
  void Warn(const std::string& message) const;
  TimePoint Now() const;
  std::string ScriptPathFor(const TaskSpec& spec) const;

  boost::asio::io_context& io_;
  SlurmExecutorOptions options_;
  ExecutorEventQueue events_;
  boost::asio::thread_pool pool_;
  boost::asio::steady_timer poll_timer_;
  bool poll_scheduled_ = false;
  bool poll_in_flight_ = false;
  std::vector<std::shared_ptr<Job>> unsent_;  // submitted since the last flush
  bool flush_posted_ = false;
  std::deque<Batch> to_send_;
  size_t sbatch_in_flight_ = 0;
  std::deque<Batch> held_;  // refused because slurmctld did not answer
  boost::asio::steady_timer retry_timer_;
  bool retry_scheduled_ = false;
  int unreachable_streak_ = 0;  // Slurm calls in a row that found no controller
  std::string unreachable_error_;
  std::vector<std::shared_ptr<Job>> searching_;  // adopted without a job id: looked up by name
  bool search_in_flight_ = false;
  boost::asio::steady_timer search_timer_;
  std::map<TaskInstanceKey, std::shared_ptr<Job>> jobs_;
  std::map<std::string, std::shared_ptr<Job>> by_job_id_;
  std::set<std::string> pending_cancels_;
  bool cancel_flush_posted_ = false;
  Counters counters_;
  TimePoint last_unreachable_log_{};
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace nightshift

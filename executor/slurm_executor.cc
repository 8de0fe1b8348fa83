#include "executor/slurm_executor.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/strings.h"
#include "core/unique_fd.h"
#include "executor/process.h"
#include "executor/task_protocol.h"

namespace nightshift {
namespace {

namespace fs = std::filesystem;

// Why a try cancelled while it waited for sbatch is lost: it never reached Slurm.
constexpr const char* kCancelledBeforeSlurm = "cancelled before Slurm accepted it";

// Polls a final job may take before its status file must be there. The wrapper writes it
// before it exits, but a shared file system may show it to this machine a little later.
constexpr int kStatusGracePolls = 3;

std::string ResolveSelfExe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "/proc/self/exe";
  std::string path(buf, static_cast<size_t>(n));
  // Replaced on disk (an upgrade): the job runs in another process, where /proc/self/exe would
  // be its shell, so the new binary at the same path is the one to run.
  if (path.ends_with(" (deleted)")) path.resize(path.size() - 10);
  return path;
}

bool IsShellName(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

std::optional<std::string> ReadJobIdFile(const std::string& path) {
  std::ifstream in(path);
  std::string id;
  if (!in || !std::getline(in, id)) return std::nullopt;
  id = std::string(Trim(id));
  if (id.empty()) return std::nullopt;
  return id;
}

// The code a try ended by Slurm reports when its wrapper recorded none: what a shell shows for
// the signal Slurm used (SIGTERM for a cancel or time limit, SIGKILL for memory), else 1.
int DefaultExitCodeFor(std::string_view state) {
  if (state == "OUT_OF_MEMORY") return 137;
  if (state == "CANCELLED" || state == "TIMEOUT" || state == "PREEMPTED" || state == "DEADLINE") return 143;
  return 1;
}

// "ns:DAG:RUN:TASK:ELEMENT:TRY"
std::string JobNameFor(const TaskInstanceKey& key, const std::string& element) {
  std::string name = "ns:" + key.dag_id + ":" + key.run_id + ":" + key.task_id + ":" + element + ":" +
                     std::to_string(key.try_number);
  // A newline would end the option early in every Slurm listing.
  for (char& c : name) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return name;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Pure pieces

std::string ShellQuote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += "'";
  return out;
}

std::string SlurmJobName(const TaskInstanceKey& key) {
  return JobNameFor(key, std::to_string(key.map_index));
}

std::string SlurmArrayJobName(const TaskInstanceKey& key) { return JobNameFor(key, "array"); }

std::string BuildBatchScript(const TaskSpec& spec, const std::string& wrapper_argv0, int64_t kill_grace_ms) {
  const TryFiles files = TryFiles::OfLog(spec.log_path);
  TaskWrapperArgs args;
  args.log_path = spec.log_path;
  args.status_path = files.status;
  args.pid_path = files.pid;
  args.progress_path = files.progress;
  args.cwd = spec.cwd;
  args.kill_grace_ms = kill_grace_ms;
  args.command = spec.command;
  args.limits = spec.limits;

  std::map<std::string, std::string> env = spec.env;
  if (!spec.output_path.empty()) env["NIGHTSHIFT_OUTPUT"] = spec.output_path;

  std::string script = "#!/bin/sh\n";
  script += "# Nightshift try " + spec.key.ToString() + ". Written by the daemon; the task wrapper\n";
  script += "# writes the log, the status and the progress next to " + ShellQuote(spec.log_path) + ".\n";
  // Names a shell cannot export go through env(1) instead; values are quoted either way.
  std::string env_prefix;
  for (const auto& [name, value] : env) {
    if (IsShellName(name)) {
      script += "export " + name + "=" + ShellQuote(value) + "\n";
    } else if (name.find('=') == std::string::npos && !name.empty()) {
      env_prefix += ShellQuote(name + "=" + value) + " ";
    }
  }
  script += "exec ";
  if (!env_prefix.empty()) script += "env " + env_prefix;
  const std::vector<std::string> argv = args.ToArgv(wrapper_argv0);
  for (size_t i = 0; i < argv.size(); ++i) {
    if (i) script += ' ';
    script += ShellQuote(argv[i]);
  }
  script += "\n";
  return script;
}

std::string BuildArrayScript(const TaskInstanceKey& key,
                             const std::vector<std::pair<int, std::string>>& elements) {
  std::string script = "#!/bin/sh\n";
  script += "# Nightshift job array of " + key.dag_id + "/" + key.run_id + "/" + key.task_id + " try " +
            std::to_string(key.try_number) + ": element N runs the try of map index N.\n";
  script += "case \"$SLURM_ARRAY_TASK_ID\" in\n";
  for (const auto& [index, path] : elements) {
    script += "  " + std::to_string(index) + ") exec /bin/sh " + ShellQuote(path) + " ;;\n";
  }
  script += "esac\n";
  script += "echo \"nightshift: no try for array index $SLURM_ARRAY_TASK_ID\" >&2\n";
  script += "exit 1\n";
  return script;
}

std::string FormatArrayIndexes(std::vector<int> indexes) {
  std::sort(indexes.begin(), indexes.end());
  indexes.erase(std::unique(indexes.begin(), indexes.end()), indexes.end());
  std::string out;
  for (size_t i = 0; i < indexes.size();) {
    size_t j = i;
    while (j + 1 < indexes.size() && indexes[j + 1] == indexes[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(indexes[i]);
    if (j > i) out += "-" + std::to_string(indexes[j]);
    i = j + 1;
  }
  return out;
}

std::vector<std::string> BuildSbatchArgv(const std::string& sbatch, const TaskSpec& spec,
                                         const SlurmConfig& config, const std::string& script_path,
                                         const std::string& chdir, const std::string& array_indexes) {
  std::vector<std::string> argv = {sbatch, "--parsable"};
  if (array_indexes.empty()) {
    argv.push_back("--job-name=" + SlurmJobName(spec.key));
  } else {
    argv.push_back("--job-name=" + SlurmArrayJobName(spec.key));
    argv.push_back("--array=" + array_indexes);
  }
  // The wrapper writes the log; Slurm's own output would only duplicate it or hide it
  // somewhere else.
  for (std::string arg : {"--output=/dev/null", "--export=ALL"}) argv.push_back(arg);
  argv.push_back("--chdir=" + chdir);
  std::optional<std::string> partition = spec.slurm.partition ? spec.slurm.partition : config.partition;
  if (partition) argv.push_back("--partition=" + *partition);
  if (config.account) argv.push_back("--account=" + *config.account);
  if (config.qos) argv.push_back("--qos=" + *config.qos);
  if (spec.slurm.cpus_per_task)
    argv.push_back("--cpus-per-task=" + std::to_string(*spec.slurm.cpus_per_task));
  if (spec.slurm.mem) argv.push_back("--mem=" + *spec.slurm.mem);
  if (spec.slurm.time) argv.push_back("--time=" + *spec.slurm.time);
  if (spec.slurm.gres) argv.push_back("--gres=" + *spec.slurm.gres);
  for (const std::string& arg : config.extra_args) argv.push_back(arg);
  for (const std::string& arg : spec.slurm.extra_args) argv.push_back(arg);
  argv.push_back(script_path);
  return argv;
}

std::optional<std::string> ParseSbatchJobId(std::string_view out) {
  std::string line(Trim(out.substr(0, out.find('\n'))));
  line = line.substr(0, line.find(';'));
  if (line.empty()) return std::nullopt;
  for (char c : line) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return line;
}

std::vector<SlurmJobInfo> ParseSqueueOutput(std::string_view out) {
  std::vector<SlurmJobInfo> jobs;
  std::istringstream in{std::string(out)};
  std::string line;
  while (std::getline(in, line)) {
    line = std::string(Trim(line));
    const size_t a = line.find('|');
    if (a == std::string::npos) continue;
    const size_t b = line.find('|', a + 1);
    SlurmJobInfo info;
    info.job_id = line.substr(0, a);
    info.state = b == std::string::npos ? line.substr(a + 1) : line.substr(a + 1, b - a - 1);
    if (b != std::string::npos) {
      // The name comes last: it is the field most likely to hold a '|'.
      const size_t c = line.find('|', b + 1);
      info.reason = c == std::string::npos ? line.substr(b + 1) : line.substr(b + 1, c - b - 1);
      const size_t d = c == std::string::npos ? c : line.find('|', c + 1);
      if (d != std::string::npos) {
        info.work_dir = line.substr(c + 1, d - c - 1);
        info.name = line.substr(d + 1);
      } else if (c != std::string::npos) {
        info.name = line.substr(c + 1);
      }
    }
    // "CANCELLED by 0" appears in some listings: the state is the first word.
    info.state = info.state.substr(0, info.state.find(' '));
    if (info.job_id.empty() || info.state.empty()) continue;
    jobs.push_back(std::move(info));
  }
  return jobs;
}

std::optional<SlurmJobInfo> ParseScontrolShowJob(std::string_view out) {
  SlurmJobInfo info;
  std::istringstream in{std::string(out)};
  std::string word;
  while (in >> word) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = word.substr(0, eq);
    const std::string value = word.substr(eq + 1);
    if (key == "JobId" && info.job_id.empty()) {
      info.job_id = value;
    } else if (key == "JobState" && info.state.empty()) {
      info.state = value;
    } else if (key == "Reason" && info.reason.empty()) {
      info.reason = value;
    } else if (key == "ExitCode" && !info.exit_code) {
      const std::string code = value.substr(0, value.find(':'));
      if (!code.empty() && code.find_first_not_of("0123456789") == std::string::npos && code.size() < 4) {
        info.exit_code = std::stoi(code);
      }
    }
  }
  if (info.job_id.empty() || info.state.empty()) return std::nullopt;
  return info;
}

SlurmPhase ClassifySlurmState(std::string_view state) {
  if (state == "COMPLETED" || state == "FAILED") return SlurmPhase::kCompleted;
  if (state == "PENDING" || state == "CONFIGURING" || state == "REQUEUED" || state == "REQUEUE_HOLD" ||
      state == "REQUEUE_FED" || state == "RESV_DEL_HOLD") {
    return SlurmPhase::kQueued;
  }
  if (state == "RUNNING" || state == "COMPLETING" || state == "SUSPENDED" || state == "STOPPED" ||
      state == "SIGNALING" || state == "STAGE_OUT" || state == "RESIZING" || state == "POWER_UP_NODE" ||
      state == "UPDATE_DB") {
    return SlurmPhase::kRunning;
  }
  // CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, PREEMPTED, BOOT_FAIL, DEADLINE, REVOKED,
  // SPECIAL_EXIT and whatever a later Slurm adds: it is over, and Slurm ended it.
  return SlurmPhase::kEnded;
}

bool IsTransientSlurmError(std::string_view err) {
  for (std::string_view needle : {"Unable to contact slurm controller", "Socket timed out",
                                  "temporarily unable", "Connection refused", "Zero Bytes were transmitted",
                                  "Communication connection failure", "Resource temporarily unavailable"}) {
    if (err.find(needle) != std::string_view::npos) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// The executor

struct SlurmExecutor::Job {
  TaskInstanceKey key;
  TaskSpec spec;  // kept for retried submissions
  TryFiles files;
  std::string job_id;        // empty until sbatch returned it
  bool in_array = false;     // may go in a job array with its siblings
  bool submitting = false;   // sbatch in flight
  bool searching = false;    // adopted without a job id: being looked up by name
  bool started_sent = false;
  bool cancel_requested = false;
  bool done = false;
  std::optional<double> last_progress;
  std::string last_waiting;  // the waiting reason last reported, so each change is sent once
  int status_wait_polls = 0;  // polls spent waiting for the status file of a finished job
};

SlurmExecutor::SlurmExecutor(boost::asio::io_context& io, SlurmExecutorOptions options,
                             std::function<void()> on_event)
    : io_(io),
      options_(std::move(options)),
      events_(io, std::move(on_event)),
      pool_(std::max<size_t>(1, options_.command_threads)),
      poll_timer_(io),
      retry_timer_(io),
      search_timer_(io) {
  if (options_.wrapper_argv0.empty()) options_.wrapper_argv0 = ResolveSelfExe();
}

SlurmExecutor::~SlurmExecutor() {
  alive_.reset();
  poll_timer_.cancel();
  retry_timer_.cancel();
  search_timer_.cancel();
  pool_.join();
}

size_t SlurmExecutor::FreeSlots() const {
  return jobs_.size() < options_.slots ? options_.slots - jobs_.size() : 0;
}

std::string SlurmExecutor::ScriptPathFor(const TaskSpec& spec) const {
  return TryFiles::OfLog(spec.log_path).Script(options_.slurm.shared_dir.value_or(""), spec.key.ToTryId());
}

std::string SlurmExecutor::ArrayScriptPathFor(const Batch& batch) const {
  // A try goes in one array only, so its first element names the array.
  const TaskSpec& first = batch.jobs.front()->spec;
  return TryFiles::OfLog(first.log_path).ArrayScript(options_.slurm.shared_dir.value_or(""), first.key.ToTryId());
}

Status SlurmExecutor::Submit(const TaskSpec& spec) {
  if (spec.log_path.empty()) return Status::InvalidArgument(spec.key.ToString() + ": no log path");
  if (jobs_.count(spec.key)) return Status::AlreadyExists(spec.key.ToString() + " is already submitted");
  if (FreeSlots() == 0) return Status::Busy("no free slot for " + spec.key.ToString());
  const TryFiles files = TryFiles::OfLog(spec.log_path);
  // The two ways a try could run twice: it ran already, or it was submitted before a restart.
  if (PathExists(files.status)) {
    return Status::AlreadyExists(spec.key.ToString() + " already finished: its status is in " + files.status);
  }
  if (auto id = ReadJobIdFile(files.slurm_job)) {
    return Status::AlreadyExists(spec.key.ToString() + " is already Slurm job " + *id + "; adopt it instead");
  }
  std::error_code ec;
  fs::create_directories(fs::path(spec.log_path).parent_path(), ec);
  if (ec) return Status::IOError("cannot create the log folder for " + spec.log_path + ": " + ec.message());
  if (!spec.output_path.empty()) {
    fs::create_directories(fs::path(spec.output_path).parent_path(), ec);
    if (ec) return Status::IOError("cannot create the folder of " + spec.output_path + ": " + ec.message());
  }
  const std::string script_path = ScriptPathFor(spec);
  fs::create_directories(fs::path(script_path).parent_path(), ec);
  if (ec) return Status::IOError("cannot create the folder of " + script_path + ": " + ec.message());
  const std::string script = BuildBatchScript(spec, options_.wrapper_argv0, options_.kill_grace.count());
  if (Status s = WriteFileAtomically(script_path, script, /*durable=*/false); !s.ok()) return s;
  // Empty until sbatch returns the id: if the daemon dies in between, the restart finds the job
  // by name instead of submitting it again. (It survives the daemon's death, which is the case
  // that matters, without waiting for the disk.)
  if (Status s = WriteFileAtomically(files.slurm_job, "", /*durable=*/false); !s.ok()) return s;

  auto job = std::make_shared<Job>();
  job->key = spec.key;
  job->spec = spec;
  job->files = files;
  // Retries go alone: by then the siblings are long gone.
  job->in_array = spec.slurm.array && spec.key.map_index >= 0 && spec.key.try_number == 1;
  jobs_[spec.key] = job;
  unsent_.push_back(job);
  PostFlush();
  return Status::OK();
}

void SlurmExecutor::PostFlush() {
  if (flush_posted_) return;
  flush_posted_ = true;
  // Posted, so the flush runs after the scheduler's pass and sees every try it submitted.
  std::weak_ptr<int> alive = alive_;
  boost::asio::post(io_, [this, alive] {
    if (alive.expired()) return;
    Flush();
  });
}

void SlurmExecutor::Flush() {
  flush_posted_ = false;
  std::map<TaskInstanceKey, Batch> arrays;  // by the key with map_index -1
  std::vector<Batch> singles;
  for (std::shared_ptr<Job>& job : std::exchange(unsent_, {})) {
    if (job->done) continue;
    if (job->in_array) {
      TaskInstanceKey task = job->key;
      task.map_index = -1;
      Batch& batch = arrays[task];
      batch.array = true;
      batch.jobs.push_back(std::move(job));
    } else {
      singles.push_back(Batch{{std::move(job)}, false});
    }
  }
  for (auto& [task, batch] : arrays) {
    if (batch.jobs.size() == 1) batch.array = false;
    std::sort(batch.jobs.begin(), batch.jobs.end(),
              [](const auto& a, const auto& b) { return a->key.map_index < b->key.map_index; });
    Send(std::move(batch));
  }
  for (Batch& batch : singles) Send(std::move(batch));
}

void SlurmExecutor::Send(Batch batch) {
  to_send_.push_back(std::move(batch));
  PumpSends();
}

void SlurmExecutor::PumpSends() {
  // A few at a time: sbatch calls queued on the pool could not be taken back if slurmctld went
  // away (each would wait for its timeout), and polls need a free thread too.
  const size_t limit = std::max<size_t>(1, options_.command_threads - 1);
  while (!to_send_.empty() && sbatch_in_flight_ < limit) {
    Batch batch = std::move(to_send_.front());
    to_send_.pop_front();
    if (unreachable_streak_ > 0) {
      Hold(std::move(batch));  // the next retry finds out whether the controller is back
    } else {
      StartSbatch(std::move(batch));
    }
  }
}

void SlurmExecutor::StartSbatch(Batch batch) {
  // Tries cancelled while waiting never reach Slurm.
  std::erase_if(batch.jobs, [&](const std::shared_ptr<Job>& job) {
    if (job->done) return true;
    if (!job->cancel_requested) return false;
    FinishLost(job, kCancelledBeforeSlurm);
    return true;
  });
  if (batch.jobs.empty()) return;
  if (batch.jobs.size() == 1) batch.array = false;
  const TaskSpec& first = batch.jobs.front()->spec;
  std::string script_path = ScriptPathFor(first);
  std::string indexes;
  if (batch.array) {
    std::vector<std::pair<int, std::string>> elements;
    std::vector<int> numbers;
    for (const auto& job : batch.jobs) {
      elements.emplace_back(job->key.map_index, ScriptPathFor(job->spec));
      numbers.push_back(job->key.map_index);
    }
    script_path = ArrayScriptPathFor(batch);
    std::error_code ec;
    fs::create_directories(fs::path(script_path).parent_path(), ec);
    Status s = ec ? Status::IOError("cannot create the folder of " + script_path + ": " + ec.message())
                  : WriteFileAtomically(script_path, BuildArrayScript(first.key, elements), /*durable=*/false);
    if (!s.ok()) {
      Warn(first.key.ToString() + ": cannot write the job array's script, submitting its tries one by one: " +
           s.ToString());
      for (const auto& job : batch.jobs) Send(Batch{{job}, false});
      return;
    }
    indexes = FormatArrayIndexes(std::move(numbers));
  }
  for (const auto& job : batch.jobs) job->submitting = true;
  ++sbatch_in_flight_;
  std::vector<std::string> argv = BuildSbatchArgv(options_.sbatch, first, options_.slurm, script_path,
                                                  fs::path(script_path).parent_path().string(), indexes);
  ++counters_.sbatch;
  RunAsync(std::move(argv), [this, batch = std::move(batch)](CommandResult result) { OnSbatchDone(batch, result); });
}

void SlurmExecutor::OnSbatchDone(const Batch& batch, const CommandResult& result) {
  --sbatch_in_flight_;
  for (const auto& job : batch.jobs) job->submitting = false;
  // Whatever happened to this batch, the next ones may go (or be held).
  struct Pump {
    SlurmExecutor* self;
    ~Pump() { self->PumpSends(); }
  } pump{this};
  std::optional<std::string> id = result.exit_code == 0 ? ParseSbatchJobId(result.out) : std::nullopt;
  if (!id) {
    const std::string err(Trim(result.err.empty() ? result.out : result.err));
    if (result.exit_code != 0 && IsTransientSlurmError(err)) {
      NoteUnreachable("sbatch", err);
      Hold(batch);  // the tries stay queued; cancelled ones are dropped when it is retried
      return;
    }
    if (batch.array) {
      // An array the cluster refuses (MaxArraySize below the map indexes, say) may still go
      // as single jobs.
      Warn(batch.jobs.front()->key.ToString() + ": sbatch refused the job array (" + err +
           "), submitting its tries one by one");
      for (const auto& job : batch.jobs) Send(Batch{{job}, false});
      return;
    }
    const std::shared_ptr<Job>& job = batch.jobs.front();
    if (job->done) return;
    FinishLost(job, job->cancel_requested
                        ? kCancelledBeforeSlurm
                        : "sbatch failed" +
                              (result.exit_code >= 0 ? " (exit " + std::to_string(result.exit_code) + ")"
                                                     : std::string()) +
                              ": " + (err.empty() ? "no job id printed" : err));
    return;
  }
  NoteReachable();
  for (const auto& job : batch.jobs) {
    if (job->done) continue;
    job->job_id = batch.array ? *id + "_" + std::to_string(job->key.map_index) : *id;
    by_job_id_[job->job_id] = job;
    // Durable before anything else: it is what lets a restarted daemon adopt this job.
    if (Status s = WriteFileAtomically(job->files.slurm_job, job->job_id + "\n", /*durable=*/true); !s.ok()) {
      Warn(job->key.ToString() + ": cannot record Slurm job id " + job->job_id + ": " + s.ToString());
    }
    if (job->cancel_requested) pending_cancels_.insert(job->job_id);
  }
  if (!pending_cancels_.empty()) FlushCancels();
  SchedulePoll();
}

void SlurmExecutor::Hold(Batch batch) {
  const std::string why = "slurm: controller unreachable, submission retried with backoff: " + unreachable_error_;
  for (const auto& job : batch.jobs) {
    if (!job->done) EmitWaiting(*job, why);
  }
  held_.push_back(std::move(batch));
  ScheduleRetry();
}

void SlurmExecutor::ScheduleRetry() {
  if (retry_scheduled_ || held_.empty()) return;
  retry_scheduled_ = true;
  retry_timer_.expires_after(Backoff());
  std::weak_ptr<int> alive = alive_;
  retry_timer_.async_wait([this, alive](const boost::system::error_code& ec) {
    if (ec || alive.expired()) return;
    retry_scheduled_ = false;
    RetryHeld();
  });
}

void SlurmExecutor::RetryHeld() {
  if (unreachable_streak_ == 0) {
    // Something else got through meanwhile: everything goes.
    for (Batch& batch : std::exchange(held_, {})) Send(std::move(batch));
    return;
  }
  // One batch finds out whether the controller is back; the rest follow when it is.
  while (!held_.empty()) {
    Batch probe = std::move(held_.front());
    held_.pop_front();
    const bool live = std::any_of(probe.jobs.begin(), probe.jobs.end(),
                                  [](const auto& job) { return !job->done && !job->cancel_requested; });
    StartSbatch(std::move(probe));  // finishes cancelled tries without calling sbatch
    if (live) return;
  }
}

void SlurmExecutor::NoteReachable() {
  if (unreachable_streak_ > 0) {
    Warn("the Slurm controller answers again after " + std::to_string(unreachable_streak_) +
         " failed calls; sending " + std::to_string(held_.size()) + " waiting submissions");
  }
  unreachable_streak_ = 0;
  if (!held_.empty()) {
    retry_timer_.cancel();
    retry_scheduled_ = false;
    RetryHeld();
  }
}

void SlurmExecutor::NoteUnreachable(const std::string& what, const std::string& err) {
  ++counters_.unreachable;
  ++unreachable_streak_;
  unreachable_error_ = err.substr(0, err.find('\n'));
  const TimePoint now = Now();
  if (unreachable_streak_ == 1 || now - last_unreachable_log_ >= std::chrono::minutes(1)) {
    last_unreachable_log_ = now;
    Warn("Slurm controller unreachable (" + what + ", " + std::to_string(unreachable_streak_) +
         " failed calls in a row), retrying in " + FormatDuration(Backoff()) + ": " + unreachable_error_);
  }
}

std::chrono::milliseconds SlurmExecutor::Backoff() const {
  const std::chrono::milliseconds base = options_.slurm.poll_interval;
  if (unreachable_streak_ == 0) return base;
  const std::chrono::milliseconds cap = std::max<std::chrono::milliseconds>(base, std::chrono::seconds(30));
  std::chrono::milliseconds delay = base;
  for (int i = 1; i < unreachable_streak_ && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

void SlurmExecutor::EmitWaiting(Job& job, const std::string& why) {
  if (why == job.last_waiting) return;
  job.last_waiting = why;
  ExecutorEvent event;
  event.kind = ExecutorEvent::Kind::kWaiting;
  event.key = job.key;
  event.reason = why;
  event.at = Now();
  Emit(std::move(event));
}

std::vector<ExecutorEvent> SlurmExecutor::Drain() { return events_.Drain(); }

Status SlurmExecutor::Cancel(const TaskInstanceKey& key) {
  auto it = jobs_.find(key);
  if (it == jobs_.end()) return Status::OK();
  std::shared_ptr<Job> job = it->second;
  job->cancel_requested = true;
  if (!job->job_id.empty()) {
    pending_cancels_.insert(job->job_id);
    FlushCancels();
  } else if (!job->submitting && !job->searching) {
    // Not sent yet (or held while slurmctld is away): it never reaches Slurm.
    FinishLost(job, kCancelledBeforeSlurm);
  }
  // Otherwise cancelled as soon as sbatch, or the search by name, returns the job id.
  return Status::OK();
}

void SlurmExecutor::FlushCancels() {
  if (cancel_flush_posted_) return;
  cancel_flush_posted_ = true;
  // Posted, so every Cancel() of this pass (a dagrun_timeout stops many at once) joins one call.
  std::weak_ptr<int> alive = alive_;
  boost::asio::post(io_, [this, alive] {
    if (alive.expired()) return;
    cancel_flush_posted_ = false;
    if (pending_cancels_.empty()) return;
    std::vector<std::string> argv = {options_.scancel};
    argv.insert(argv.end(), pending_cancels_.begin(), pending_cancels_.end());
    pending_cancels_.clear();
    ++counters_.scancel;
    RunAsync(argv, [this](CommandResult result) {
      // A job that already ended makes scancel complain; the poll reports how each one ended.
      if (result.exit_code != 0) Warn("scancel failed: " + std::string(Trim(result.err)));
    });
  });
}

std::vector<TaskInstanceKey> SlurmExecutor::Adopt(std::span<const RunningTask> tasks) {
  std::vector<TaskInstanceKey> adopted;
  for (const RunningTask& task : tasks) {
    if (jobs_.count(task.key)) {
      adopted.push_back(task.key);
      continue;
    }
    auto job = std::make_shared<Job>();
    job->key = task.key;
    job->spec.key = task.key;
    job->spec.log_path = task.log_path;
    job->files = TryFiles::OfLog(task.log_path);
    std::optional<std::string> id = task.external_id;
    if (!id && !task.log_path.empty()) id = ReadJobIdFile(job->files.slurm_job);
    auto status = task.log_path.empty() ? Result<TaskExit>(Status::NotFound("no log"))
                                        : ReadStatusFile(job->files.status);
    if (status.ok()) {
      ExecutorEvent finished;
      finished.kind = ExecutorEvent::Kind::kFinished;
      finished.key = task.key;
      finished.exit_code = status->exit_code;
      finished.reason = status->reason;
      finished.at = FileModifiedAt(job->files.status).value_or(Now());
      Emit(std::move(finished));
      continue;
    }
    if (!id && !task.log_path.empty() && PathExists(job->files.slurm_job)) {
      // Submitted, but the daemon died before sbatch's answer was recorded: Slurm may have the
      // job. The search by name says.
      job->searching = true;
      jobs_[task.key] = job;
      searching_.push_back(job);
      adopted.push_back(task.key);
      continue;
    }
    if (!id) {
      // sbatch never ran for this try, so nothing was submitted: the try may start now.
      ExecutorEvent lost;
      lost.kind = ExecutorEvent::Kind::kLost;
      lost.key = task.key;
      lost.reason = "never started";
      lost.at = Now();
      Emit(std::move(lost));
      continue;
    }
    job->job_id = *id;
    // A recorded external_id means kStarted was sent (and stored) before the restart.
    job->started_sent = task.external_id.has_value();
    jobs_[task.key] = job;
    by_job_id_[*id] = job;
    adopted.push_back(task.key);
  }
  if (!searching_.empty()) StartSearch();
  SchedulePoll();
  return adopted;
}

void SlurmExecutor::StartSearch() {
  if (search_in_flight_ || searching_.empty()) return;
  search_in_flight_ = true;
  ++counters_.squeue;
  // Every job of this user, names included: one call however many tries are looked for.
  RunAsync({options_.squeue, "-h", "-t", "all", "-r", "-o", "%i|%T|%r|%Z|%j", "-u", std::to_string(::getuid())},
           [this](CommandResult result) { OnSearchDone(result); });
}

void SlurmExecutor::OnSearchDone(const CommandResult& result) {
  search_in_flight_ = false;
  if (result.exit_code != 0) {
    NoteUnreachable("squeue", std::string(Trim(result.err)));
    for (const auto& job : searching_) {
      EmitWaiting(*job, "slurm: controller unreachable, looking for the job submitted before the restart: " +
                            unreachable_error_);
    }
    search_timer_.expires_after(Backoff());
    std::weak_ptr<int> alive = alive_;
    search_timer_.async_wait([this, alive](const boost::system::error_code& ec) {
      if (!ec && !alive.expired()) StartSearch();
    });
    return;
  }
  NoteReachable();
  std::map<std::string, std::vector<SlurmJobInfo>> by_name;
  for (SlurmJobInfo& info : ParseSqueueOutput(result.out)) by_name[info.name].push_back(std::move(info));
  for (const std::shared_ptr<Job>& job : std::exchange(searching_, {})) {
    job->searching = false;
    if (job->done) continue;
    // The name says which try; the working directory (--chdir, the script's folder) says it
    // was this daemon's: another state folder may have run a DAG and run of the same names.
    const fs::path script_dir = fs::path(ScriptPathFor(job->spec)).parent_path().lexically_normal();
    const fs::path array_dir =
        fs::path(TryFiles::OfLog(job->spec.log_path)
                     .ArrayScript(options_.slurm.shared_dir.value_or(""), job->key.ToTryId()))
            .parent_path()
            .lexically_normal();
    const SlurmJobInfo* found = nullptr;
    if (auto it = by_name.find(SlurmJobName(job->key)); it != by_name.end()) {
      for (const SlurmJobInfo& info : it->second) {
        if (fs::path(info.work_dir).lexically_normal() == script_dir) found = &info;
      }
    }
    if (auto it = by_name.find(SlurmArrayJobName(job->key)); !found && job->key.map_index >= 0 && it != by_name.end()) {
      const std::string suffix = "_" + std::to_string(job->key.map_index);
      for (const SlurmJobInfo& info : it->second) {
        if (info.job_id.ends_with(suffix) && fs::path(info.work_dir).lexically_normal() == array_dir) found = &info;
      }
    }
    if (!found) {
      // Slurm never took it (sbatch failed, or the daemon died before it ran): start it now.
      FinishLost(job, "never started");
      continue;
    }
    Warn(job->key.ToString() + ": found Slurm job " + found->job_id + " by its name; following it");
    job->job_id = found->job_id;
    by_job_id_[job->job_id] = job;
    if (Status s = WriteFileAtomically(job->files.slurm_job, job->job_id + "\n", /*durable=*/true); !s.ok()) {
      Warn(job->key.ToString() + ": cannot record Slurm job id " + job->job_id + ": " + s.ToString());
    }
    if (job->cancel_requested) {
      pending_cancels_.insert(job->job_id);
      FlushCancels();
    }
    Apply(job, *found);
  }
  SchedulePoll();
}

void SlurmExecutor::SchedulePoll() {
  if (poll_scheduled_ || poll_in_flight_ || by_job_id_.empty()) return;
  poll_scheduled_ = true;
  poll_timer_.expires_after(Backoff());
  std::weak_ptr<int> alive = alive_;
  poll_timer_.async_wait([this, alive](const boost::system::error_code& ec) {
    if (ec || alive.expired()) return;
    poll_scheduled_ = false;
    Poll();
  });
}

void SlurmExecutor::Poll() {
  if (by_job_id_.empty()) return;
  std::vector<std::string> ids;
  std::string joined;
  for (const auto& [id, job] : by_job_id_) {
    ids.push_back(id);
    if (!joined.empty()) joined += ',';
    joined += id;
  }
  poll_in_flight_ = true;
  ++counters_.squeue;
  // -r: array elements one per line, as "ARRAYID_INDEX", even while they are pending.
  RunAsync({options_.squeue, "-h", "-t", "all", "-r", "-o", "%i|%T|%r", "-j", joined},
           [this, ids](CommandResult result) { OnSqueueDone(ids, result); });
}

void SlurmExecutor::OnSqueueDone(const std::vector<std::string>& ids, const CommandResult& result) {
  poll_in_flight_ = false;
  // For a single unknown id squeue fails with "Invalid job id specified": that is an answer
  // (the job is gone), not an outage.
  const bool invalid_id = result.err.find("Invalid job id") != std::string::npos;
  if (result.exit_code != 0 && !invalid_id) {
    NoteUnreachable("squeue", std::string(Trim(result.err)));
    // Jobs are not declared lost for it; those not started say why nothing moves.
    for (const std::string& id : ids) {
      auto it = by_job_id_.find(id);
      if (it == by_job_id_.end() || it->second->started_sent) continue;
      EmitWaiting(*it->second, "slurm: controller unreachable, job " + id +
                                   " not followed until it answers: " + unreachable_error_);
    }
    SchedulePoll();
    return;
  }
  NoteReachable();
  std::map<std::string, SlurmJobInfo> seen;
  for (SlurmJobInfo& info : ParseSqueueOutput(result.out)) seen[info.job_id] = std::move(info);
  for (const std::string& id : ids) {
    auto it = by_job_id_.find(id);
    if (it == by_job_id_.end()) continue;
    std::shared_ptr<Job> job = it->second;
    if (auto s = seen.find(id); s != seen.end()) {
      Apply(job, s->second);
      continue;
    }
    // Purged from slurmctld's memory (MinJobAge) or a squeue that skips it: ask for it alone.
    ++counters_.scontrol;
    RunAsync({options_.scontrol, "show", "job", "-o", id},
             [this, id](CommandResult r) { OnScontrolDone(id, r); });
  }
  SchedulePoll();
}

void SlurmExecutor::OnScontrolDone(const std::string& id, const CommandResult& result) {
  auto it = by_job_id_.find(id);
  if (it == by_job_id_.end()) return;
  std::shared_ptr<Job> job = it->second;
  if (result.exit_code == 0) {
    if (auto info = ParseScontrolShowJob(result.out)) {
      Apply(job, *info);
      return;
    }
  } else if (result.err.find("Invalid job id") == std::string::npos) {
    return;  // slurmctld is away; the next poll asks again
  }
  // Unknown to Slurm. The wrapper's status file may still tell how it ended.
  auto status = ReadStatusFile(job->files.status);
  ExecutorEvent event;
  event.key = job->key;
  if (status.ok()) {
    if (!job->started_sent) SendStarted(*job);
    event.kind = ExecutorEvent::Kind::kFinished;
    event.exit_code = status->exit_code;
    event.reason = status->reason;
    event.at = FileModifiedAt(job->files.status).value_or(Now());
  } else {
    event.kind = ExecutorEvent::Kind::kLost;
    event.reason = "Slurm job " + id + " vanished (unknown to squeue and scontrol) without a status";
  }
  Finish(job, std::move(event));
}

void SlurmExecutor::Apply(const std::shared_ptr<Job>& job, const SlurmJobInfo& info) {
  if (job->done) return;
  const SlurmPhase phase = ClassifySlurmState(info.state);
  if (phase == SlurmPhase::kQueued) {
    // Tell the scheduler why the job waits (Resources, Priority, QOS...), once per change.
    std::string why = "slurm: " + info.state;
    if (!info.reason.empty() && info.reason != "None") why += " (" + info.reason + ")";
    EmitWaiting(*job, why);
    return;
  }
  if (phase == SlurmPhase::kRunning) {
    if (!job->started_sent) SendStarted(*job);
    if (auto progress = ReadProgressFile(job->files.progress); progress && progress != job->last_progress) {
      job->last_progress = progress;
      ExecutorEvent event;
      event.kind = ExecutorEvent::Kind::kProgress;
      event.key = job->key;
      event.progress = *progress;
      event.at = Now();
      Emit(std::move(event));
    }
    return;
  }
  auto status = ReadStatusFile(job->files.status);
  ExecutorEvent event;
  event.key = job->key;
  if (phase == SlurmPhase::kCompleted) {
    if (!status.ok()) {
      if (++job->status_wait_polls < kStatusGracePolls) return;
      // The wrapper never got to record a result: it refused (the try ran elsewhere) or could
      // not start the command.
      if (!job->started_sent) SendStarted(*job);
      event.kind = ExecutorEvent::Kind::kLost;
      event.reason = "Slurm job " + job->job_id + " " + info.state +
                     " without a status from the task wrapper" +
                     (info.exit_code ? " (exit code " + std::to_string(*info.exit_code) + ")" : "");
      Finish(job, std::move(event));
      return;
    }
    if (!job->started_sent) SendStarted(*job);
    event.kind = ExecutorEvent::Kind::kFinished;
    event.exit_code = status->exit_code;
    event.reason = status->reason;
    event.at = FileModifiedAt(job->files.status).value_or(Now());
    Finish(job, std::move(event));
    return;
  }
  // Slurm ended it (cancel, time limit, node failure, memory): failed whatever the wrapper
  // recorded while being stopped, and the reason names Slurm's state.
  int code = status.ok() && status->exit_code != 0 ? status->exit_code : DefaultExitCodeFor(info.state);
  event.kind = ExecutorEvent::Kind::kFinished;
  event.exit_code = code;
  event.reason = "slurm: " + info.state;
  if (!info.reason.empty() && info.reason != "None") event.reason += " (" + info.reason + ")";
  event.at = Now();
  Finish(job, std::move(event));
}

void SlurmExecutor::FinishLost(const std::shared_ptr<Job>& job, std::string reason) {
  ExecutorEvent lost;
  lost.kind = ExecutorEvent::Kind::kLost;
  lost.key = job->key;
  lost.reason = std::move(reason);
  Finish(job, std::move(lost));
}

void SlurmExecutor::SendStarted(Job& job) {
  job.started_sent = true;
  ExecutorEvent started;
  started.kind = ExecutorEvent::Kind::kStarted;
  started.key = job.key;
  started.external_id = job.job_id;
  started.at = Now();
  Emit(std::move(started));
}

void SlurmExecutor::Finish(const std::shared_ptr<Job>& job, ExecutorEvent event) {
  job->done = true;
  if (event.at.time_since_epoch().count() == 0) event.at = Now();
  if (!job->job_id.empty()) by_job_id_.erase(job->job_id);
  jobs_.erase(job->key);
  Emit(std::move(event));
}

// With stdin /dev/null and none of our descriptors (the database, sockets).
SlurmExecutor::CommandResult SlurmExecutor::RunCommand(std::vector<std::string>& argv) {
  CommandResult result;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    result.err = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  UniqueFd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  UniqueFd err_read(err_pipe[0]), err_write(err_pipe[1]);
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull) {
    result.err = std::string("cannot open /dev/null: ") + std::strerror(errno);
    return result;
  }
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  ChildSpec spec;
  spec.file = cargv[0];
  spec.argv = cargv.data();
  spec.search_path = true;
  spec.stdin_fd = devnull.get();
  spec.stdout_fd = out_write.get();
  spec.stderr_fd = err_write.get();
  spec.close_other_fds = true;
  spec.own_process_group = false;  // a short command of the daemon's, stopped with it
  spec.exec_failure_is_error = true;
  Result<StartedChild> child = StartChild(spec);
  out_write.Reset();
  err_write.Reset();
  if (!child.ok()) {
    result.err = child.status().message();
    return result;
  }
  pollfd fds[2] = {{out_read.get(), POLLIN, 0}, {err_read.get(), POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  char buf[8192];
  while (open_count > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  result.exit_code = ExitCodeOfWaitStatus(ReapChild(child->pid));
  return result;
}

void SlurmExecutor::RunAsync(std::vector<std::string> argv, std::function<void(CommandResult)> done) {
  std::weak_ptr<int> alive = alive_;
  boost::asio::io_context& io = io_;
  boost::asio::post(pool_, [argv = std::move(argv), done = std::move(done), alive, &io]() mutable {
    CommandResult result = RunCommand(argv);
    if (alive.expired()) return;
    boost::asio::post(io, [alive, done = std::move(done), result = std::move(result)]() mutable {
      if (alive.expired()) return;
      done(std::move(result));
    });
  });
}

void SlurmExecutor::Emit(ExecutorEvent event) {
  if (event.at.time_since_epoch().count() == 0) event.at = Now();
  events_.Push(std::move(event));
}

void SlurmExecutor::Warn(const std::string& message) const {
  if (options_.warn) options_.warn(message);
}

TimePoint SlurmExecutor::Now() const {
  if (options_.clock) return options_.clock->Now();
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

}  // namespace nightshift

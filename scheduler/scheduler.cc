#include "scheduler/scheduler.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <string_view>
#include <unordered_set>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/try_files.h"
#include "executor/task_protocol.h"
#include "executor/try_journal.h"
#include "scheduler/cache_key.h"
#include "scheduler/dag_snapshot.h"
#include "scheduler/json_input.h"
#include "scheduler/map_expansion.h"
#include "scheduler/retry_policy.h"
#include "scheduler/run_schedule.h"
#include "scheduler/trigger_rules.h"

namespace nightshift {
namespace {

using json = nlohmann::json;

std::string UpperEnvName(const std::string& name) {
  std::string out;
  for (char c : name) {
    out += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::toupper(static_cast<unsigned char>(c)))
                                                       : '_';
  }
  return out;
}

// A conf value as an environment variable: strings as they are, anything else as JSON.
std::string EnvValue(const json& value) {
  return value.is_string() ? value.get<std::string>() : DumpJson(value);
}

// "window nightly closed until 2026-11-29T22:00:00+01:00": why a task waits or was stopped.
std::string WindowClosedReason(const std::string& name, const Window& window, TimePoint now) {
  std::optional<TimePoint> open = window.NextOpen(now);
  return "window " + name + " closed until " + (open ? FormatRfc3339In(*open, window.timezone()) : std::string("never"));
}

// The DAG's params with the trigger's conf over them, as the tasks' environment sees them.
// Parsed once when a run is loaded or created, not for each try.
std::map<std::string, std::string> RunParams(const Dag& dag, const std::string& conf_text) {
  std::map<std::string, std::string> params = dag.params;
  // conf was validated when the run was created; a damaged row adds nothing.
  Result<json> conf = ParseJsonInput(conf_text.empty() ? "{}" : conf_text);
  if (conf.ok() && conf->is_object()) {
    for (const auto& [k, v] : conf->items()) params[k] = EnvValue(v);
  }
  return params;
}

std::string DateInZone(TimePoint t, const std::string& timezone) {
  // FormatRfc3339In gives "YYYY-MM-DDTHH:MM:SS+hh:mm" in the zone; its first ten characters
  // are the local date.
  return FormatRfc3339In(t, timezone).substr(0, 10);
}

// Reads the JSON a successful try wrote to NIGHTSHIFT_OUTPUT; an error says why it is unusable.
Status ReadOutput(const std::string& log_path, std::optional<std::string>* output) {
  constexpr size_t kMaxOutput = 64 * 1024;
  const std::string path = TryFiles::OfLog(log_path).output;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status::OK();
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return Status::IOError("cannot read the output file: " + ec.message());
  if (size > kMaxOutput) {
    return Status::InvalidArgument("output is " + std::to_string(size) + " bytes; the limit is 64 KiB");
  }
  std::string text(size, '\0');
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    text.resize(std::fread(text.data(), 1, text.size(), f));
    std::fclose(f);
  }
  Result<std::optional<std::string>> parsed = ParseTryOutput(text);
  if (!parsed.ok()) return parsed.status();
  *output = std::move(*parsed);
  return Status::OK();
}

// Writes a file a command asks for (its folder created as needed).
Status WriteCommandFile(const std::string& path, const std::string& content) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return Status::IOError("cannot create the folder of " + path + ": " + ec.message());
  return WriteFileAtomically(path, content, /*durable=*/false);
}

}  // namespace

SchedulerOptions SchedulerOptions::FromConfig(const Config& config) {
  SchedulerOptions options;
  options.parallelism = config.parallelism;
  options.pools = config.pools;
  options.windows = config.windows;
  options.logs_dir = std::filesystem::absolute(config.LogsDir()).lexically_normal().string();
  options.limits = config.limits;
  return options;
}

Scheduler::Scheduler(SchedulerOptions options, Store& store, Executor& executor, const Clock& clock,
                     const std::map<std::string, Dag>& dags)
    : options_(std::move(options)), store_(store), executor_(executor), clock_(clock), dags_(dags) {}

// ---------------------------------------------------------------------------------------------
// Loading and recovery

Status Scheduler::LoadRun(const DagRun& run) {
  ActiveRun active;
  active.run = run;
  auto dag = RestoreDag(run.dag_snapshot);
  if (!dag.ok()) return dag.status();
  active.dag = std::move(*dag);
  active.params = RunParams(active.dag, run.conf);
  auto tis = store_.ListTaskInstances(run.id);
  if (!tis.ok()) return tis.status();
  active.tis = std::move(*tis);
  active.Index();
  for (const TaskInstance& ti : active.tis) {
    if (ti.state != TaskState::kQueued && ti.state != TaskState::kRunning) continue;
    CountSlot(run.dag_id, ti.pool, +1);
  }
  runs_[run.id] = std::move(active);
  return Status::OK();
}

Status Scheduler::Recover() { return LoadState(/*announce=*/true); }

void Scheduler::ReloadAfterFailedCommit() {
  commands_.clear();
  finished_runs_.clear();
  if (Status r = LoadState(/*announce=*/false); !r.ok()) spdlog::error("reload failed: {}", r.ToString());
}

Status Scheduler::LoadState(bool announce) {
  runs_.clear();
  active_tries_.clear();
  tries_to_delete_.clear();  // a refused pass rolled their deletion back: they are tries again
  ready_.Clear();
  fresh_ready_.clear();
  running_total_ = 0;
  running_by_dag_.clear();
  running_by_pool_.clear();
  auto runs = store_.ListUnfinishedRuns();
  if (!runs.ok()) return runs.status();
  for (const DagRun& run : *runs) {
    if (Status s = LoadRun(run); !s.ok()) {
      spdlog::error("cannot load run {}/{}: {}", run.dag_id, run.run_id, s.ToString());
    }
  }
  // Tries that were queued or running when the daemon stopped: the executor adopts the ones
  // still alive and reports what became of the others.
  auto tries = store_.ListActiveTries();
  if (!tries.ok()) return tries.status();
  std::map<int64_t, std::pair<int64_t, size_t>> instance_by_pk;  // ti id -> (run, index)
  for (const TaskTry& t : *tries) instance_by_pk[t.ti_pk];
  for (auto& [run_pk, active] : runs_) {
    for (size_t i = 0; i < active.tis.size(); ++i) {
      if (auto it = instance_by_pk.find(active.tis[i].id); it != instance_by_pk.end()) it->second = {run_pk, i};
    }
  }
  std::vector<RunningTask> to_adopt;
  for (const TaskTry& t : *tries) {
    auto [run_pk, i] = instance_by_pk[t.ti_pk];
    auto run_it = runs_.find(run_pk);
    if (run_it == runs_.end()) continue;
    const ActiveRun& active = run_it->second;
    const TaskInstance& ti = active.tis[i];
    TaskInstanceKey key{active.run.dag_id, active.run.run_id, ti.task_id, ti.map_index, t.try_number};
    ActiveTry at;
    at.run_pk = run_pk;
    at.ti_index = i;
    at.task_try = t;
    active_tries_[key] = at;
    to_adopt.push_back(RunningTask{key, t.pid, t.external_id, t.log_path,
                                   TryJournalPath(options_.logs_dir, key.dag_id, key.run_id),
                                   t.external_id ? "slurm" : "local"});
  }
  if (!to_adopt.empty()) {
    std::vector<TaskInstanceKey> adopted = executor_.Adopt(to_adopt);
    if (announce) spdlog::info("recovered {} unfinished runs; {} of {} tries still running were adopted", runs_.size(),
                 adopted.size(), to_adopt.size());
  } else if (announce && !runs_.empty()) {
    spdlog::info("recovered {} unfinished runs", runs_.size());
  }
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------
// The pass

Result<std::optional<TimePoint>> Scheduler::RunPass() {
  const TimePoint now = clock_.Now();
  const auto pass_start = std::chrono::steady_clock::now();
  commands_.clear();
  finished_runs_.clear();
  // What happened since the last pass, with the files it names read now: planning reads none.
  const std::vector<TryEvent> events = ReadEvents();

  Status s = store_.InTransaction([&]() -> Status {
    if (Status read = ReadStoreState(); !read.ok()) return read;
    // Planning: from here to Persist, no file and no executor is touched.
    for (const TryEvent& event : events) HandleEvent(event, now);
    if (options_.create_scheduled_runs) {
      if (Status cs = CreateScheduledRuns(now); !cs.ok()) return cs;
    }
    StartQueuedRuns(now);
    for (auto& [run_pk, active] : runs_) {
      if (active.run.state != RunState::kRunning) continue;
      EnforceTimeouts(active, now);
      EvaluateRun(active, now);
    }
    EnforceWindows(now);
    if (dispatching_) Dispatch(now);
    for (auto& [run_pk, active] : runs_) {
      if (active.run.state == RunState::kRunning) FinishRunIfDone(active, now);
    }
    return Persist();
  });
  if (!s.ok()) {
    ReloadAfterFailedCommit();
    return s;
  }

  // Committed: now the queued tries may really start.
  CarryOut(now);
  for (int64_t run_pk : std::exchange(finished_runs_, {})) {
    auto it = runs_.find(run_pk);
    if (it == runs_.end()) continue;
    for (const TaskInstance& ti : it->second.tis) ready_since_.erase(ti.id);
    runs_.erase(it);
  }
  heartbeat_ = now;
  metrics_.pool_used.clear();
  for (const auto& [pool, size] : options_.pools) metrics_.pool_used[pool] = 0;
  for (const auto& [pool, used] : running_by_pool_) {
    if (used > 0) metrics_.pool_used[pool] = used;
  }
  ++metrics_.passes;
  metrics_.pass_duration.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - pass_start).count());
  return NextWake(now);
}

Status Scheduler::ReadStoreState() {
  // Which DAGs are paused, read again only when the dags table may have changed: with many
  // DAGs, reading them all on every pass would cost what the DAGs folder holds, not what
  // changed.
  auto version = store_.GetDagsVersion();
  if (!version.ok()) return version.status();
  if (paused_version_ != *version) {
    auto dags = store_.ListDags();
    if (!dags.ok()) return dags.status();
    for (const DagRecord& d : *dags) paused_[d.dag_id] = d.is_paused;
    paused_version_ = *version;
  }
  if (!options_.create_scheduled_runs) return Status::OK();
  // Where each schedule stands: its newest scheduled run, read once per DAG.
  for (const auto& [dag_id, dag] : dags_) {
    if (!dag.schedule || last_scheduled_.count(dag_id)) continue;
    auto paused = paused_.find(dag_id);
    if (paused == paused_.end() || paused->second) continue;
    auto latest = store_.LatestRun(dag_id, "scheduled");
    if (!latest.ok()) return latest.status();
    std::optional<TimePoint> newest;
    if (latest->has_value()) newest = (*latest)->logical_date;
    last_scheduled_.emplace(dag_id, newest);
  }
  return Status::OK();
}

std::vector<TryEvent> Scheduler::ReadEvents() {
  std::vector<TryEvent> events;
  for (ExecutorEvent& event : std::exchange(submit_failures_, {})) events.push_back(TryEvent{std::move(event), {}, {}});
  for (ExecutorEvent& event : executor_.Drain()) {
    TryEvent& read = events.emplace_back(TryEvent{std::move(event), {}, {}});
    if (read.event.kind != ExecutorEvent::Kind::kFinished || read.event.exit_code.value_or(-1) != 0) continue;
    auto it = active_tries_.find(read.event.key);
    if (it == active_tries_.end()) continue;
    if (Status s = ReadOutput(it->second.task_try.log_path, &read.output); !s.ok()) {
      read.output.reset();
      read.output_error = s.message();
    }
  }
  return events;
}

void Scheduler::Cancel(const TaskInstanceKey& key) {
  SchedulerCommand command;
  command.kind = SchedulerCommand::Kind::kCancel;
  command.key = key;
  commands_.push_back(std::move(command));
}

void Scheduler::CarryOut(TimePoint now) {
  // A stop the executor refused before is asked again while the try is still ours.
  for (auto it = cancels_to_retry_.begin(); it != cancels_to_retry_.end();) {
    if (active_tries_.count(*it)) Cancel(*it);
    it = cancels_to_retry_.erase(it);
  }
  std::map<TaskInstanceKey, std::string> unstartable;  // tries whose input file was not written
  for (SchedulerCommand& command : std::exchange(commands_, {})) {
    switch (command.kind) {
      case SchedulerCommand::Kind::kWriteFile: {
        if (Status w = WriteCommandFile(command.path, command.content); !w.ok()) {
          spdlog::error("{}: {}", command.key.ToString(), w.ToString());
          if (command.needed_to_start) unstartable[command.key] = w.message();
        }
        break;
      }
      case SchedulerCommand::Kind::kSubmit: {
        Status submit = Status::OK();
        if (auto it = unstartable.find(command.spec.key); it != unstartable.end()) {
          submit = Status::IOError(it->second);
        } else {
          submit = executor_.Submit(command.spec);
        }
        if (submit.ok()) break;
        spdlog::error("cannot start {}: {}", command.spec.key.ToString(), submit.ToString());
        // A callback has no try; a task's try is handled as failed on the next pass, so the
        // retry rules apply.
        if (!active_tries_.count(command.spec.key)) break;
        ExecutorEvent failed;
        failed.kind = ExecutorEvent::Kind::kLost;
        failed.key = command.spec.key;
        failed.reason = "cannot start: " + submit.message();
        failed.at = now;
        submit_failures_.push_back(std::move(failed));
        break;
      }
      case SchedulerCommand::Kind::kCancel:
        if (Status c = executor_.Cancel(command.key); !c.ok()) {
          spdlog::warn("cannot stop {} yet: {}", command.key.ToString(), c.ToString());
          cancels_to_retry_.insert(command.key);
        }
        break;
      case SchedulerCommand::Kind::kWithdraw:
        executor_.Withdraw(command.key);
        break;
    }
  }
}

Status Scheduler::Persist() {
  // Before the inserts: an undone try's number is taken again by the instance's next try.
  for (int64_t id : tries_to_delete_) {
    if (Status s = store_.DeleteTry(id); !s.ok() && !s.IsNotFound()) return s;
  }
  tries_to_delete_.clear();
  for (auto& [run_pk, active] : runs_) {
    if (active.run_dirty) {
      if (Status s = store_.UpdateRun(active.run); !s.ok()) return s;
      active.run_dirty = false;
    }
    for (size_t i : active.dirty) {
      if (Status s = store_.UpdateTaskInstance(active.tis[i]); !s.ok()) return s;
    }
    active.dirty.clear();
  }
  for (auto& [key, at] : active_tries_) {
    if (!at.dirty) continue;
    if (at.task_try.id == 0) {
      if (Status s = store_.InsertTry(&at.task_try); !s.ok()) return s;
    } else if (Status s = store_.UpdateTry(at.task_try); !s.ok()) {
      return s;
    }
    at.dirty = false;
  }
  // Finished tries leave the active set once written.
  for (auto it = active_tries_.begin(); it != active_tries_.end();) {
    TaskState st = it->second.task_try.state;
    bool done = st != TaskState::kQueued && st != TaskState::kRunning;
    it = done ? active_tries_.erase(it) : std::next(it);
  }
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------
// Executor events

void Scheduler::HandleEvent(const TryEvent& read, TimePoint now) {
  const ExecutorEvent& event = read.event;
  auto it = active_tries_.find(event.key);
  if (it == active_tries_.end()) return;  // a callback, or a try already closed
  ActiveTry& at = it->second;
  auto run_it = runs_.find(at.run_pk);
  switch (event.kind) {
    case ExecutorEvent::Kind::kStarted: {
      at.task_try.state = TaskState::kRunning;
      at.task_try.pid = event.pid;
      at.task_try.external_id = event.external_id;
      at.task_try.start_date = event.at.time_since_epoch().count() ? event.at : now;
      at.dirty = true;
      if (run_it == runs_.end()) return;
      TaskInstance& ti = run_it->second.tis[at.ti_index];
      ++metrics_.tries_started;
      StandbyStarted(at);
      if (auto ready = ready_since_.find(ti.id); ready != ready_since_.end()) {
        metrics_.dispatch_latency.Observe(
            std::max(0.0, std::chrono::duration<double>(at.task_try.start_date.value_or(now) - ready->second).count()));
        ready_since_.erase(ready);
      }
      if (ti.state == TaskState::kQueued) {
        ti.waiting_reason.reset();
        ti.pid = event.pid;
        ti.external_id = event.external_id;
        ti.start_date = at.task_try.start_date;
        SetState(run_it->second, at.ti_index, TaskState::kRunning);
      }
      return;
    }
    case ExecutorEvent::Kind::kWaiting: {
      if (run_it == runs_.end()) return;
      TaskInstance& ti = run_it->second.tis[at.ti_index];
      if (ti.state == TaskState::kQueued && ti.waiting_reason != event.reason) {
        ti.waiting_reason = event.reason;
        run_it->second.dirty.insert(at.ti_index);
      }
      return;
    }
    case ExecutorEvent::Kind::kProgress: {
      if (run_it == runs_.end() || !event.progress) return;
      TaskInstance& ti = run_it->second.tis[at.ti_index];
      ti.progress = *event.progress;
      run_it->second.dirty.insert(at.ti_index);
      return;
    }
    case ExecutorEvent::Kind::kFinished: {
      // When the executor saw it end (the supervisor's clock, a Slurm status file's time), not
      // when we heard of it, which may be a batch of events or a restart later; kept within the
      // try's start and now.
      TimePoint ended = now;
      if (event.at.time_since_epoch().count() != 0 && event.at < now) ended = event.at;
      if (at.task_try.start_date && ended < *at.task_try.start_date) ended = *at.task_try.start_date;
      FinishTry(at, event.exit_code.value_or(-1), event.reason, ended, event.handed_off, &read);
      return;
    }
    case ExecutorEvent::Kind::kDeclined:
      // A standby that did not start: it waits again like any instance, and uses up nothing.
      ++metrics_.standbys_declined;
      Undo(event.key, event.reason, now);
      return;
    case ExecutorEvent::Kind::kLost:
      if (event.reason == "never started") {
        // The daemon died between committing "queued" and starting the process: nothing ran,
        // so the instance waits again and is dispatched like any other (its upstream may not
        // even be done, for a standby), with the same try number.
        Undo(event.key, event.reason, now);
        return;
      }
      FinishTry(at, -1, event.reason.empty() ? "task process lost" : event.reason, now);
      return;
  }
}

void Scheduler::Undo(const TaskInstanceKey& key, const std::string& reason, TimePoint now) {
  auto it = active_tries_.find(key);
  if (it == active_tries_.end()) return;
  ActiveTry& at = it->second;
  auto run_it = runs_.find(at.run_pk);
  TaskInstance* ti = run_it == runs_.end() ? nullptr : &run_it->second.tis[at.ti_index];
  if (!ti || ti->state != TaskState::kQueued || ti->try_number != at.task_try.try_number) {
    // Decided meanwhile (the run ended, a user cleared or marked it): the try stays on record.
    FinishTry(at, -1, at.cancel_reason.value_or("not started: " + reason), now);
    return;
  }
  ActiveRun& active = run_it->second;
  ForgetStandby(key);
  if (at.task_try.id != 0) tries_to_delete_.push_back(at.task_try.id);
  ti->try_number -= 1;
  ti->queued_at.reset();
  ti->waiting_reason.reset();
  ti->pid.reset();
  SetState(active, at.ti_index, TaskState::kScheduled);  // evaluated again this pass
  active_tries_.erase(it);
}

void Scheduler::FinishTry(ActiveTry& at, int exit_code, const std::string& reason, TimePoint now,
                          bool handed_off, const TryEvent* read) {
  // A try that exits 0 did its work, even if a closing window asked it to stop; one stopped
  // for a timeout has failed whatever it returned. Unless the executor saw it succeed before
  // any stop reached it and started work on that success (a standby): that stands.
  const bool success_started_standby = StandbyTakesOver(at, exit_code, handed_off, now);
  bool success = exit_code == 0 && (!at.cancel_reason || at.window_kill || success_started_standby);
  std::optional<std::string> output;
  std::string output_error;
  if (success && read) {
    output = read->output;
    output_error = read->output_error;
    success = output_error.empty();  // an unusable output fails the try, and retries apply
  }
  at.task_try.state = success ? TaskState::kSuccess : TaskState::kFailed;
  at.task_try.end_date = now;
  if (exit_code >= 0) at.task_try.exit_code = exit_code;
  if (!success) {
    std::string why = !output_error.empty() ? output_error : at.cancel_reason.value_or(reason);
    if (why.empty()) why = "exit code " + std::to_string(exit_code);
    at.task_try.reason = why;
  }
  at.dirty = true;

  auto run_it = runs_.find(at.run_pk);
  if (run_it == runs_.end()) return;
  ActiveRun& active = run_it->second;
  TaskInstance& ti = active.tis[at.ti_index];
  ++metrics_.tries_finished;
  if (!success) ++metrics_.tries_failed;
  // Already decided elsewhere (the run timed out, a user cleared or marked it): only the try
  // is recorded.
  if (ti.state != TaskState::kQueued && ti.state != TaskState::kRunning) return;
  if (ti.try_number != at.task_try.try_number) return;
  active.dirty.insert(at.ti_index);
  ti.pid.reset();
  if (success) {
    ti.end_date = now;
    ti.progress = 1.0;
    ti.output = std::move(output);
    ti.waiting_reason.reset();
    SetState(active, at.ti_index, TaskState::kSuccess);
    spdlog::info("{} succeeded", TaskInstanceKey{active.run.dag_id, active.run.run_id, ti.task_id,
                                                  ti.map_index, at.task_try.try_number}
                                      .ToString());
    return;
  }
  if (at.window_kill) {
    // Stopped because its window closed: back to the queue for the next opening, and the
    // stopped try does not count against retries.
    ti.window_kills += 1;
    ti.waiting_reason = *at.cancel_reason;
    SetState(active, at.ti_index, TaskState::kScheduled);
    return;
  }
  const Task* task = active.TaskOf(ti);
  spdlog::warn("{} failed: {}",
               TaskInstanceKey{active.run.dag_id, active.run.run_id, ti.task_id, ti.map_index,
                               at.task_try.try_number}
                   .ToString(),
               *at.task_try.reason);
  if (task && ti.try_number < ti.TriesAllowed()) {
    // Which retry this is: window kills and the tries before a clear do not count.
    const int retry = ti.try_number - ti.window_kills - (ti.max_tries - 1 - task->retries);
    ti.next_retry_at = now + RetryDelay(*task, retry);
    ti.waiting_reason = "retry " + std::to_string(ti.try_number + 1) + " at " + FormatRfc3339(*ti.next_retry_at);
    SetState(active, at.ti_index, TaskState::kUpForRetry);
  } else {
    ti.end_date = now;
    ti.waiting_reason.reset();
    SetState(active, at.ti_index, TaskState::kFailed);
  }
}

// ---------------------------------------------------------------------------------------------
// Runs

Status Scheduler::CreateRun(const Dag& dag, DagRun run, const std::vector<std::string>& only_tasks,
                            DagRun* created) {
  Dag snapshot = dag;
  if (!only_tasks.empty()) {
    // A set: `--task` may name thousands, each looked up once per task and per edge.
    const std::unordered_set<std::string_view> only(only_tasks.begin(), only_tasks.end());
    std::vector<Task> kept;
    for (const Task& t : dag.tasks) {
      if (only.count(t.task_id)) kept.push_back(t);
    }
    if (kept.size() < only.size()) {
      for (const std::string& id : only_tasks) {
        if (!dag.FindTask(id)) return Status::InvalidArgument("DAG " + dag.dag_id + " has no task \"" + id + "\"");
      }
    }
    for (Task& t : kept) {
      std::erase_if(t.depends_on, [&](const std::string& up) { return only.count(up) == 0; });
    }
    snapshot.tasks = std::move(kept);
  }
  run.dag_snapshot = SnapshotDag(snapshot);
  run.dag_id = dag.dag_id;
  run.state = RunState::kQueued;
  run.queued_at = clock_.Now();
  std::vector<TaskInstance> tis;
  for (const Task& t : snapshot.tasks) {
    TaskInstance ti;
    ti.task_id = t.task_id;
    ti.pool = t.pool;
    ti.priority_weight = t.priority_weight;
    ti.max_tries = t.retries + 1;
    // Items and chunks are known now: one instance each. `from` starts as one placeholder
    // (map_index -1) that expands when its upstream's output is there.
    std::optional<int64_t> count = StaticMapCount(t);
    if (!count) {
      tis.push_back(ti);
      continue;
    }
    for (int64_t i = 0; i < *count; ++i) {
      ti.map_index = static_cast<int>(i);
      tis.push_back(ti);
    }
  }
  if (Status s = store_.CreateRun(&run, &tis); !s.ok()) return s;
  ActiveRun active;
  active.run = run;
  active.dag = std::move(snapshot);
  active.params = RunParams(active.dag, run.conf);
  active.tis = std::move(tis);
  active.Index();
  runs_[run.id] = std::move(active);
  if (created) *created = run;
  spdlog::info("created run {}/{}", run.dag_id, run.run_id);
  return Status::OK();
}

Result<DagRun> Scheduler::TriggerRun(const std::string& dag_id, std::optional<std::string> run_id,
                                     std::optional<TimePoint> logical_date, const std::string& conf,
                                     const std::vector<std::string>& only_tasks) {
  auto dag_it = dags_.find(dag_id);
  if (dag_it == dags_.end()) return Status::NotFound("DAG \"" + dag_id + "\" not found");
  Result<json> parsed_conf = ParseJsonInput(conf.empty() ? "{}" : conf);
  if (!parsed_conf.ok()) return Status::InvalidArgument("conf is " + parsed_conf.status().message());
  const json& conf_json = *parsed_conf;
  if (!conf_json.is_object()) return Status::InvalidArgument("conf must be a JSON object");
  DagRun run;
  run.logical_date = logical_date.value_or(clock_.Now());
  run.run_id = run_id.value_or("manual__" + FormatRfc3339(run.logical_date));
  run.run_type = "manual";
  run.conf = DumpJson(conf_json);
  DagRun created;
  Status s = store_.InTransaction([&] { return CreateRun(dag_it->second, run, only_tasks, &created); });
  if (!s.ok()) return s;
  return created;
}

Status Scheduler::CreateScheduledRuns(TimePoint now) {
  for (const auto& [dag_id, dag] : dags_) {
    if (!dag.schedule) continue;
    auto paused = paused_.find(dag_id);
    if (paused == paused_.end() || paused->second) continue;  // unknown to the store yet, or paused
    auto last = last_scheduled_.find(dag_id);
    if (last == last_scheduled_.end()) continue;  // read by ReadStoreState
    for (const DataInterval& interval : DueIntervals(dag, last->second, now, options_.max_runs_created_per_pass)) {
      DagRun run;
      run.run_type = "scheduled";
      run.logical_date = interval.start;
      run.data_interval_start = interval.start;
      run.data_interval_end = interval.end;
      run.run_id = "scheduled__" + FormatRfc3339(interval.start);
      Status s = CreateRun(dag, run, {}, nullptr);
      if (!s.ok() && !s.IsAlreadyExists()) return s;
      last->second = interval.start;
    }
  }
  return Status::OK();
}

std::map<std::string, int> Scheduler::RunningRunsByDag() const {
  std::map<std::string, int> running;
  for (const auto& [run_pk, active] : runs_) {
    if (active.run.state == RunState::kRunning) ++running[active.run.dag_id];
  }
  return running;
}

void Scheduler::StartQueuedRuns(TimePoint now) {
  // Per DAG: how many runs are running, then promote the oldest queued ones up to the limit.
  std::map<std::string, int> running = RunningRunsByDag();
  std::vector<ActiveRun*> queued;
  for (auto& [run_pk, active] : runs_) {
    if (active.run.state == RunState::kQueued) queued.push_back(&active);
  }
  std::sort(queued.begin(), queued.end(), [](const ActiveRun* a, const ActiveRun* b) {
    return std::tie(a->run.logical_date, a->run.id) < std::tie(b->run.logical_date, b->run.id);
  });
  for (ActiveRun* active : queued) {
    if (running[active->run.dag_id] >= active->dag.max_active_runs) continue;
    ++running[active->run.dag_id];
    active->run.state = RunState::kRunning;
    active->run.start_date = now;
    active->run_dirty = true;
  }
}

void Scheduler::SetState(ActiveRun& active, size_t index, TaskState state) {
  TaskInstance& ti = active.tis[index];
  active.dirty.insert(index);
  const TaskState from = ti.state;
  if (from == state) return;
  if (!IsLegalTransition(from, state)) {
    // A bug in the scheduler, not something a user can cause: refused, so the database never
    // holds a state the table does not lead to; the tests fail on the count.
    ++metrics_.illegal_transitions;
    spdlog::error("{}/{}: illegal transition of {}[{}] from {} to {} refused", active.run.dag_id, active.run.run_id,
                  ti.task_id, ti.map_index, ToString(from), ToString(state));
    return;
  }
  const bool was_active = from == TaskState::kQueued || from == TaskState::kRunning;
  const bool is_active = state == TaskState::kQueued || state == TaskState::kRunning;
  if (was_active != is_active && !(was_active && LeavesWithoutASlot(active, index))) {
    CountSlot(active.run.dag_id, ti.pool, is_active ? 1 : -1);
  }
  if (from == TaskState::kScheduled) ready_.Remove(active.run.id, index);
  ti.state = state;
  active.Recount(index, from, state);
  if (state == TaskState::kUpForRetry) active.retries.emplace(ti.next_retry_at.value_or(TimePoint{}), index);
}

void Scheduler::CountSlot(const std::string& dag_id, const std::string& pool, int delta) {
  running_total_ += delta;
  running_by_dag_[dag_id] += delta;
  running_by_pool_[pool] += delta;
}

TriggerDecision Scheduler::Decide(const ActiveRun& active, const Task& task) const {
  // The upstream tasks' counters are summed as they change (ActiveRun::Recount); edges to
  // tasks outside a partial run count nothing.
  return EvaluateTriggerRule(task.trigger_rule, active.UpstreamOf(task.task_id));
}

ReadyEntry Scheduler::EntryFor(const ActiveRun& active, size_t index) {
  return ReadyEntry{-active.tis[index].priority_weight, active.run.logical_date, active.run.id, index};
}

void Scheduler::MakeReady(ActiveRun& active, size_t index, TimePoint now) {
  if (ready_.Contains(active.run.id, index)) return;
  const TaskInstance& ti = active.tis[index];
  ready_.Push(EntryFor(active, index));
  ready_since_.try_emplace(ti.id, now);
  fresh_ready_.emplace_back(active.run.id, index);
}

void Scheduler::ApplyDecision(ActiveRun& active, size_t index, const Task& task, TriggerDecision decision,
                              TimePoint now) {
  TaskInstance& ti = active.tis[index];
  switch (decision) {
    case TriggerDecision::kWait:
      // An upstream was cleared: what was ready waits again.
      if (ready_.Remove(active.run.id, index)) ready_since_.erase(ti.id);
      return;
    case TriggerDecision::kReady:
      if (task.map.kind == MapSpec::Kind::kFrom && ti.map_index < 0) {
        if (!ExpandFromOutput(active, index, task, now)) return;
        for (size_t j : active.InstancesOf(task.task_id)) {
          if (active.tis[j].state == TaskState::kScheduled) MakeReady(active, j, now);
        }
        return;
      }
      MakeReady(active, index, now);
      return;
    case TriggerDecision::kUpstreamFailed:
    case TriggerDecision::kSkipped:
      ti.end_date = now;
      ti.waiting_reason.reset();
      SetState(active, index,
               decision == TriggerDecision::kSkipped ? TaskState::kSkipped : TaskState::kUpstreamFailed);
      return;
  }
}

void Scheduler::EvaluateRun(ActiveRun& active, TimePoint now) {
  // Retries that came due wait again like any scheduled instance (SetState asks for them to
  // be evaluated).
  while (!active.retries.empty() && active.retries.begin()->first <= now) {
    const size_t i = active.retries.begin()->second;
    active.retries.erase(active.retries.begin());
    TaskInstance& ti = active.tis[i];
    if (ti.state != TaskState::kUpForRetry || (ti.next_retry_at && *ti.next_retry_at > now)) continue;
    ti.waiting_reason.reset();
    SetState(active, i, TaskState::kScheduled);
  }
  // Only what changed: tasks whose upstream counts moved, and single instances that wait
  // again. A decision is made per task from the counters (a mapped upstream of 100,000
  // instances costs the same as one), and applied to its instances only when it changed.
  while (!active.tasks_to_evaluate.empty() || !active.instances_to_evaluate.empty()) {
    if (!active.tasks_to_evaluate.empty()) {
      const std::string task_id = active.tasks_to_evaluate.begin()->second;
      active.tasks_to_evaluate.erase(active.tasks_to_evaluate.begin());
      TaskNode& node = active.nodes.at(task_id);
      const Task& task = active.dag.tasks[node.task_index];
      const TriggerDecision decision = Decide(active, task);
      if (node.applied == decision) continue;
      node.applied = decision;
      const std::vector<size_t> instances = node.instances;  // a `from` expansion appends
      for (size_t i : instances) {
        if (active.tis[i].state == TaskState::kScheduled) ApplyDecision(active, i, task, decision, now);
      }
      continue;
    }
    const size_t i = *active.instances_to_evaluate.begin();
    active.instances_to_evaluate.erase(active.instances_to_evaluate.begin());
    if (active.tis[i].state != TaskState::kScheduled) continue;
    const Task* task = active.TaskOf(active.tis[i]);
    if (task) ApplyDecision(active, i, *task, Decide(active, *task), now);
  }
}

const std::vector<std::string>* Scheduler::FromItems(ActiveRun& active, const Task& task) {
  auto cached = active.map_items.find(task.task_id);
  if (cached != active.map_items.end()) return &cached->second;
  if (!active.nodes.count(task.map.from)) return nullptr;
  std::vector<std::string> items;
  bool mapped_upstream = false;
  std::optional<std::string> single_output;
  for (size_t j : active.InstancesOf(task.map.from)) {
    const TaskInstance& u = active.tis[j];
    if (u.map_index >= 0) {
      mapped_upstream = true;
      items.push_back(u.output ? JsonToEnvValue(*u.output) : "null");
    } else {
      single_output = u.output;
    }
  }
  if (!mapped_upstream) {
    if (!single_output) return nullptr;
    auto parsed = ItemsFromOutput(task.map.from, *single_output);
    if (!parsed.ok()) return nullptr;
    items = std::move(*parsed);
  }
  return &(active.map_items[task.task_id] = std::move(items));
}

bool Scheduler::ExpandFromOutput(ActiveRun& active, size_t placeholder, const Task& task, TimePoint now) {
  auto fail = [&](TaskState state, std::string reason) {
    TaskInstance& ti = active.tis[placeholder];
    ti.end_date = now;
    ti.waiting_reason = std::move(reason);
    SetState(active, placeholder, state);
    return false;
  };
  // A mapped upstream's outputs are the list; an unmapped one's output must be a JSON array.
  bool upstream_has_output = false;
  for (size_t j : active.InstancesOf(task.map.from)) {
    const TaskInstance& u = active.tis[j];
    upstream_has_output = upstream_has_output || u.output.has_value() || u.map_index >= 0;
  }
  if (!upstream_has_output) return fail(TaskState::kFailed, "map from " + task.map.from + ": it wrote no output");
  const std::vector<std::string>* items = FromItems(active, task);
  if (!items) {
    std::string why = "map from " + task.map.from + ": its output is not a JSON array";
    for (size_t j : active.InstancesOf(task.map.from)) {
      if (active.tis[j].output) {
        auto parsed = ItemsFromOutput(task.map.from, *active.tis[j].output);
        if (!parsed.ok()) why = parsed.status().message();
      }
    }
    return fail(TaskState::kFailed, why);
  }
  if (items->empty()) return fail(TaskState::kSkipped, "map from " + task.map.from + ": the list is empty");
  TaskInstance first = active.tis[placeholder];
  active.tis[placeholder].map_index = 0;
  active.dirty.insert(placeholder);
  for (size_t k = 1; k < items->size(); ++k) {
    TaskInstance ti = first;
    ti.id = 0;
    ti.map_index = static_cast<int>(k);
    if (Status s = store_.InsertTaskInstance(&ti); !s.ok()) {
      spdlog::error("cannot expand {}: {}", task.task_id, s.ToString());
      return fail(TaskState::kFailed, "cannot expand the map: " + s.message());
    }
    active.AddInstance(std::move(ti));
  }
  spdlog::info("{}/{}: {} expanded to {} instances", active.run.dag_id, active.run.run_id, task.task_id, items->size());
  return true;
}

void Scheduler::EnforceTimeouts(ActiveRun& active, TimePoint now) {
  // execution_timeout: stop the try; the executor reports it finished and it fails.
  for (auto& [key, at] : active_tries_) {
    if (at.run_pk != active.run.id || at.cancel_reason || at.task_try.state != TaskState::kRunning) continue;
    const Task* task = active.TaskOf(active.tis[at.ti_index]);
    if (!task || !task->execution_timeout || !at.task_try.start_date) continue;
    if (now - *at.task_try.start_date >= *task->execution_timeout) {
      at.cancel_reason = "execution_timeout " + FormatDuration(*task->execution_timeout) + " exceeded";
      spdlog::warn("{}: {}", key.ToString(), *at.cancel_reason);
      Cancel(key);
    }
  }
  // dagrun_timeout: the run fails; what runs is stopped, what waits is skipped.
  if (active.dag.dagrun_timeout && active.run.start_date &&
      now - *active.run.start_date >= *active.dag.dagrun_timeout) {
    FailRun(active, "dagrun_timeout " + FormatDuration(*active.dag.dagrun_timeout) + " exceeded", now);
  }
}

void Scheduler::FailRun(ActiveRun& active, const std::string& reason, TimePoint now) {
  spdlog::warn("run {}/{}: {}", active.run.dag_id, active.run.run_id, reason);
  for (auto& [key, at] : active_tries_) {
    if (at.run_pk != active.run.id) continue;
    if (!at.cancel_reason) at.cancel_reason = reason;
    Cancel(key);
  }
  for (size_t i = 0; i < active.tis.size(); ++i) {
    TaskInstance& ti = active.tis[i];
    if (IsFinished(ti.state)) continue;
    const bool started = (ti.state == TaskState::kQueued || ti.state == TaskState::kRunning) && !WaitsForASlot(active, i);
    ti.end_date = now;
    ti.waiting_reason = reason;
    SetState(active, i, started ? TaskState::kFailed : TaskState::kSkipped);
  }
  active.run.state = RunState::kFailed;
  active.run.end_date = now;
  active.run_dirty = true;
  finished_runs_.push_back(active.run.id);
  if (!active.run.callback_done && active.dag.on_failure) {
    active.run.callback_done = true;
    RunCallback(active, "on_failure", *active.dag.on_failure);
  }
}

Status Scheduler::CancelRun(int64_t run_pk, const std::string& reason) {
  auto it = runs_.find(run_pk);
  if (it == runs_.end()) return Status::NotFound("run is not active");
  finished_runs_.clear();
  commands_.clear();
  FailRun(it->second, reason, clock_.Now());
  return CommitAction();
}

// ---------------------------------------------------------------------------------------------
// User actions (API): clear and mark

Result<ActiveRun*> Scheduler::Activate(const std::string& dag_id, const std::string& run_id) {
  auto run = store_.GetRun(dag_id, run_id);
  if (!run.ok()) return run.status();
  if (!run->has_value()) return Status::NotFound("DAG run \"" + run_id + "\" of DAG \"" + dag_id + "\" not found");
  auto it = runs_.find((*run)->id);
  if (it == runs_.end()) {
    if (Status s = LoadRun(**run); !s.ok()) return s;
    it = runs_.find((*run)->id);
  }
  return &it->second;
}

Status Scheduler::CommitAction() {
  Status s = store_.InTransaction([&] { return Persist(); });
  if (!s.ok()) {
    ReloadAfterFailedCommit();
    return s;
  }
  CarryOut(clock_.Now());
  for (int64_t pk : std::exchange(finished_runs_, {})) runs_.erase(pk);
  // Finished runs that an action only looked at need not stay in memory.
  for (auto it = runs_.begin(); it != runs_.end();) {
    it = IsFinished(it->second.run.state) ? runs_.erase(it) : std::next(it);
  }
  return Status::OK();
}

void Scheduler::StopTry(ActiveRun& active, size_t index, const std::string& reason) {
  const TaskInstance& ti = active.tis[index];
  TaskInstanceKey key{active.run.dag_id, active.run.run_id, ti.task_id, ti.map_index, ti.try_number};
  auto it = active_tries_.find(key);
  if (it == active_tries_.end()) return;
  if (!it->second.cancel_reason) it->second.cancel_reason = reason;
  Cancel(key);
}

Status Scheduler::ClearTask(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                            bool downstream) {
  auto active_or = Activate(dag_id, run_id);
  if (!active_or.ok()) return active_or.status();
  ActiveRun& active = **active_or;
  if (!active.nodes.count(task_id)) {
    return Status::NotFound("task \"" + task_id + "\" not found in run \"" + run_id + "\"");
  }
  std::set<std::string> targets{task_id};
  if (downstream) targets.merge(active.Downstream(task_id));
  for (const std::string& id : targets) {
    const Task* task = active.FindTask(id);
    for (size_t i : active.InstancesOf(id)) {
      TaskInstance& ti = active.tis[i];
      if (ti.state == TaskState::kQueued || ti.state == TaskState::kRunning) StopTry(active, i, "cleared");
      SetState(active, i, TaskState::kScheduled);
      ti.max_tries = ti.try_number + (task ? task->retries : 0) + 1;
      ti.window_kills = 0;
      cache_bypass_.insert(ti.id);  // a user asked for it to run again
      ti.start_date.reset();
      ti.end_date.reset();
      ti.next_retry_at.reset();
      ti.waiting_reason.reset();
      ti.progress.reset();
      ti.pid.reset();
      ti.cached = false;
      active.dirty.insert(i);
    }
  }
  if (active.run.state != RunState::kRunning) {
    active.run.state = RunState::kQueued;
    active.run.end_date.reset();
    active.run.callback_done = false;
    active.run_dirty = true;
  }
  spdlog::info("cleared {} in {}/{}", task_id + (downstream ? " and downstream" : ""), dag_id, run_id);
  return CommitAction();
}

Status Scheduler::MarkTask(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                           TaskState state) {
  if (state != TaskState::kSuccess && state != TaskState::kFailed) {
    return Status::InvalidArgument("a task can be marked success or failed");
  }
  auto active_or = Activate(dag_id, run_id);
  if (!active_or.ok()) return active_or.status();
  ActiveRun& active = **active_or;
  if (!active.nodes.count(task_id)) {
    return Status::NotFound("task \"" + task_id + "\" not found in run \"" + run_id + "\"");
  }
  const TimePoint now = clock_.Now();
  const std::string reason = "marked " + std::string(ToString(state)) + " by a user";
  for (size_t i : active.InstancesOf(task_id)) {
    TaskInstance& ti = active.tis[i];
    if (ti.state == TaskState::kQueued || ti.state == TaskState::kRunning) StopTry(active, i, reason);
    ti.end_date = now;
    ti.next_retry_at.reset();
    ti.waiting_reason.reset();
    ti.pid.reset();
    SetState(active, i, state);
  }
  // Downstream states that were only derived (never ran) are decided again from here.
  for (const std::string& id : active.Downstream(task_id)) {
    for (size_t i : active.InstancesOf(id)) {
      TaskInstance& ti = active.tis[i];
      if ((ti.state == TaskState::kUpstreamFailed || ti.state == TaskState::kSkipped) && ti.try_number == 0) {
        ti.end_date.reset();
        SetState(active, i, TaskState::kScheduled);
      }
    }
  }
  if (IsFinished(active.run.state)) {
    active.run.state = RunState::kRunning;
    active.run.end_date.reset();
    active.run.callback_done = false;
    active.run_dirty = true;
  }
  return CommitAction();
}

Status Scheduler::MarkRun(const std::string& dag_id, const std::string& run_id, RunState state) {
  if (state != RunState::kSuccess && state != RunState::kFailed) {
    return Status::InvalidArgument("a run can be marked success or failed");
  }
  auto active_or = Activate(dag_id, run_id);
  if (!active_or.ok()) return active_or.status();
  ActiveRun& active = **active_or;
  const TimePoint now = clock_.Now();
  const std::string reason = "run marked " + std::string(ToString(state)) + " by a user";
  for (size_t i = 0; i < active.tis.size(); ++i) {
    TaskInstance& ti = active.tis[i];
    if (IsFinished(ti.state)) continue;
    const bool started = ti.state == TaskState::kQueued || ti.state == TaskState::kRunning;
    if (started) StopTry(active, i, reason);
    ti.end_date = now;
    ti.waiting_reason.reset();
    ti.next_retry_at.reset();
    SetState(active, i,
             state == RunState::kSuccess ? TaskState::kSuccess
             : started                   ? TaskState::kFailed
                                         : TaskState::kSkipped);
  }
  active.run.state = state;
  active.run.end_date = now;
  if (!active.run.start_date) active.run.start_date = now;
  active.run.callback_done = true;  // a user's decision, not an outcome: no callback
  active.run_dirty = true;
  finished_runs_.push_back(active.run.id);
  return CommitAction();
}

void Scheduler::EnforceWindows(TimePoint now) {
  if (!options_.respect_windows) return;
  for (auto& [key, at] : active_tries_) {
    if (at.cancel_reason) continue;
    auto run_it = runs_.find(at.run_pk);
    if (run_it == runs_.end()) continue;
    const Task* task = run_it->second.TaskOf(run_it->second.tis[at.ti_index]);
    if (!task) continue;
    std::optional<std::string> name = WindowOf(run_it->second, *task);
    if (!name) continue;
    auto w = options_.windows.find(*name);
    if (w == options_.windows.end() || w->second.on_close() != OnClose::kKill || w->second.IsOpen(now)) continue;
    at.cancel_reason = WindowClosedReason(*name, w->second, now);
    at.window_kill = true;
    spdlog::info("{}: {}; stopping it", key.ToString(), *at.cancel_reason);
    Cancel(key);
  }
}

void Scheduler::FinishRunIfDone(ActiveRun& active, TimePoint now) {
  if (active.counts.Finished() != active.counts.total) return;
  bool failed = false;
  for (const std::string& leaf : active.leaves) {
    auto node = active.nodes.find(leaf);
    if (node == active.nodes.end()) continue;
    const StateCounts& c = node->second.counts;
    failed = failed || c.Of(TaskState::kFailed) + c.Of(TaskState::kUpstreamFailed) > 0;
  }
  active.run.state = failed ? RunState::kFailed : RunState::kSuccess;
  active.run.end_date = now;
  active.run_dirty = true;
  finished_runs_.push_back(active.run.id);
  spdlog::info("run {}/{} {}", active.run.dag_id, active.run.run_id, ToString(active.run.state));
  const std::optional<std::string>& callback = failed ? active.dag.on_failure : active.dag.on_success;
  if (!active.run.callback_done && callback) {
    // Marked done in the same transaction that ends the run: a crash right after the commit
    // skips the callback rather than running it twice.
    active.run.callback_done = true;
    RunCallback(active, failed ? "on_failure" : "on_success", *callback);
  }
}

void Scheduler::RunCallback(ActiveRun& active, const std::string& name, const std::string& command) {
  TaskInstance pseudo;
  pseudo.task_id = name;
  TaskSpec spec =
      MakeSpec(active, pseudo, TryFiles::ForCallback(options_.logs_dir, active.run.dag_id, active.run.run_id, name).log);
  spec.command = command;
  spec.cwd = std::filesystem::path(active.dag.file_path).parent_path().string();
  if (spec.cwd.empty()) spec.cwd = ".";
  spec.env["NIGHTSHIFT_RUN_STATE"] = std::string(ToString(active.run.state));
  SchedulerCommand submit;
  submit.kind = SchedulerCommand::Kind::kSubmit;
  submit.spec = std::move(spec);
  commands_.push_back(std::move(submit));
}

// ---------------------------------------------------------------------------------------------
// Dispatch

void Scheduler::SetWaitingReason(ActiveRun& active, size_t index, std::optional<std::string> reason) {
  TaskInstance& ti = active.tis[index];
  if (ti.waiting_reason == reason) return;
  ti.waiting_reason = std::move(reason);
  active.dirty.insert(index);
}

void Scheduler::Dispatch(TimePoint now) {
  // Each window is judged once per pass: the reason when it is closed, nullopt when open.
  std::map<std::string, std::optional<std::string>> window_closed;
  auto closed_reason = [&](const std::string& name) -> const std::optional<std::string>& {
    auto [it, inserted] = window_closed.try_emplace(name);
    if (inserted && options_.respect_windows) {
      auto w = options_.windows.find(name);
      if (w != options_.windows.end() && !w->second.IsOpen(now)) it->second = WindowClosedReason(name, w->second, now);
    }
    return it->second;
  };
  // What waited for a window that is open now may start.
  for (const std::string& name : ready_.ParkedWindows()) {
    if (!closed_reason(name)) ready_.Unpark(name);
  }
  // From the front, until parallelism is used up: a pass costs what it starts plus what it
  // steps over (limits of a DAG or pool), never the whole backlog.
  std::set<std::pair<int64_t, size_t>> blocked;  // stepped over above, with their own reason
  const ReadyQueue::Queue& queue = ready_.queue();
  for (auto it = queue.begin(); it != queue.end() && running_total_ < options_.parallelism;) {
    const ReadyEntry entry = *it++;  // advance first: the entry may leave the queue below
    auto run_it = runs_.find(entry.run_pk);
    if (run_it == runs_.end()) {
      ready_.Remove(entry.run_pk, entry.index);
      continue;
    }
    ActiveRun& active = run_it->second;
    if (active.run.state != RunState::kRunning) continue;
    TaskInstance& ti = active.tis[entry.index];
    const Task* task = active.TaskOf(ti);
    if (!task || ti.state != TaskState::kScheduled) {
      ready_.Remove(entry.run_pk, entry.index);
      continue;
    }
    if (std::optional<std::string> window = WindowOf(active, *task)) {
      if (const std::optional<std::string>& closed = closed_reason(*window)) {
        SetWaitingReason(active, entry.index, *closed);
        ready_.Park(entry, *window);
        blocked.emplace(entry.run_pk, entry.index);
        continue;
      }
    }
    int& dag_running = running_by_dag_[active.run.dag_id];
    if (dag_running >= active.dag.max_active_tasks) {
      SetWaitingReason(active, entry.index, "max_active_tasks reached (" + std::to_string(dag_running) + "/" +
                                                std::to_string(active.dag.max_active_tasks) + ")");
      blocked.emplace(entry.run_pk, entry.index);
      continue;
    }
    auto pool_size = options_.pools.find(ti.pool);
    const int pool_used = running_by_pool_[ti.pool];
    if (pool_size != options_.pools.end() && pool_used >= pool_size->second) {
      SetWaitingReason(active, entry.index, "pool " + ti.pool + " full (" + std::to_string(pool_used) + "/" +
                                                std::to_string(pool_size->second) + ")");
      blocked.emplace(entry.run_pk, entry.index);
      continue;
    }
    Start(active, entry.index, *task, now);
  }
  // What became ready this pass and could not start says why (what waited before keeps its
  // reason: parallelism is reached in the same way pass after pass).
  if (running_total_ >= options_.parallelism) {
    const std::string reason = "parallelism reached (" + std::to_string(running_total_) + "/" +
                               std::to_string(options_.parallelism) + ")";
    for (const auto& [run_pk, index] : fresh_ready_) {
      auto run_it = runs_.find(run_pk);
      if (run_it == runs_.end() || !ready_.Contains(run_pk, index) || blocked.count({run_pk, index})) continue;
      ActiveRun& active = run_it->second;
      const Task* task = active.TaskOf(active.tis[index]);
      if (!task || active.tis[index].state != TaskState::kScheduled) continue;
      std::optional<std::string> window = WindowOf(active, *task);
      if (window && closed_reason(*window)) {
        SetWaitingReason(active, index, *closed_reason(*window));
        ready_.Park(EntryFor(active, index), *window);
      } else {
        SetWaitingReason(active, index, reason);
      }
    }
  }
  fresh_ready_.clear();
  AssignStandbys(now);
}

void Scheduler::Start(ActiveRun& active, size_t index, const Task& task, TimePoint now) {
  // Queued and its try recorded in this pass's transaction, submitted after it.
  TaskInstance& ti = active.tis[index];
  ti.try_number += 1;
  ti.queued_at = now;
  ti.waiting_reason.reset();
  ti.progress.reset();
  SetState(active, index, TaskState::kQueued);
  ActiveTry at;
  at.run_pk = active.run.id;
  at.ti_index = index;
  at.task_try.ti_pk = ti.id;
  at.task_try.try_number = ti.try_number;
  at.task_try.state = TaskState::kQueued;
  at.task_try.log_path = LogPath(active, ti, ti.try_number);
  at.dirty = true;
  TaskInstanceKey key{active.run.dag_id, active.run.run_id, ti.task_id, ti.map_index, ti.try_number};
  TaskSpec spec = MakeSpec(active, ti, at.task_try.log_path);
  // A cache hit finishes the instance at once (TryCache sets it success): nothing runs.
  if (!task.cache.enabled || !TryCache(active, index, task, spec, at, now)) {
    SchedulerCommand submit;
    submit.kind = SchedulerCommand::Kind::kSubmit;
    submit.spec = std::move(spec);
    commands_.push_back(std::move(submit));
  }
  active_tries_[key] = std::move(at);
}

bool Scheduler::TryCache(ActiveRun& active, size_t index, const Task& task, const TaskSpec& spec, ActiveTry& at,
                         TimePoint now) {
  TaskInstance& ti = active.tis[index];
  const bool bypass = cache_bypass_.erase(ti.id) > 0 || !options_.use_cache;
  // Its input files are written after the commit: their content is in this pass's commands.
  // MakeSpec has just asked for them, last.
  std::map<std::string, std::string_view> unwritten;
  for (auto it = commands_.rbegin(); it != commands_.rend(); ++it) {
    if (it->kind != SchedulerCommand::Kind::kWriteFile || it->key != spec.key) break;
    unwritten[it->path] = it->content;
  }
  auto key = ComputeCacheKey(task.cache, spec, unwritten);
  if (!key.ok()) {
    spdlog::warn("{}: no cache key ({}); running it", spec.key.ToString(), key.status().message());
    return false;
  }
  at.task_try.cache_key = *key;
  if (bypass) return false;
  auto hit = store_.LatestCachedResult(active.run.dag_id, ti.task_id, ti.map_index);
  if (!hit.ok() || !hit->has_value() || (*hit)->cache_key != *key) return false;
  std::string missing;
  if (!CacheOutputsPresent(task.cache, spec.cwd, &missing)) return false;
  // A hit: the instance succeeds without running; its log says why and its output is reused.
  SchedulerCommand log;
  log.kind = SchedulerCommand::Kind::kWriteFile;
  log.key = spec.key;
  log.path = spec.log_path;
  log.content = "nightshift: cache hit, not run. Cache key " + *key + " equals the key of try " +
                std::to_string((*hit)->try_number) + " of run " + (*hit)->run_id +
                ", and every declared output exists.\n";
  commands_.push_back(std::move(log));
  at.task_try.state = TaskState::kSuccess;
  at.task_try.start_date = now;
  at.task_try.end_date = now;
  at.task_try.exit_code = 0;
  ti.cached = true;
  ti.output = (*hit)->output;
  ti.start_date = now;
  ti.end_date = now;
  ti.progress = 1.0;
  SetState(active, index, TaskState::kSuccess);
  spdlog::info("{}: cache hit", spec.key.ToString());
  return true;
}

std::string Scheduler::LogPath(const ActiveRun& active, const TaskInstance& ti, int try_number) const {
  return TryFiles::For(options_.logs_dir, TryId{active.run.dag_id, active.run.run_id, ti.task_id, ti.map_index,
                                                  try_number})
      .log;
}

TaskSpec Scheduler::MakeSpec(ActiveRun& active, const TaskInstance& ti, const std::string& log_path) {
  TaskSpec spec;
  spec.key = {active.run.dag_id, active.run.run_id, ti.task_id, ti.map_index, ti.try_number};
  spec.log_path = log_path;
  spec.journal_path = TryJournalPath(options_.logs_dir, active.run.dag_id, active.run.run_id);
  spec.output_path = TryFiles::OfLog(log_path).output;
  const Task* task = active.TaskOf(ti);
  std::filesystem::path dag_dir = std::filesystem::path(active.dag.file_path).parent_path();
  if (task) {
    spec.command = task->command;
    std::filesystem::path cwd(task->cwd);
    spec.cwd = (cwd.is_absolute() ? cwd : dag_dir / cwd).lexically_normal().string();
  }
  if (spec.cwd.empty()) spec.cwd = ".";
  // Empty: the daemon's default executor. Callbacks (no task) always run on this machine.
  spec.executor = task ? task->executor.value_or("") : "local";
  spec.slurm = active.dag.slurm;
  spec.limits = task ? options_.limits.OverriddenBy(task->limits) : options_.limits;
  if (task) {
    const SlurmTaskOptions& own = task->slurm;
    if (own.partition) spec.slurm.partition = own.partition;
    if (own.cpus_per_task) spec.slurm.cpus_per_task = own.cpus_per_task;
    if (own.mem) spec.slurm.mem = own.mem;
    if (own.time) spec.slurm.time = own.time;
    if (own.gres) spec.slurm.gres = own.gres;
    spec.slurm.extra_args.insert(spec.slurm.extra_args.end(), own.extra_args.begin(), own.extra_args.end());
    spec.slurm.array = spec.slurm.array || own.array;
  }
  for (const auto& [k, v] : active.dag.env) spec.env[k] = v;
  if (task) {
    for (const auto& [k, v] : task->env) spec.env[k] = v;
  }
  // Params, then the trigger's conf over them; they reach the task only as variables.
  for (const auto& [k, v] : active.params) spec.env["NIGHTSHIFT_PARAM_" + UpperEnvName(k)] = v;
  spec.env["NIGHTSHIFT_DAG_ID"] = active.run.dag_id;
  spec.env["NIGHTSHIFT_RUN_ID"] = active.run.run_id;
  spec.env["NIGHTSHIFT_TASK_ID"] = ti.task_id;
  spec.env["NIGHTSHIFT_TRY_NUMBER"] = std::to_string(ti.try_number);
  spec.env["NIGHTSHIFT_LOGICAL_DATE"] = FormatRfc3339(active.run.logical_date);
  spec.env["NIGHTSHIFT_DS"] = DateInZone(active.run.logical_date, active.dag.timezone);
  spec.env["NIGHTSHIFT_OUTPUT"] = spec.output_path;
  if (task && ti.map_index >= 0) {
    spec.env["NIGHTSHIFT_MAP_INDEX"] = std::to_string(ti.map_index);
    const size_t index = static_cast<size_t>(ti.map_index);
    if (task->map.kind == MapSpec::Kind::kItems && index < task->map.items.size()) {
      spec.env["NIGHTSHIFT_MAP_ITEM"] = task->map.items[index];
    } else if (task->map.kind == MapSpec::Kind::kRange) {
      auto [start, end] = ChunkBounds(task->map.range, task->map.chunk, ti.map_index);
      spec.env["NIGHTSHIFT_CHUNK_START"] = std::to_string(start);
      spec.env["NIGHTSHIFT_CHUNK_END"] = std::to_string(end);
    } else if (task->map.kind == MapSpec::Kind::kFrom) {
      const std::vector<std::string>* items = FromItems(active, *task);
      if (items && index < items->size()) spec.env["NIGHTSHIFT_MAP_ITEM"] = (*items)[index];
    }
  }
  // Upstream outputs: the value, or for a mapped upstream a JSON array in map order. A value
  // too big for one environment variable (Linux allows 128 KiB) goes to a file instead,
  // named by NIGHTSHIFT_INPUT_<UPSTREAM>_FILE.
  if (task) {
    for (const std::string& up : task->depends_on) {
      std::optional<std::string> value;
      std::vector<std::pair<int, const TaskInstance*>> mapped;
      for (size_t j : active.InstancesOf(up)) {
        const TaskInstance& u = active.tis[j];
        if (u.map_index >= 0) {
          mapped.emplace_back(u.map_index, &u);
        } else if (u.output) {
          value = u.output;
        }
      }
      if (!mapped.empty()) {
        std::sort(mapped.begin(), mapped.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        std::string array = "[";
        for (const auto& [index, u] : mapped) {
          if (array.size() > 1) array += ",";
          array += u->output.value_or("null");
        }
        value = array + "]";
      }
      if (!value) continue;
      const std::string name = "NIGHTSHIFT_INPUT_" + UpperEnvName(up);
      if (value->size() <= 120 * 1024) {
        spec.env[name] = *value;
      } else {
        // Written after the commit, before the try is submitted.
        SchedulerCommand write;
        write.kind = SchedulerCommand::Kind::kWriteFile;
        write.key = spec.key;
        write.path = TryFiles::OfLog(log_path).Input(up);
        write.content = std::move(*value);
        write.needed_to_start = true;
        spec.env[name + "_FILE"] = write.path;
        commands_.push_back(std::move(write));
      }
    }
  }
  return spec;
}

// ---------------------------------------------------------------------------------------------
// Helpers

std::optional<std::string> Scheduler::WindowOf(const ActiveRun& active, const Task& task) const {
  if (task.window) return task.window;
  return active.dag.window;
}

RunProgress RunProgress::Of(const StateCounts& c) {
  RunProgress p;
  p.total = c.total;
  p.done = c.Finished();
  p.running = c.Active();
  p.failed = c.Of(TaskState::kFailed) + c.Of(TaskState::kUpstreamFailed);
  p.success = c.Of(TaskState::kSuccess);
  return p;
}

RunProgress RunProgress::Of(std::span<const TaskInstance> task_instances) {
  StateCounts counts;
  for (const TaskInstance& ti : task_instances) counts.Add(ti.state, 1);
  return Of(counts);
}

std::optional<RunProgress> Scheduler::Progress(int64_t run_pk) const {
  auto it = runs_.find(run_pk);
  if (it == runs_.end()) return std::nullopt;
  return RunProgress::Of(it->second.counts);
}

std::optional<TimePoint> Scheduler::NextWake(TimePoint now) const {
  std::optional<TimePoint> next;
  auto consider = [&](std::optional<TimePoint> t) {
    if (t && (!next || *t < *next)) next = std::max(*t, now);
  };
  if (!submit_failures_.empty()) consider(now);
  // A stop the executor refused is asked again, a second later rather than in a tight loop.
  if (!cancels_to_retry_.empty()) consider(now + std::chrono::seconds(1));
  if (options_.create_scheduled_runs) {
    for (const auto& [dag_id, dag] : dags_) {
      auto paused = paused_.find(dag_id);
      if (paused != paused_.end() && !paused->second) consider(NextIntervalEnd(dag, now));
    }
  }
  // Windows matter to what waits parked for one to open and to running tries a closing one
  // stops; nothing else needs a pass when a window changes.
  std::vector<std::string> parked = ready_.ParkedWindows();
  std::set<std::string> windows_in_use(parked.begin(), parked.end());
  // A run that ended in this pass (after its queued successors were looked at) may have freed
  // room under max_active_runs: the next pass, which starts them, is due now. Nothing else may
  // come to wake it: their tasks have not started.
  const std::map<std::string, int> running_runs = RunningRunsByDag();
  for (const auto& [run_pk, active] : runs_) {
    if (active.run.state == RunState::kQueued) {
      auto running = running_runs.find(active.run.dag_id);
      if (running == running_runs.end() || running->second < active.dag.max_active_runs) consider(now);
    }
    if (active.dag.dagrun_timeout && active.run.start_date) {
      consider(*active.run.start_date + *active.dag.dagrun_timeout);
    }
    if (!active.retries.empty()) consider(active.retries.begin()->first);
    // Left to evaluate (a cache hit or a user action changed states after this pass's
    // evaluation): the next pass is due now.
    if (active.run.state == RunState::kRunning &&
        (!active.tasks_to_evaluate.empty() || !active.instances_to_evaluate.empty())) {
      consider(now);
    }
  }
  for (const auto& [key, at] : active_tries_) {
    auto run_it = runs_.find(at.run_pk);
    if (run_it == runs_.end()) continue;
    const Task* task = run_it->second.TaskOf(run_it->second.tis[at.ti_index]);
    if (!task) continue;
    if (auto w = WindowOf(run_it->second, *task)) windows_in_use.insert(*w);
    // A try already asked to stop needs no pass for its timeout (it would be due at once, again
    // and again, until the try ends).
    if (task->execution_timeout && at.task_try.start_date && !at.cancel_reason) {
      consider(*at.task_try.start_date + *task->execution_timeout);
    }
  }
  if (options_.respect_windows) {
    for (const std::string& name : windows_in_use) {
      auto w = options_.windows.find(name);
      if (w != options_.windows.end()) consider(w->second.NextChange(now));
    }
  }
  return next;
}

}  // namespace nightshift

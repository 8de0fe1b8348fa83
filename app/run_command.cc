#include "app/run_command.h"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <set>
#include <thread>

#include "app/progress_bar.h"
#include "app/state_dir.h"
#include "dags/dag_loader.h"
#include "executor/local_executor.h"
#include "executor/routing_executor.h"
#include "executor/slurm_executor.h"
#include "scheduler/dag_registry.h"
#include "scheduler/json_input.h"
#include "scheduler/scheduler.h"
#include "scheduler/scheduler_loop.h"

namespace nightshift {
namespace {

namespace net = boost::asio;
using SteadyClock = std::chrono::steady_clock;

// Draws the run's progress: a bar redrawn in place on a terminal, a line per finished task
// otherwise (so logs and CI output stay readable). Counts come from the scheduler's memory;
// the per-task lines read the database, at most once a second, and only for runs small
// enough to list (a 100,000-instance run prints a summary line instead).
class ProgressDisplay {
 public:
  ProgressDisplay(Store& store, const Scheduler& scheduler, int64_t run_pk)
      : store_(store), scheduler_(scheduler), run_pk_(run_pk), tty_(isatty(STDOUT_FILENO)) {}

  void Update(bool final) {
    auto now = SteadyClock::now();
    if (!final && now - last_draw_ < std::chrono::milliseconds(tty_ ? 100 : 1000)) return;
    last_draw_ = now;
    std::optional<RunProgress> p = scheduler_.Progress(run_pk_);
    if (!p || final) p = FromStore();
    if (!p) return;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    if (!tty_ && p->total <= kMaxListed) PrintFinishedTasks();
    if (tty_) {
      std::printf("\r\033[K%s", ProgressBarLine(p->done, p->total, p->running, p->failed, elapsed).c_str());
      if (final) std::printf("\n");
    } else if (final || p->total > kMaxListed) {
      std::printf("%d/%d done, %d running, %d failed, %.1fs\n", p->done, p->total, p->running, p->failed, elapsed);
    }
    std::fflush(stdout);
  }

 private:
  static constexpr int kMaxListed = 2000;

  std::optional<RunProgress> FromStore() {
    auto tis = store_.ListTaskInstances(run_pk_);
    if (!tis.ok()) return std::nullopt;
    return RunProgress::Of(*tis);
  }

  void PrintFinishedTasks() {
    auto tis = store_.ListTaskInstances(run_pk_);
    if (!tis.ok()) return;
    for (const TaskInstance& ti : *tis) {
      if (!IsFinished(ti.state) || !printed_.insert(ti.id).second) continue;
      std::string name = ti.task_id + (ti.map_index >= 0 ? "[" + std::to_string(ti.map_index) + "]" : "");
      std::printf("%-32s %s (try %d)%s\n", name.c_str(), std::string(ToString(ti.state)).c_str(), ti.try_number,
                  ti.cached ? " cached" : "");
    }
  }

  Store& store_;
  const Scheduler& scheduler_;
  int64_t run_pk_;
  bool tty_;
  SteadyClock::time_point start_ = SteadyClock::now();
  SteadyClock::time_point last_draw_{};
  std::set<int64_t> printed_;
};

}  // namespace

int RunDagOnce(const RunCommandOptions& options, const Config& config) {
  // The progress display is the output here; the scheduler's own log says only what went wrong.
  spdlog::set_level(spdlog::level::warn);
  DagLoadResult loaded = LoadDagFile(options.dag_file, MakeDagLoadContext(config));
  if (!loaded.dag) {
    for (const ImportError& e : loaded.errors) std::fprintf(stderr, "%s\n", FormatImportError(e).c_str());
    return 2;
  }
  Dag dag = std::move(*loaded.dag);
  for (const std::string& id : options.tasks) {
    if (!dag.FindTask(id)) {
      std::fprintf(stderr, "%s: no task \"%s\" in DAG %s\n", options.dag_file.c_str(), id.c_str(), dag.dag_id.c_str());
      return 2;
    }
  }

  StateDirLock lock;
  if (Status s = lock.Acquire(options.state_dir); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 2;
  }
  auto store = OpenSqliteStore(options.state_dir + "/state.db");
  if (!store.ok() || !(*store)->Migrate().ok()) {
    std::fprintf(stderr, "cannot open state in %s: %s\n", options.state_dir.c_str(),
                 store.ok() ? "migration failed" : store.status().ToString().c_str());
    return 2;
  }
  DagRecord record;
  record.dag_id = dag.dag_id;
  record.fileloc = dag.file_path;
  if (Status s = (*store)->UpsertDag(record); !s.ok()) {
    std::fprintf(stderr, "cannot record DAG: %s\n", s.ToString().c_str());
    return 2;
  }

  const int parallelism = options.parallelism > 0
                              ? options.parallelism
                              : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  SchedulerOptions scheduler_options = SchedulerOptions::FromConfig(config);
  scheduler_options.create_scheduled_runs = false;
  scheduler_options.respect_windows = options.respect_windows;
  scheduler_options.use_cache = !options.no_cache;
  scheduler_options.parallelism = parallelism;
  scheduler_options.logs_dir = std::filesystem::absolute(options.state_dir + "/logs").lexically_normal().string();

  net::io_context io;
  SystemClock clock;
  bool uses_slurm = config.executor == "slurm";
  for (const Task& task : dag.tasks) uses_slurm = uses_slurm || task.executor == "slurm";
  const std::string dag_id = dag.dag_id;
  std::map<std::string, Dag> dags;
  dags.emplace(dag_id, std::move(dag));  // not copied: a DAG may have 100,000 tasks
  std::function<void()> wake;
  LocalExecutorOptions executor_options;
  executor_options.slots = static_cast<size_t>(parallelism) + 4;  // callbacks need room too
  executor_options.kill_grace = config.kill_grace;
  executor_options.fence_path = options.state_dir + "/standby.fence";
  LocalExecutor local_executor(io, executor_options, [&] { if (wake) wake(); });
  std::map<std::string, Executor*> executors{{"local", &local_executor}};
  // Slurm only when this DAG or the config asks for it: a plain run starts no extra threads.
  std::optional<SlurmExecutor> slurm_executor;
  if (uses_slurm) {
    SlurmExecutorOptions slurm_options;
    slurm_options.slurm = config.slurm;
    slurm_options.clock = &clock;
    slurm_options.kill_grace = config.kill_grace;
    slurm_options.warn = [](const std::string& message) { spdlog::warn("slurm: {}", message); };
    slurm_executor.emplace(io, slurm_options, [&] { if (wake) wake(); });
    executors["slurm"] = &*slurm_executor;
  }
  RoutingExecutor executor(config.executor, executors);
  Scheduler scheduler(scheduler_options, **store, executor, clock, dags);
  SchedulerLoop loop(io, scheduler, clock);
  wake = [&] { loop.Wake(); };
  if (Status s = scheduler.Recover(); !s.ok()) {
    std::fprintf(stderr, "cannot recover state: %s\n", s.ToString().c_str());
    return 2;
  }

  nlohmann::json conf = nlohmann::json::object();
  for (const auto& [k, v] : options.params) conf[k] = v;
  // DumpJson: a --param byte that is not UTF-8 becomes U+FFFD instead of throwing.
  auto run = scheduler.TriggerRun(dag_id, std::nullopt, std::nullopt, DumpJson(conf), options.tasks);
  if (!run.ok()) {
    std::fprintf(stderr, "cannot start run: %s\n", run.status().ToString().c_str());
    return 2;
  }
  ProgressDisplay progress(**store, scheduler, run->id);
  loop.set_after_pass([&] {
    progress.Update(false);
    if (!scheduler.IsActive(run->id) && scheduler.ActiveTries() == 0) {
      loop.Stop();
      io.stop();
    }
  });

  // Ctrl-C: the run fails, its running tasks are stopped, and we exit once they have ended.
  net::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    std::fprintf(stderr, "\ninterrupted (signal %d): stopping the run\n", signo);
    scheduler.StopDispatching();
    // NotFound: the run ended before the signal arrived, and the loop stops on its own.
    if (Status s = scheduler.CancelRun(run->id, "interrupted"); !s.ok() && !s.IsNotFound()) {
      std::fprintf(stderr, "cannot stop the run: %s\n", s.ToString().c_str());
    }
    loop.Wake();
  });

  loop.Wake();
  io.run();
  progress.Update(true);
  auto final_run = (*store)->GetRunById(run->id);
  if (!final_run.ok() || !final_run->has_value()) return 1;
  const DagRun& r = **final_run;
  std::printf("run %s of %s: %s\n", r.run_id.c_str(), r.dag_id.c_str(), std::string(ToString(r.state)).c_str());
  return r.state == RunState::kSuccess ? 0 : 1;
}

}  // namespace nightshift

#include "app/run_command.h"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <thread>

#include "app/state_dir.h"
#include "dags/dag_loader.h"
#include "executor/local_executor.h"
#include "scheduler/dag_registry.h"
#include "scheduler/scheduler.h"
#include "scheduler/scheduler_loop.h"

namespace nightshift {
namespace {

namespace net = boost::asio;
using SteadyClock = std::chrono::steady_clock;

// Draws the run's progress: a bar redrawn in place on a terminal, a line per finished task
// otherwise (so logs and CI output stay readable).
class ProgressDisplay {
 public:
  ProgressDisplay(Store& store, int64_t run_pk) : store_(store), run_pk_(run_pk), tty_(isatty(STDOUT_FILENO)) {}

  void Update(bool final) {
    auto now = SteadyClock::now();
    if (!final && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    auto tis = store_.ListTaskInstances(run_pk_);
    if (!tis.ok()) return;
    int total = 0, done = 0, running = 0, failed = 0;
    for (const TaskInstance& ti : *tis) {
      ++total;
      if (IsFinished(ti.state)) ++done;
      if (ti.state == TaskState::kRunning || ti.state == TaskState::kQueued) ++running;
      if (ti.state == TaskState::kFailed || ti.state == TaskState::kUpstreamFailed) ++failed;
      std::string name = ti.task_id + (ti.map_index >= 0 ? "[" + std::to_string(ti.map_index) + "]" : "");
      auto [it, inserted] = last_state_.emplace(name, ti.state);
      bool changed = inserted || it->second != ti.state;
      it->second = ti.state;
      if (!tty_ && changed && IsFinished(ti.state)) {
        std::printf("%-32s %s (try %d)\n", name.c_str(), std::string(ToString(ti.state)).c_str(), ti.try_number);
      }
      if (tty_ && changed && ti.state == TaskState::kFailed) {
        std::printf("\r\033[K%s failed (try %d)\n", name.c_str(), ti.try_number);
      }
    }
    double elapsed = std::chrono::duration<double>(now - start_).count();
    if (tty_) {
      constexpr int kWidth = 30;
      int filled = total ? done * kWidth / total : 0;
      // Time left, assuming the rest goes at the pace so far.
      std::string eta;
      if (done > 0 && done < total) {
        eta = ", ~" + std::to_string(static_cast<int>(elapsed / done * (total - done) + 0.5)) + "s left";
      }
      std::printf("\r\033[K[%s%s] %d/%d done, %d running, %d failed, %.1fs%s", std::string(filled, '#').c_str(),
                  std::string(kWidth - filled, '.').c_str(), done, total, running, failed, elapsed, eta.c_str());
      if (final) std::printf("\n");
    } else if (final) {
      std::printf("%d/%d done, %d failed, %.1fs\n", done, total, failed, elapsed);
    }
    std::fflush(stdout);
  }

 private:
  Store& store_;
  int64_t run_pk_;
  bool tty_;
  SteadyClock::time_point start_ = SteadyClock::now();
  SteadyClock::time_point last_draw_{};
  std::map<std::string, TaskState> last_state_;
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
  std::map<std::string, Dag> dags{{dag.dag_id, dag}};
  std::function<void()> wake;
  LocalExecutorOptions executor_options;
  executor_options.slots = static_cast<size_t>(parallelism) + 4;  // callbacks need room too
  executor_options.kill_grace = config.kill_grace;
  LocalExecutor executor(io, executor_options, [&] { if (wake) wake(); });
  Scheduler scheduler(scheduler_options, **store, executor, clock, dags);
  SchedulerLoop loop(io, scheduler, clock);
  wake = [&] { loop.Wake(); };
  if (Status s = scheduler.Recover(); !s.ok()) {
    std::fprintf(stderr, "cannot recover state: %s\n", s.ToString().c_str());
    return 2;
  }

  nlohmann::json conf = nlohmann::json::object();
  for (const auto& [k, v] : options.params) conf[k] = v;
  auto run = scheduler.TriggerRun(dag.dag_id, std::nullopt, std::nullopt, conf.dump(), options.tasks);
  if (!run.ok()) {
    std::fprintf(stderr, "cannot start run: %s\n", run.status().ToString().c_str());
    return 2;
  }
  ProgressDisplay progress(**store, run->id);
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
    scheduler.CancelRun(run->id, "interrupted");
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

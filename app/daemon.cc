#include "app/daemon.h"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <spdlog/spdlog.h>
#include <thread>

#include "app/api_token.h"
#include "app/config.h"
#include "app/state_dir.h"
#include "dags/dag_loader.h"
#include "executor/local_executor.h"
#include "executor/routing_executor.h"
#include "executor/slurm_executor.h"
#include "scheduler/dag_registry.h"
#include "scheduler/scheduler.h"
#include "scheduler/retention.h"
#include "scheduler/scheduler_loop.h"
#include "store/store.h"
#include "web/http_server.h"
#include "web/published.h"
#include "web/router.h"

namespace nightshift {
namespace {

namespace net = boost::asio;

// How often the DAGs folder is checked for changed files: a stat per file, cheap. This is not
// how work is scheduled (the loop wakes on events); it only notices edits.
constexpr auto kDagRescanInterval = std::chrono::seconds(2);
// Retention runs at start and then this often.
constexpr auto kRetentionInterval = std::chrono::hours(1);

void LogDags(const DagRegistry& registry) {
  for (const auto& [dag_id, dag] : registry.dags()) {
    spdlog::info("DAG {} ({} tasks, schedule {}) from {}", dag_id, dag.tasks.size(), dag.schedule.value_or("none"),
                 dag.file_path);
  }
  for (const ImportError& error : registry.import_errors()) {
    spdlog::warn("import error: {}", FormatImportError(error));
  }
}

// The HTTP server's event loop on a thread of its own, so that requests are answered while a
// scheduler pass runs. Declared before the scheduler's io_context so that it outlives it:
// a request handed to the scheduler's thread and never run is answered (503) through it.
class ApiThread {
 public:
  ApiThread() = default;
  ApiThread(const ApiThread&) = delete;
  ApiThread& operator=(const ApiThread&) = delete;
  ~ApiThread() { Join(); }

  net::io_context& io() { return io_; }
  void Start() {
    thread_ = std::thread([this] { io_.run(); });
  }
  // Runs `stop` on the API thread, then ends its loop.
  void Stop(std::function<void()> stop) {
    net::post(io_, [this, stop = std::move(stop)] {
      stop();
      io_.stop();
    });
  }
  void Join() {
    if (!thread_.joinable()) return;
    io_.stop();
    thread_.join();
  }

 private:
  net::io_context io_;
  std::thread thread_;
};

}  // namespace

int ServeDaemon(const Config& initial_config) {
  // First, so that they go last: from here to the end of the stop, a SIGTERM, SIGINT or SIGHUP
  // finds a handler (asio queues one that comes before the async_wait below) instead of the
  // default action, which would kill the daemon half-way through its start or its clean stop
  // (a second SIGTERM while it closes the database, say).
  net::io_context io;
  net::signal_set stop_signals(io, SIGTERM, SIGINT);
  net::signal_set reload_signal(io, SIGHUP);
  Config config = initial_config;
  StateDirLock lock;
  if (Status s = lock.Acquire(config.state_dir); !s.ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }
  auto store = OpenSqliteStore(config.DatabasePath());
  if (!store.ok()) {
    spdlog::error("cannot open state database {}: {}", config.DatabasePath(), store.status().ToString());
    return 1;
  }
  if (Status s = (*store)->Migrate(); !s.ok()) {
    spdlog::error("cannot migrate state database {}: {}", config.DatabasePath(), s.ToString());
    return 1;
  }
  auto version = (*store)->SchemaVersion();
  spdlog::info("state database {} at schema version {}", config.DatabasePath(), version.ok() ? *version : -1);

  // The API's own connection: its reads run beside the scheduler's writes (WAL) instead of
  // waiting for its connection. Opened after Migrate, and never migrates itself.
  auto api_store = OpenSqliteStore(config.DatabasePath());
  if (!api_store.ok()) {
    spdlog::error("cannot open state database {}: {}", config.DatabasePath(), api_store.status().ToString());
    return 1;
  }

  SystemClock clock;
  DagRegistry registry(config, **store, clock);
  if (auto changed = registry.Refresh(); !changed.ok()) {
    spdlog::error("cannot record DAGs: {}", changed.status().ToString());
    return 1;
  }
  spdlog::info("loaded {} DAGs from {} ({} import errors)", registry.dags().size(), config.dags_folder,
               registry.import_errors().size());
  LogDags(registry);

  ApiThread api_thread;
  std::function<void()> wake;
  LocalExecutorOptions executor_options;
  executor_options.slots = static_cast<size_t>(config.parallelism) + 16;  // callbacks need room too
  executor_options.kill_grace = config.kill_grace;
  executor_options.fence_path = config.state_dir + "/standby.fence";
  LocalExecutor local_executor(io, executor_options, [&] { if (wake) wake(); });
  // Always there, idle until a try asks for it: DAG files may switch to Slurm without a restart.
  SlurmExecutorOptions slurm_options;
  slurm_options.slurm = config.slurm;
  slurm_options.clock = &clock;
  slurm_options.kill_grace = config.kill_grace;
  slurm_options.warn = [](const std::string& message) { spdlog::warn("slurm: {}", message); };
  SlurmExecutor slurm_executor(io, slurm_options, [&] { if (wake) wake(); });
  RoutingExecutor executor(config.executor, {{"local", &local_executor}, {"slurm", &slurm_executor}});
  Scheduler scheduler(SchedulerOptions::FromConfig(config), **store, executor, clock, registry.dags());
  SchedulerLoop loop(io, scheduler, clock);
  wake = [&] { loop.Wake(); };
  if (Status s = scheduler.Recover(); !s.ok()) {
    spdlog::error("cannot recover state: {}", s.ToString());
    return 1;
  }

  auto token = LoadOrCreateApiToken(config.TokenFile());
  if (!token.ok()) {
    spdlog::error("{}", token.status().message());
    return 1;
  }
  // What the API thread reads of this thread's state, republished when it changes.
  Published<Config> published_config(config);
  Published<SchedulerMetrics> published_metrics(scheduler.metrics());
  // Alive as long as the event loop turns: the later of the last pass and the last rescan.
  std::atomic<int64_t> heartbeat_ms{clock.Now().time_since_epoch().count()};
  auto beat = [&](std::optional<TimePoint> at) {
    if (!at) return;
    int64_t ms = at->time_since_epoch().count();
    int64_t seen = heartbeat_ms.load();
    while (ms > seen && !heartbeat_ms.compare_exchange_weak(seen, ms)) {
    }
  };

  ApiContext api;
  api.api_token = *token;
  api.config = [&] { return published_config.Get(); };
  api.dags = [&] { return registry.Snapshot(); };
  api.clock = &clock;
  api.latest_heartbeat = [&]() -> std::optional<TimePoint> {
    return TimePoint(std::chrono::milliseconds(heartbeat_ms.load()));
  };
  api.scheduler_metrics = [&]() -> std::optional<SchedulerMetrics> { return *published_metrics.Get(); };
  api.store_problem = [&] { return loop.commit_health().Problem(); };
  // Two routers over the same context: reads on the API thread with the API's connection;
  // changes on this thread, where the scheduler lives, with the scheduler's connection.
  ApiContext reader = api;
  reader.store = api_store->get();
  ApiRouter read_router(reader);
  ApiContext writer = api;
  writer.store = store->get();
  writer.scheduler = &scheduler;
  writer.wake_scheduler = [&] { loop.Wake(); };
  writer.commit_failed = [&](const Status& s) { loop.CommitFailed(s); };
  ApiRouter write_router(writer);

  HttpServer server(api_thread.io(), [&](HttpRequest request, HttpServer::Respond respond) {
    if (!read_router.NeedsScheduler(request)) return respond(read_router.Handle(request));
    net::post(io, [&write_router, request = std::move(request), respond = std::move(respond)] {
      try {
        respond(write_router.Handle(request));
      } catch (const std::exception& e) {
        spdlog::error("request {} {} failed: {}", request.method, request.target, e.what());
        respond(JsonError(500, "internal error"));
      }
    });
  });
  if (Status s = server.Listen(config.listen); !s.ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }
  spdlog::info("serving http://{} (pid {})", config.listen, getpid());

  net::steady_timer rescan(io);
  std::function<void()> schedule_rescan = [&] {
    rescan.expires_after(kDagRescanInterval);
    rescan.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      auto changed = registry.Refresh();
      if (!changed.ok()) {
        spdlog::error("cannot record DAGs: {}", changed.status().ToString());
      } else if (*changed) {
        spdlog::info("DAGs folder changed: {} DAGs, {} import errors", registry.dags().size(),
                     registry.import_errors().size());
        LogDags(registry);
        loop.Wake();
      }
      beat(clock.Now());
      schedule_rescan();
    });
  };
  schedule_rescan();

  net::steady_timer retention(io);
  std::function<void()> prune = [&] {
    RetentionPolicy policy{config.retention_max_runs_per_dag, config.retention_max_age};
    auto deleted = PruneFinishedRuns(**store, config.LogsDir(), policy, clock.Now());
    if (!deleted.ok()) {
      spdlog::error("retention failed: {}", deleted.status().ToString());
    } else if (*deleted > 0) {
      spdlog::info("retention: pruned {} finished runs and their logs", *deleted);
    }
    retention.expires_after(kRetentionInterval);
    retention.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) prune();
    });
  };
  prune();

  // SIGTERM / SIGINT: start nothing new, give running tries `shutdown_grace` to end, then exit.
  // Tries still running are left alone and adopted by the next start.
  bool stopping = false;
  net::steady_timer grace(io);
  auto finish = [&] {
    loop.Stop();
    api_thread.Stop([&] { server.Stop(); });
    rescan.cancel();
    retention.cancel();
    grace.cancel();
    io.stop();
  };
  loop.set_after_pass([&] {
    SchedulerMetrics metrics = scheduler.metrics();
    const SlurmExecutor::Counters& slurm = slurm_executor.counters();
    metrics.slurm_commands = {{"sbatch", slurm.sbatch.load()},
                              {"squeue", slurm.squeue.load()},
                              {"scontrol", slurm.scontrol.load()},
                              {"scancel", slurm.scancel.load()}};
    metrics.slurm_unreachable = static_cast<uint64_t>(slurm.unreachable.load());
    published_metrics.Set(std::move(metrics));
    beat(scheduler.latest_heartbeat());
    if (stopping && scheduler.ActiveTries() == 0) finish();
  });
  stop_signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    stopping = true;
    scheduler.StopDispatching();
    size_t active = scheduler.ActiveTries();
    spdlog::info("received signal {}: starting no new tasks; {} running", signo, active);
    if (active == 0) return finish();
    grace.expires_after(config.shutdown_grace);
    grace.async_wait([&](const boost::system::error_code& gec) {
      if (gec) return;
      spdlog::info("shutdown grace over: leaving {} running tries to be adopted on the next start",
                   scheduler.ActiveTries());
      finish();
    });
  });

  // SIGHUP: re-read the config (limits, pools, windows) and every DAG file.
  std::function<void()> wait_reload = [&] {
    reload_signal.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      if (config.config_path.empty()) {
        spdlog::info("SIGHUP: rescanning the DAGs folder");
      } else if (auto reloaded = LoadConfig(config.config_path); !reloaded.ok()) {
        spdlog::error("SIGHUP: config not reloaded, keeping the old one:\n{}", reloaded.status().message());
      } else {
        spdlog::info("SIGHUP: reloaded {}", config.config_path);
        // The listener, state directory and DAGs folder stay as they were started.
        Config next = *reloaded;
        next.listen = config.listen;
        next.state_dir = config.state_dir;
        next.dags_folder = config.dags_folder;
        config = next;
        published_config.Set(config);
        scheduler.set_options(SchedulerOptions::FromConfig(config));
        registry.Reconfigure(config);
      }
      if (auto changed = registry.Refresh(); changed.ok() && *changed) LogDags(registry);
      loop.Wake();
      wait_reload();
    });
  };
  wait_reload();

  loop.Wake();
  api_thread.Start();
  io.run();
  api_thread.Join();
  spdlog::info("stopped");
  return 0;
}

}  // namespace nightshift

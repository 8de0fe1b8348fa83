// What the daemon costs per task beyond the processes: the real Scheduler with a real SQLite
// file on disk (in a temporary folder) and a fake executor that completes every submitted try
// at once (exit 0), driven the way SchedulerLoop drives it: one executor event batch, one pass.
//
//   build/bench/sched_overhead                 # wide and chain, N = 1000 and 10000
//   build/bench/sched_overhead --shapes wide:10000 --reps 1 -j 2 --split
//
// Per shape it prints the scheduler+store CPU time per task (this thread's CPU clock, from the
// trigger to the pass that ends the run, run creation included), the wall time per task (which
// adds what the thread waited for, e.g. a WAL checkpoint's fsync), the passes, and for chains
// the dispatch latency: from the pass's Drain that returns task i's finish to the Submit of
// task i+1, p50/p99/max.
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "scheduler/scheduler.h"
#include "store/sqlite_store.h"
#include "tests/unit/scheduler/fakes.h"

namespace nightshift {
namespace {

using SteadyClock = std::chrono::steady_clock;

bool g_keep = false;  // --keep: leave the temporary folders (state.db) for a look

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Completes every try as soon as it is submitted: each try's kStarted and kFinished (exit 0)
// form one batch (or two, with `split`), and each Drain hands out one batch, as a pass woken by
// one process event sees it.
class InstantExecutor : public testing_fakes::FakeExecutor {
 public:
  explicit InstantExecutor(bool split) : split_(split) {}

  Status Submit(const TaskSpec& spec) override {
    const auto now = SteadyClock::now();
    if (last_drain_ && ++submits_after_drain_ == 1) {
      latencies.push_back(std::chrono::duration<double, std::micro>(now - *last_drain_).count());
    }
    ExecutorEvent started;
    started.kind = ExecutorEvent::Kind::kStarted;
    started.key = spec.key;
    started.pid = 4242;
    ExecutorEvent finished;
    finished.kind = ExecutorEvent::Kind::kFinished;
    finished.key = spec.key;
    finished.exit_code = 0;
    if (split_) {
      batches_.push_back({started});
      batches_.push_back({finished});
    } else {
      batches_.push_back({started, finished});
    }
    ++submitted_count;
    return Status::OK();
  }
  std::vector<ExecutorEvent> Drain() override {
    if (batches_.empty()) return {};
    std::vector<ExecutorEvent> batch = std::move(batches_.front());
    batches_.pop_front();
    last_drain_ = SteadyClock::now();
    submits_after_drain_ = 0;
    return batch;
  }
  bool idle() const { return batches_.empty(); }

  size_t submitted_count = 0;
  std::vector<double> latencies;  // µs, first Submit after each Drain

 private:
  bool split_;
  std::deque<std::vector<ExecutorEvent>> batches_;
  std::optional<SteadyClock::time_point> last_drain_;
  int submits_after_drain_ = 0;
};

Dag MakeDag(const std::string& shape, int n, const std::string& dir) {
  Dag dag;
  dag.dag_id = shape + "_" + std::to_string(n);
  dag.file_path = dir + "/dags/" + dag.dag_id + ".yaml";
  dag.max_active_tasks = 1 << 30;
  auto task = [](std::string id, std::vector<std::string> deps) {
    Task t;
    t.task_id = std::move(id);
    t.command = "true";
    t.depends_on = std::move(deps);
    return t;
  };
  if (shape == "chain") {
    for (int i = 0; i < n; ++i) {
      dag.tasks.push_back(task("t" + std::to_string(i), i == 0 ? std::vector<std::string>{}
                                                                : std::vector<std::string>{"t" + std::to_string(i - 1)}));
    }
  } else {  // wide: one root, n independent tasks, one sink
    dag.tasks.push_back(task("root", {}));
    std::vector<std::string> all;
    for (int i = 0; i < n; ++i) {
      all.push_back("t" + std::to_string(i));
      dag.tasks.push_back(task(all.back(), {"root"}));
    }
    dag.tasks.push_back(task("sink", all));
  }
  return dag;
}

struct Result1 {
  size_t tasks = 0;
  double cpu_us_per_task = 0;
  double wall_us_per_task = 0;
  double create_us_per_task = 0;  // TriggerRun alone (CPU)
  size_t passes = 0;
  std::vector<double> latencies;
};

bool RunOnce(const std::string& shape, int n, int parallelism, bool split, Result1* out) {
  char tmpl[] = "/tmp/nightshift-sched-overhead-XXXXXX";
  const char* made = mkdtemp(tmpl);
  if (made == nullptr) {
    std::perror("mkdtemp");
    return false;
  }
  const std::string dir = made;
  bool ok = true;
  {
    auto store = OpenSqliteStore(dir + "/state.db");
    if (!store.ok() || !(*store)->Migrate().ok()) {
      std::fprintf(stderr, "cannot open the store in %s\n", dir.c_str());
      return false;
    }
    Dag dag = MakeDag(shape, n, dir);
    DagRecord record;
    record.dag_id = dag.dag_id;
    record.fileloc = dag.file_path;
    if (!(*store)->UpsertDag(record).ok()) return false;
    std::map<std::string, Dag> dags{{dag.dag_id, dag}};

    // As `nightshift run` sets it up (app/run_command.cc).
    SchedulerOptions options;
    options.create_scheduled_runs = false;
    options.respect_windows = false;
    options.parallelism = parallelism;
    options.logs_dir = dir + "/logs";
    SystemClock clock;
    InstantExecutor executor(split);
    Scheduler scheduler(options, **store, executor, clock, dags);
    if (!scheduler.Recover().ok()) return false;

    const double cpu0 = ThreadCpuSeconds();
    const auto wall0 = SteadyClock::now();
    auto run = scheduler.TriggerRun(dag.dag_id, std::nullopt, std::nullopt, "{}");
    if (!run.ok()) {
      std::fprintf(stderr, "trigger: %s\n", run.status().ToString().c_str());
      return false;
    }
    const double cpu_created = ThreadCpuSeconds();
    size_t passes = 0;
    while (scheduler.IsActive(run->id) || scheduler.ActiveTries() > 0 || !executor.idle()) {
      auto next = scheduler.RunPass();
      ++passes;
      if (!next.ok()) {
        std::fprintf(stderr, "pass: %s\n", next.status().ToString().c_str());
        ok = false;
        break;
      }
      if (passes > 10 * dag.tasks.size() + 100) {
        std::fprintf(stderr, "no progress after %zu passes\n", passes);
        ok = false;
        break;
      }
    }
    const double cpu1 = ThreadCpuSeconds();
    const auto wall1 = SteadyClock::now();
    auto final_run = (*store)->GetRunById(run->id);
    if (!final_run.ok() || !final_run->has_value() || (*final_run)->state != RunState::kSuccess ||
        executor.submitted_count != dag.tasks.size()) {
      std::fprintf(stderr, "%s %d: the run did not succeed (%zu of %zu tasks submitted)\n", shape.c_str(), n,
                   executor.submitted_count, dag.tasks.size());
      ok = false;
    }
    out->tasks = dag.tasks.size();
    out->cpu_us_per_task = (cpu1 - cpu0) * 1e6 / static_cast<double>(out->tasks);
    out->wall_us_per_task = std::chrono::duration<double, std::micro>(wall1 - wall0).count() /
                            static_cast<double>(out->tasks);
    out->create_us_per_task = (cpu_created - cpu0) * 1e6 / static_cast<double>(out->tasks);
    out->passes = passes;
    out->latencies = std::move(executor.latencies);
  }
  if (g_keep) {
    std::fprintf(stderr, "kept %s\n", dir.c_str());
  } else {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return ok;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

int Main(int argc, char** argv) {
  std::vector<std::pair<std::string, int>> shapes = {{"wide", 1000}, {"wide", 10000}, {"chain", 1000}, {"chain", 10000}};
  int reps = 3;
  int parallelism = 2;
  bool split = false;
  // As `nightshift run` (app/run_command.cc): the scheduler logs only what went wrong.
  spdlog::set_level(spdlog::level::warn);
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--shapes") {
      shapes.clear();
      std::string list = value();
      size_t start = 0;
      while (start <= list.size()) {
        size_t comma = list.find(',', start);
        std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        size_t colon = item.find(':');
        if (colon == std::string::npos || (item.substr(0, colon) != "wide" && item.substr(0, colon) != "chain")) {
          std::fprintf(stderr, "bad shape \"%s\" (wide:N or chain:N)\n", item.c_str());
          return 2;
        }
        shapes.emplace_back(item.substr(0, colon), std::atoi(item.c_str() + colon + 1));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (arg == "--reps") {
      reps = std::max(1, std::atoi(value().c_str()));
    } else if (arg == "-j") {
      parallelism = std::max(1, std::atoi(value().c_str()));
    } else if (arg == "--split") {
      split = true;
    } else if (arg == "--keep") {
      g_keep = true;
    } else if (arg == "--verbose") {
      spdlog::set_level(spdlog::level::info);
    } else {
      std::fprintf(stderr,
                   "usage: sched_overhead [--shapes wide:1000,chain:1000] [--reps 3] [-j 2] [--split] [--keep] [--verbose]\n"
                   "  --split: a try's start and finish arrive in two passes instead of one\n");
      return 2;
    }
  }

  std::printf("scheduler+store cost per task, fake executor, SQLite on disk, -j %d, %s, median of %d\n", parallelism,
              split ? "start and finish in separate passes" : "start+finish in one pass", reps);
  std::printf("| shape | tasks | passes | CPU us/task | wall us/task | of which create us/task | dispatch p50 us | p99 us | max us |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  int failures = 0;
  for (const auto& [shape, n] : shapes) {
    std::vector<Result1> results;
    for (int r = 0; r < reps; ++r) {
      Result1 one;
      if (!RunOnce(shape, n, parallelism, split, &one)) {
        ++failures;
        break;
      }
      results.push_back(std::move(one));
    }
    if (results.empty()) continue;
    std::sort(results.begin(), results.end(),
              [](const Result1& a, const Result1& b) { return a.cpu_us_per_task < b.cpu_us_per_task; });
    const Result1& m = results[results.size() / 2];
    std::string p50 = "-", p99 = "-", max = "-";
    if (shape == "chain" && !m.latencies.empty()) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.0f", Percentile(m.latencies, 0.5));
      p50 = buf;
      std::snprintf(buf, sizeof buf, "%.0f", Percentile(m.latencies, 0.99));
      p99 = buf;
      std::snprintf(buf, sizeof buf, "%.0f", Percentile(m.latencies, 1.0));
      max = buf;
    }
    std::printf("| %s %d | %zu | %zu | %.1f | %.1f | %.1f | %s | %s | %s |\n", shape.c_str(), n, m.tasks, m.passes,
                m.cpu_us_per_task, m.wall_us_per_task, m.create_us_per_task, p50.c_str(), p99.c_str(), max.c_str());
    std::fflush(stdout);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace nightshift

int main(int argc, char** argv) { return nightshift::Main(argc, argv); }

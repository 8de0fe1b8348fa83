// The REST API as a hostile client could drive it: a few requests with arbitrary method, target,
// headers and body, answered by the real ApiRouter over a real SQLite store (migrated by the real
// migrations), the example DAGs plus one broken file, and a scheduler that has one run of
// fanout_report in flight. Every input starts from that same state, so a crash reproduces from
// its input alone.
//
// Input: requests separated by a line "===". Each is
//   METHOD TARGET
//   header-name: value        (any number of lines)
//                             (a blank line)
//   body
// The token is "fuzz-token" ("authorization: Bearer fuzz-token").
//
// Every answer must be a status the API documents; every error must be the contract's JSON.
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <string>
#include <string_view>
#include <vector>

#include "app/config.h"
#include "scheduler/dag_registry.h"
#include "scheduler/scheduler.h"
#include "store/store.h"
#include "tests/fuzz/fuzz_input.h"
#include "web/router.h"

namespace nightshift {
namespace {

namespace fs = std::filesystem;
using fuzz::NextLine;

constexpr size_t kMaxRequests = 8;

class FixedClock : public Clock {
 public:
  TimePoint Now() const override { return *ParseTimestamp("2026-11-28T12:00:00Z", "UTC"); }
};

// Accepts every try and never finishes one: nothing runs, the run stays in flight.
class NullExecutor : public Executor {
 public:
  size_t FreeSlots() const override { return 100; }
  Status Submit(const TaskSpec&) override { return Status::OK(); }
  std::vector<ExecutorEvent> Drain() override { return {}; }
  Status Cancel(const TaskInstanceKey&) override { return Status::OK(); }
  std::vector<TaskInstanceKey> Adopt(std::span<const RunningTask>) override { return {}; }
};

// What stays the same for every input: the config and a DAGs folder in a temporary directory.
struct Environment {
  Config config;
  std::string dir;

  Environment() {
    // The database is a real file, as the daemon's is; on tmpfs its fsyncs cost nothing, which
    // makes this target about three times faster than on disk.
    const std::string base = fs::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string pattern = base + "/nightshift-router-fuzz-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    dir = pattern;
    spdlog::set_level(spdlog::level::off);  // the scheduler logs every run it creates
    const fs::path source(NIGHTSHIFT_SOURCE_DIR);
    Result<Config> loaded = LoadConfig((source / "examples/nightshift.yaml").string());
    if (!loaded.ok()) std::abort();
    config = *loaded;
    config.state_dir = dir;
    config.dags_folder = dir + "/dags";
    fs::create_directories(config.dags_folder);
    fs::copy(source / "examples/dags", config.dags_folder);
    fs::copy_file(source / "tests/testdata/bad_dags/cycle.yaml", config.dags_folder + "/cycle.yaml");
  }
  ~Environment() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
};

const Environment& Env() {
  static const Environment environment;
  return environment;
}

// A fresh daemon state per input: store, registry, scheduler, router.
struct Daemon {
  FixedClock clock;
  NullExecutor executor;
  std::unique_ptr<Store> store;
  std::unique_ptr<DagRegistry> registry;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<ApiRouter> router;
  bool wake_requested = false;

  explicit Daemon(const Environment& env) {
    Result<std::unique_ptr<Store>> opened = OpenSqliteStore(env.dir + "/state.db");
    if (!opened.ok()) std::abort();
    store = std::move(*opened);
    if (!store->Migrate().ok()) std::abort();
    registry = std::make_unique<DagRegistry>(env.config, *store, clock);
    if (!registry->Refresh().ok()) std::abort();
    SchedulerOptions options = SchedulerOptions::FromConfig(env.config);
    options.logs_dir = env.config.LogsDir();
    options.create_scheduled_runs = false;
    scheduler = std::make_unique<Scheduler>(options, *store, executor, clock, registry->dags());
    if (!scheduler->TriggerRun("fanout_report", "fuzz_run", std::nullopt, "{}").ok()) std::abort();
    if (!scheduler->RunPass().ok()) std::abort();
    ApiContext context;
    context.config = [config = std::make_shared<const Config>(env.config)] { return config; };
    context.dags = [this] { return registry->Snapshot(); };
    context.store = store.get();
    context.clock = &clock;
    context.scheduler = scheduler.get();
    context.api_token = "fuzz-token";
    context.wake_scheduler = [this] { wake_requested = true; };
    context.latest_heartbeat = [this] { return scheduler->latest_heartbeat(); };
    context.scheduler_metrics = [this] { return std::optional<SchedulerMetrics>(scheduler->metrics()); };
    router = std::make_unique<ApiRouter>(context);
  }
};

HttpRequest ParseRequest(std::string_view text) {
  HttpRequest request;
  const std::string_view request_line = NextLine(text);
  const size_t blank = request_line.find(' ');
  request.method = std::string(request_line.substr(0, blank));
  request.target = blank == std::string_view::npos ? "" : std::string(request_line.substr(blank + 1));
  while (!text.empty()) {
    const std::string_view line = NextLine(text);
    if (line.empty()) break;
    const size_t colon = line.find(':');
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    request.headers[name] = std::string(value);
  }
  request.body = std::string(text);
  return request;
}

std::vector<std::string_view> SplitRequests(std::string_view input) {
  std::vector<std::string_view> out;
  constexpr std::string_view kSeparator = "\n===\n";
  while (out.size() < kMaxRequests) {
    const size_t at = input.find(kSeparator);
    out.push_back(input.substr(0, at));
    if (at == std::string_view::npos) break;
    input.remove_prefix(at + kSeparator.size());
  }
  return out;
}

// NIGHTSHIFT_FUZZ_VERBOSE=1 prints every request's answer, to see what a reproduced input does.
bool Verbose() {
  static const bool verbose = std::getenv("NIGHTSHIFT_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

void CheckResponse(const HttpResponse& response) {
  static const int kStatuses[] = {200, 201, 204, 400, 401, 404, 405, 409, 413, 415};
  if (std::find(std::begin(kStatuses), std::end(kStatuses), response.status) == std::end(kStatuses)) {
    std::abort();
  }
  if (response.status >= 400) {
    const nlohmann::json error = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    if (!error.is_object() || error.value("status", 0) != response.status || !error.contains("title") ||
        !error.contains("detail")) {
      std::abort();
    }
  }
}

}  // namespace
}  // namespace nightshift

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nightshift;
  const Environment& env = Env();
  {
    Daemon daemon(env);
    for (std::string_view text : SplitRequests(fuzz::AsText(data, size))) {
      const HttpRequest request = ParseRequest(text);
      const HttpResponse response = daemon.router->Handle(request);
      if (Verbose())
        std::fprintf(stderr, "%s %s -> %d %.200s\n", request.method.c_str(), request.target.c_str(),
                     response.status, response.body.c_str());
      CheckResponse(response);
      if (daemon.wake_requested) {
        daemon.wake_requested = false;
        (void)daemon.scheduler->RunPass();
      }
    }
  }
  std::error_code ignored;
  for (const char* file : {"/state.db", "/state.db-wal", "/state.db-shm"})
    fs::remove(env.dir + file, ignored);
  return 0;
}

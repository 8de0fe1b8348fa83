#include "app/cli.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "app/config.h"
#include "app/daemon.h"
#include "app/remote_commands.h"
#include "app/run_command.h"
#include "dags/dag_folder.h"
#include "dags/dag_loader.h"
#include "scheduler/dag_registry.h"
#include "scheduler/retention.h"
#include "store/store.h"

#ifndef NIGHTSHIFT_VERSION
#define NIGHTSHIFT_VERSION "dev"
#endif

namespace nightshift {
namespace {

namespace fs = std::filesystem;

// The config file to use: --config, else $NIGHTSHIFT_CONFIG, else ./nightshift.yaml when it
// exists, else the built-in defaults (dags_folder ./dags, state_dir ./.nightshift).
Result<Config> ResolveConfig(const std::string& flag) {
  std::string path = flag;
  if (path.empty()) {
    if (const char* env = std::getenv("NIGHTSHIFT_CONFIG"); env && *env) path = env;
  }
  if (path.empty() && fs::exists("nightshift.yaml")) path = "nightshift.yaml";
  if (path.empty()) return Config{};
  return LoadConfig(path);
}

int ConfigError(const Status& status) {
  std::cerr << status.message() << "\n";
  return 2;
}

int Validate(const std::string& config_flag, const std::vector<std::string>& paths) {
  DagLoadContext context;
  std::vector<std::string> targets = paths;
  // Windows and pools are checked against the config when there is one.
  auto config = ResolveConfig(config_flag);
  if (!config.ok()) return ConfigError(config.status());
  context = MakeDagLoadContext(*config);
  if (targets.empty()) targets.push_back(config->dags_folder);

  std::vector<ImportError> errors;
  size_t dag_count = 0;
  std::map<std::string, std::string> seen;  // dag_id -> file, across explicit files
  for (const std::string& target : targets) {
    std::error_code ec;
    if (fs::is_directory(target, ec)) {
      DagFolder folder(target, context);
      folder.Refresh();
      dag_count += folder.dags().size();
      errors.insert(errors.end(), folder.import_errors().begin(), folder.import_errors().end());
      for (const auto& [dag_id, dag] : folder.dags()) seen[dag_id] = dag.file_path;
    } else if (fs::exists(target, ec)) {
      DagLoadResult result = LoadDagFile(target, context);
      errors.insert(errors.end(), result.errors.begin(), result.errors.end());
      if (result.dag) {
        auto [it, inserted] = seen.emplace(result.dag->dag_id, target);
        if (!inserted) {
          errors.push_back({target, 1, 1,
                            "dag_id \"" + result.dag->dag_id + "\" is also defined in " + it->second});
        } else {
          ++dag_count;
        }
      }
    } else {
      errors.push_back({target, 0, 0, "no such file or directory"});
    }
  }
  for (const ImportError& error : errors) {
    if (error.line == 0) {
      std::cout << error.filename << ": " << error.message << "\n";
    } else {
      std::cout << FormatImportError(error) << "\n";
    }
  }
  if (!errors.empty()) {
    std::cerr << errors.size() << (errors.size() == 1 ? " error" : " errors") << "\n";
    return 1;
  }
  std::cerr << dag_count << (dag_count == 1 ? " DAG" : " DAGs") << " OK\n";
  return 0;
}

Result<std::unique_ptr<Store>> OpenStore(const Config& config, bool migrate) {
  std::error_code ec;
  fs::create_directories(config.state_dir, ec);
  auto store = OpenSqliteStore(config.DatabasePath());
  if (!store.ok()) return store.status();
  if (migrate) {
    if (Status s = (*store)->Migrate(); !s.ok()) return s;
  }
  return store;
}

int DbMigrate(const Config& config) {
  auto store = OpenStore(config, true);
  if (!store.ok()) {
    std::cerr << "migrate failed: " << store.status().ToString() << "\n";
    return 1;
  }
  auto version = (*store)->SchemaVersion();
  std::cout << config.DatabasePath() << ": schema version " << (version.ok() ? *version : -1) << "\n";
  return 0;
}

// Prunes finished runs (and their logs) now, as the daemon's retention does every hour.
int DbClean(const Config& config, const std::string& older_than) {
  RetentionPolicy policy{config.retention_max_runs_per_dag, config.retention_max_age};
  if (!older_than.empty()) {
    auto age = ParseDuration(older_than);
    if (!age.ok()) {
      std::cerr << "--older-than: " << age.status().message() << "\n";
      return 2;
    }
    policy.max_age = *age;
  }
  auto store = OpenStore(config, true);
  if (!store.ok()) {
    std::cerr << "cannot open " << config.DatabasePath() << ": " << store.status().ToString() << "\n";
    return 1;
  }
  SystemClock clock;
  auto deleted = PruneFinishedRuns(**store, config.LogsDir(), policy, clock.Now());
  if (!deleted.ok()) {
    std::cerr << "clean failed: " << deleted.status().ToString() << "\n";
    return 1;
  }
  std::cout << "pruned " << *deleted << " finished runs older than " << FormatDuration(policy.max_age)
            << " (or beyond the newest " << policy.max_runs_per_dag << " per DAG) and their logs\n";
  return 0;
}

int DbCheck(const Config& config) {
  if (!fs::exists(config.DatabasePath())) {
    std::cerr << "no database at " << config.DatabasePath() << "\n";
    return 1;
  }
  auto store = OpenStore(config, false);
  if (!store.ok()) {
    std::cerr << "cannot open " << config.DatabasePath() << ": " << store.status().ToString() << "\n";
    return 1;
  }
  std::vector<std::string> problems;
  if (Status s = (*store)->Check(&problems); !s.ok()) {
    std::cerr << "check failed: " << s.ToString() << "\n";
    return 1;
  }
  for (const std::string& p : problems) std::cout << "problem: " << p << "\n";
  if (!problems.empty()) {
    std::cout << config.DatabasePath() << ": " << problems.size() << " problems\n";
    return 1;
  }
  auto version = (*store)->SchemaVersion();
  std::cout << config.DatabasePath() << ": ok (schema version " << (version.ok() ? *version : -1) << ")\n";
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"Nightshift: a workflow scheduler daemon. DAGs in YAML, state in SQLite."};
  app.set_version_flag("--version", std::string("nightshift ") + NIGHTSHIFT_VERSION);
  app.require_subcommand(1);
  std::string config_flag;
  app.add_option("--config", config_flag, "config file (default: $NIGHTSHIFT_CONFIG, ./nightshift.yaml)");

  auto* serve = app.add_subcommand("serve", "run the daemon: scheduler, executor and web server");
  serve->add_option("--config", config_flag, "config file");

  RunCommandOptions run_options;
  std::vector<std::string> run_params;
  auto* run = app.add_subcommand("run", "run one DAG once in the foreground, without a daemon");
  run->add_option("file", run_options.dag_file, "the DAG file")->required();
  run->add_option("-j,--jobs", run_options.parallelism, "tasks running at once (default: number of CPUs)")
      ->check(CLI::PositiveNumber);
  run->add_option("--param", run_params, "k=v: a param for this run (repeatable)");
  run->add_option("--task", run_options.tasks, "run only this task (repeatable); edges to others are ignored");
  run->add_option("--state-dir", run_options.state_dir, "state (database, logs, cache) folder")
      ->capture_default_str();
  run->add_flag("--respect-windows", run_options.respect_windows, "start tasks only while their window is open");
  run->add_flag("--no-cache", run_options.no_cache, "ignore cached results");
  run->add_option("--config", config_flag, "config file (pools, windows)");

  auto* dags = app.add_subcommand("dags", "DAG files and DAGs");
  dags->require_subcommand(1);
  std::vector<std::string> validate_paths;
  auto* validate = dags->add_subcommand("validate", "check DAG files; prints FILE:LINE:COLUMN: message per error");
  validate->add_option("paths", validate_paths, "files or folders (default: the config's dags_folder)");
  validate->add_option("--config", config_flag, "config file (windows and pools are checked against it)");

  // Commands that ask the running daemon, over its REST API.
  RemoteOptions remote;
  auto add_remote_flags = [&](CLI::App* command) {
    command->add_option("--config", config_flag, "config file (where the daemon listens, its token file)");
    command->add_option("--server", remote.server, "the daemon's URL (default: http://<the config's listen>)");
    command->add_option("--token", remote.token, "API token (default: the config's token file)");
  };
  auto* list = dags->add_subcommand("list", "list the DAGs the daemon has loaded");
  add_remote_flags(list);
  std::string dag_id;
  auto* show = dags->add_subcommand("show", "show a DAG: its fields, tasks and edges");
  show->add_option("dag_id", dag_id, "the DAG")->required();
  add_remote_flags(show);
  TriggerOptions trigger_options;
  auto* trigger = dags->add_subcommand("trigger", "start a run through the daemon; prints the run id");
  trigger->add_option("dag_id", trigger_options.dag_id, "the DAG")->required();
  trigger->add_option("--conf", trigger_options.conf, "the run's conf: a JSON object, e.g. '{\"region\": \"eu\"}'");
  trigger->add_option("--param", trigger_options.params, "k=v: set conf key k to the string v (repeatable; wins over --conf)");
  trigger->add_option("--run-id", trigger_options.run_id, "the dag_run_id (default: manual__<logical_date>)");
  trigger->add_flag("--wait", trigger_options.wait, "follow the run until it ends; exit 0 if it succeeded, 1 if not");
  add_remote_flags(trigger);
  auto* pause = dags->add_subcommand("pause", "stop scheduling new runs of a DAG");
  pause->add_option("dag_id", dag_id, "the DAG")->required();
  add_remote_flags(pause);
  auto* unpause = dags->add_subcommand("unpause", "resume scheduling a DAG");
  unpause->add_option("dag_id", dag_id, "the DAG")->required();
  add_remote_flags(unpause);

  auto* runs = app.add_subcommand("runs", "DAG runs in the daemon");
  runs->require_subcommand(1);
  RunsListOptions runs_options;
  auto* runs_list = runs->add_subcommand("list", "the newest runs, of one DAG or of all");
  runs_list->add_option("dag_id", runs_options.dag_id, "only this DAG's runs");
  runs_list->add_option("--state", runs_options.state, "only runs in this state (queued, running, success, failed)");
  runs_list->add_option("--limit", runs_options.limit, "at most this many runs")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_remote_flags(runs_list);

  auto* tasks = app.add_subcommand("tasks", "task instances in the daemon");
  tasks->require_subcommand(1);
  TaskLogsOptions logs_options;
  auto* logs = tasks->add_subcommand("logs", "print a task's log (default: its latest try)");
  logs->add_option("dag_id", logs_options.dag_id, "the DAG")->required();
  logs->add_option("run_id", logs_options.run_id, "the run (dag_run_id)")->required();
  logs->add_option("task_id", logs_options.task_id, "the task")->required();
  logs->add_option("--try", logs_options.try_number, "this try (1-based) instead of the latest")
      ->check(CLI::PositiveNumber);
  logs->add_option("--map-index", logs_options.map_index, "which instance of a mapped task")
      ->check(CLI::NonNegativeNumber);
  logs->add_flag("-f,--follow", logs_options.follow, "keep printing as the log grows, until the task ends");
  add_remote_flags(logs);

  auto* db = app.add_subcommand("db", "the state database");
  db->require_subcommand(1);
  auto* migrate = db->add_subcommand("migrate", "apply the numbered migrations");
  migrate->add_option("--config", config_flag, "config file");
  std::string older_than;
  auto* clean = db->add_subcommand("clean", "prune finished runs and their logs now, as retention does");
  clean->add_option("--older-than", older_than, "age, e.g. 30d (default: the config's retention.max_age)");
  clean->add_option("--config", config_flag, "config file");
  auto* check = db->add_subcommand("check", "verify integrity; exit 1 on any problem");
  check->add_option("--config", config_flag, "config file");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the message (help and --version on stdout, errors on stderr) and gives each
    // kind of usage error its own code (109 for an unknown option); the CLI's contract has one
    // code for them all: 2.
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (validate->parsed()) return Validate(config_flag, validate_paths);
  if (run->parsed()) {
    for (const std::string& p : run_params) {
      size_t eq = p.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "--param expects k=v, got \"" << p << "\"\n";
        return 2;
      }
      run_options.params[p.substr(0, eq)] = p.substr(eq + 1);
    }
    auto config = ResolveConfig(config_flag);
    if (!config.ok()) return ConfigError(config.status());
    return RunDagOnce(run_options, *config);
  }

  auto config = ResolveConfig(config_flag);
  if (!config.ok()) return ConfigError(config.status());
  if (serve->parsed()) return ServeDaemon(*config);
  if (list->parsed()) return ListDagsCommand(*config, remote);
  if (show->parsed()) return ShowDagCommand(*config, remote, dag_id);
  if (trigger->parsed()) return TriggerDagCommand(*config, remote, trigger_options);
  if (pause->parsed()) return SetPausedCommand(*config, remote, dag_id, true);
  if (unpause->parsed()) return SetPausedCommand(*config, remote, dag_id, false);
  if (runs_list->parsed()) return ListRunsCommand(*config, remote, runs_options);
  if (logs->parsed()) return TaskLogsCommand(*config, remote, logs_options);
  if (migrate->parsed()) return DbMigrate(*config);
  if (check->parsed()) return DbCheck(*config);
  if (clean->parsed()) return DbClean(*config, older_than);
  return 2;
}

}  // namespace nightshift

#include "app/remote_commands.h"

#include "app/progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <thread>
#include <utility>

#include "app/api_client.h"
#include "core/states.h"
#include "core/strings.h"
#include "core/time.h"
#include "core/utf8.h"
#include "scheduler/json_input.h"

namespace nightshift {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// How often --wait and -f ask the daemon again: quick enough to feel live, and a CLI that is
// left following a long task costs the daemon two small requests a second at most.
constexpr std::chrono::milliseconds kPollInterval{500};

int Fail(const Status& status) {
  std::fprintf(stderr, "nightshift: %s\n", status.message().c_str());
  return 1;
}

int BadInput(const std::string& message) {
  std::fprintf(stderr, "nightshift: %s\n", message.c_str());
  return 2;
}

// Reads the API token without ever creating the file: that is the daemon's job, and a token
// made up here would only be rejected.
Result<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::IOError("cannot read the token file " + path);
  std::stringstream text;
  text << in.rdbuf();
  std::string token(Trim(text.str()));
  if (token.empty()) return Status::InvalidArgument("the token file " + path + " is empty");
  return token;
}

// A field of an API object as display text; null, missing and empty all show as "-".
std::string Text(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>().empty() ? "-" : it->get<std::string>();
  if (it->is_boolean()) return it->get<bool>() ? "yes" : "no";
  return DumpJson(*it);
}

std::string TaskName(const json& ti) {
  std::string name = ti.value("task_id", std::string("?"));
  int map_index = ti.value("map_index", -1);
  if (map_index >= 0) name += "[" + std::to_string(map_index) + "]";
  return name;
}

std::string FormatElapsed(double seconds) {
  char text[32];
  if (seconds < 60) {
    std::snprintf(text, sizeof(text), "%.1fs", seconds);
  } else if (seconds < 3600) {
    std::snprintf(text, sizeof(text), "%dm%02ds", static_cast<int>(seconds) / 60, static_cast<int>(seconds) % 60);
  } else {
    std::snprintf(text, sizeof(text), "%dh%02dm", static_cast<int>(seconds) / 3600,
                  static_cast<int>(seconds) % 3600 / 60);
  }
  return text;
}

// A run's duration from its start_date and end_date; a running run counts up to now.
std::string RunDuration(const json& run) {
  std::string start = Text(run, "start_date");
  if (start == "-") return "-";
  auto begin = ParseTimestamp(start, "UTC");
  if (!begin.ok()) return "-";
  std::string end_text = Text(run, "end_date");
  TimePoint end = SystemClock().Now();
  if (end_text != "-") {
    auto parsed = ParseTimestamp(end_text, "UTC");
    if (!parsed.ok()) return "-";
    end = *parsed;
  }
  return FormatElapsed(std::max(0.0, std::chrono::duration<double>(end - *begin).count()));
}

// Columns padded to their widest cell, two spaces apart, as `docker ps` and `kubectl get` do.
void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size());
  for (size_t i = 0; i < header.size(); ++i) widths[i] = header[i].size();
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

// The daemon's state tokens, judged by core/states: a token this build does not know is not finished.
bool IsFinishedTaskState(const std::string& state) {
  std::optional<TaskState> parsed = ParseTaskState(state);
  return parsed && IsFinished(*parsed);
}

bool IsFinishedRunState(const std::string& state) {
  std::optional<RunState> parsed = ParseRunState(state);
  return parsed && IsFinished(*parsed);
}

// One CLI command's conversation with the daemon: where it is, which token to show it, and
// how each kind of failure reads as the one line the user sees.
class DaemonSession {
 public:
  static Result<DaemonSession> Open(const Config& config, const RemoteOptions& remote) {
    std::string url = remote.server.empty() ? ServerUrlFromListen(config.listen) : remote.server;
    auto server = ParseServerUrl(url);
    if (!server.ok()) return server.status();
    return DaemonSession(ApiClient(*server), remote.token, config.TokenFile());
  }

  std::string Url() const { return client_.server().ToString(); }

  // Sends a request; reads go without a token unless the daemon asks for one (401). A 401
  // that remains becomes an error here; every other status is the caller's to judge.
  Result<ApiResponse> Send(std::string_view method, const std::string& target, const std::string& body = "") {
    const bool write = method != "GET";
    if (write || token_tried_) LoadToken();
    auto response = client_.Send(method, target, body, token_);
    if (!response.ok()) return response.status();
    if (response->status == 401 && !token_tried_) {
      LoadToken();
      if (!token_.empty()) {
        response = client_.Send(method, target, body, token_);
        if (!response.ok()) return response.status();
      }
    }
    if (response->status == 401) return Status::InvalidArgument(UnauthorizedMessage());
    return response;
  }

  // A request whose answer must be a 2xx JSON document.
  Result<json> Json(std::string_view method, const std::string& target, const json* body = nullptr) {
    auto response = Send(method, target, body ? DumpJson(*body) : std::string());
    if (!response.ok()) return response.status();
    if (response->status < 200 || response->status > 299) return Status::IOError(ErrorMessage(*response));
    Result<json> answer = ParseJsonInput(response->body);
    if (!answer.ok()) {
      return Status::IOError("the server at " + Url() + " answered " + target +
                             " with something other than JSON (" + answer.status().message() +
                             "); is it a nightshift daemon?");
    }
    return answer;
  }
  Result<json> Get(const std::string& target) { return Json("GET", target); }

  // "DAG \"nope\" not found (404)": the API's JSON detail when there is one.
  std::string ErrorMessage(const ApiResponse& response) const {
    std::string detail;
    if (Result<json> body = ParseJsonInput(response.body); body.ok()) {
      if (body->is_object() && body->contains("detail") && (*body)["detail"].is_string()) {
        detail = (*body)["detail"];
      }
    } else {
      // Not the API's JSON (a proxy's page, say): show its first line instead.
      detail = Trim(std::string_view(response.body).substr(0, response.body.find('\n')));
      if (detail.size() > 200) detail = detail.substr(0, 200) + "...";
    }
    if (detail.empty()) detail = "the daemon at " + Url() + " answered";
    return detail + " (" + std::to_string(response.status) + ")";
  }

 private:
  DaemonSession(ApiClient client, std::string flag_token, std::string token_file)
      : client_(std::move(client)), flag_token_(std::move(flag_token)), token_file_(std::move(token_file)) {}

  void LoadToken() {
    if (token_tried_) return;
    token_tried_ = true;
    if (!flag_token_.empty()) {
      token_ = flag_token_;
      return;
    }
    auto token = ReadTokenFile(token_file_);
    if (token.ok()) {
      token_ = *token;
    } else {
      token_error_ = token.status().message();
    }
  }

  std::string UnauthorizedMessage() const {
    std::string prefix = "the daemon at " + Url() + " ";
    if (!flag_token_.empty()) {
      return prefix + "rejected the API token given with --token (401); the daemon's token is in its " +
             "token file (auth.token_file, default <state_dir>/api-token)";
    }
    if (!token_.empty()) {
      return prefix + "rejected the API token read from " + token_file_ +
             " (401); is that this daemon's token file? pass --token or the daemon's --config";
    }
    return prefix + "needs an API token (401) and none was found: " + token_error_ +
           "; pass --token or the daemon's --config";
  }

  ApiClient client_;
  std::string flag_token_;
  std::string token_file_;
  bool token_tried_ = false;
  std::string token_;
  std::string token_error_;
};

std::string DagPath(const std::string& dag_id) { return "/api/v1/dags/" + UrlEncode(dag_id); }

std::string RunPath(const std::string& dag_id, const std::string& run_id) {
  return DagPath(dag_id) + "/dagRuns/" + UrlEncode(run_id);
}

// Draws a run's progress while --wait follows it: a bar redrawn in place on a terminal, one
// line per finished task otherwise (so CI logs and pipes stay readable).
class RunProgress {
 public:
  explicit RunProgress(bool tty) : tty_(tty) {}

  void Update(const json& task_instances, bool final) {
    int total = 0, done = 0, running = 0, failed = 0;
    for (const json& ti : task_instances) {
      const std::string state = ti.value("state", std::string());
      const std::string name = TaskName(ti);
      ++total;
      if (IsFinishedTaskState(state)) ++done;
      if (state == "running" || state == "queued") ++running;
      if (state == "failed" || state == "upstream_failed") ++failed;
      auto [it, inserted] = states_.emplace(name, state);
      bool changed = inserted || it->second != state;
      it->second = state;
      if (!changed || !IsFinishedTaskState(state)) continue;
      // Only tasks that ran have a log worth pointing at; upstream_failed ones never started.
      if (state == "failed") failed_tasks_.push_back(ti);
      if (!tty_) {
        std::printf("%-32s %s (try %d)\n", name.c_str(), state.c_str(), ti.value("try_number", 0));
      } else if (state == "failed") {
        // Failures stay on screen above the bar; the bar alone would hide which task it was.
        std::printf("\r\033[K%s failed (try %d)\n", name.c_str(), ti.value("try_number", 0));
      }
    }
    if (tty_) {
      std::printf("\r\033[K%s", ProgressBarLine(done, total, running, failed, Elapsed()).c_str());
      if (final) std::printf("\n");
    }
    std::fflush(stdout);
    done_ = done;
    total_ = total;
  }

  double Elapsed() const { return std::chrono::duration<double>(SteadyClock::now() - start_).count(); }
  int done() const { return done_; }
  int total() const { return total_; }
  const std::vector<json>& failed_tasks() const { return failed_tasks_; }

 private:
  bool tty_;
  SteadyClock::time_point start_ = SteadyClock::now();
  std::map<std::string, std::string> states_;
  std::vector<json> failed_tasks_;
  int done_ = 0;
  int total_ = 0;
};

int WaitForRun(DaemonSession& daemon, const std::string& dag_id, const std::string& run_id) {
  RunProgress progress(isatty(STDOUT_FILENO) == 1);
  const std::string run_path = RunPath(dag_id, run_id);
  std::string state;
  while (true) {
    auto run = daemon.Get(run_path);
    if (!run.ok()) return Fail(run.status());
    state = run->value("state", std::string());
    // Read the task instances after the run, so a finished run is drawn with its final states.
    auto tis = daemon.Get(run_path + "/taskInstances");
    if (!tis.ok()) return Fail(tis.status());
    const bool finished = IsFinishedRunState(state);
    progress.Update(tis->value("task_instances", json::array()), finished);
    if (finished) break;
    std::this_thread::sleep_for(kPollInterval);
  }
  std::printf("run %s %s: %d/%d tasks done in %s\n", run_id.c_str(), state == "success" ? "succeeded" : "failed",
              progress.done(), progress.total(), FormatElapsed(progress.Elapsed()).c_str());
  if (state != "success") {
    for (const json& ti : progress.failed_tasks()) {
      const int map_index = ti.value("map_index", -1);
      std::string command = "nightshift tasks logs " + dag_id + " " + run_id + " " + ti.value("task_id", std::string());
      if (map_index >= 0) command += " --map-index " + std::to_string(map_index);
      std::fprintf(stderr, "failed: %s (%s)\n", TaskName(ti).c_str(), command.c_str());
    }
  }
  std::fflush(stdout);
  return state == "success" ? 0 : 1;
}

// The task instance the logs are asked for, or why there is none.
Result<json> FindTaskInstance(DaemonSession& daemon, const TaskLogsOptions& options) {
  auto list = daemon.Get(RunPath(options.dag_id, options.run_id) + "/taskInstances");
  if (!list.ok()) return list.status();
  int mapped = 0;
  for (const json& ti : list->value("task_instances", json::array())) {
    if (ti.value("task_id", std::string()) != options.task_id) continue;
    if (ti.value("map_index", -1) == options.map_index) return ti;
    ++mapped;
  }
  if (mapped > 0 && options.map_index < 0) {
    return Status::InvalidArgument("task \"" + options.task_id + "\" is mapped into " + std::to_string(mapped) +
                                   " instances; choose one with --map-index 0.." + std::to_string(mapped - 1));
  }
  std::string name = options.task_id;
  if (options.map_index >= 0) name += "[" + std::to_string(options.map_index) + "]";
  return Status::NotFound("task \"" + name + "\" not found in run \"" + options.run_id + "\" of DAG \"" +
                          options.dag_id + "\"");
}

std::optional<long long> ParseOffset(const std::string& text) {
  if (text.empty() || text.size() > 18 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  return std::stoll(text);
}

}  // namespace

Result<std::string> BuildTriggerConf(const std::string& conf_json, const std::vector<std::string>& params) {
  json conf = json::object();
  if (!Trim(conf_json).empty()) {
    Result<json> parsed = ParseJsonInput(conf_json);
    if (!parsed.ok()) return Status::InvalidArgument("--conf is " + parsed.status().message());
    conf = std::move(*parsed);
    if (!conf.is_object()) {
      return Status::InvalidArgument("--conf must be a JSON object such as '{\"region\": \"eu\"}', got " +
                                     std::string(conf.type_name()));
    }
  }
  for (const std::string& param : params) {
    size_t eq = param.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument("--param expects k=v, got \"" + param + "\"");
    }
    if (std::optional<size_t> bad = FindInvalidUtf8(param)) {
      return Status::InvalidArgument("--param " + param.substr(0, eq) + ": " +
                                     InvalidUtf8Message(static_cast<unsigned char>(param[*bad])));
    }
    conf[param.substr(0, eq)] = param.substr(eq + 1);
  }
  return DumpJson(conf);
}

int ListDagsCommand(const Config& config, const RemoteOptions& remote) {
  auto daemon = DaemonSession::Open(config, remote);
  if (!daemon.ok()) return BadInput(daemon.status().message());
  // Page through the list: the API caps a page, a CLI listing should not.
  std::vector<json> dags;
  while (true) {
    auto page = daemon->Get("/api/v1/dags?limit=1000&offset=" + std::to_string(dags.size()));
    if (!page.ok()) return Fail(page.status());
    json items = page->value("dags", json::array());
    for (json& dag : items) dags.push_back(std::move(dag));
    if (items.empty() || dags.size() >= page->value("total_entries", size_t{0})) break;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json& dag : dags) {
    const std::string dag_id = dag.value("dag_id", std::string());
    // The listing carries each DAG's recent runs, newest first; a daemon whose listing does
    // not is asked per DAG.
    json recent = dag.value("recent_runs", json());
    if (!recent.is_array()) {
      auto runs = daemon->Get(DagPath(dag_id) + "/dagRuns?limit=1");
      if (!runs.ok()) return Fail(runs.status());
      recent = runs->value("dag_runs", json::array());
    }
    const std::string last_run = recent.empty() ? "-" : Text(recent[0], "state");
    rows.push_back({dag_id, Text(dag, "is_paused"), Text(dag, "schedule"), Text(dag, "window"),
                    Text(dag, "next_run"), last_run});
  }
  auto errors = daemon->Get("/api/v1/importErrors");
  if (!errors.ok()) return Fail(errors.status());
  if (rows.empty()) {
    std::fprintf(stderr, "no DAGs loaded\n");
  } else {
    PrintTable({"DAG_ID", "PAUSED", "SCHEDULE", "WINDOW", "NEXT_RUN", "LAST_RUN"}, rows);
  }
  std::fflush(stdout);
  json import_errors = errors->value("import_errors", json::array());
  for (const json& e : import_errors) {
    std::fprintf(stderr, "import error: %s:%d:%d: %s\n", e.value("filename", std::string()).c_str(),
                 e.value("line", 0), e.value("column", 0), e.value("message", std::string()).c_str());
  }
  // As `dags validate` does: a script can tell that some DAG file did not load.
  return import_errors.empty() ? 0 : 1;
}

int ShowDagCommand(const Config& config, const RemoteOptions& remote, const std::string& dag_id) {
  auto daemon = DaemonSession::Open(config, remote);
  if (!daemon.ok()) return BadInput(daemon.status().message());
  auto dag = daemon->Get(DagPath(dag_id));
  if (!dag.ok()) return Fail(dag.status());

  std::string schedule = Text(*dag, "schedule");
  schedule = schedule == "-" ? "none (triggered only)" : schedule + " (" + Text(*dag, "timezone") + ")";
  std::string tags;
  for (const json& tag : dag->value("tags", json::array())) tags += (tags.empty() ? "" : ", ") + tag.get<std::string>();
  std::vector<std::pair<std::string, std::string>> fields = {
      {"dag_id", Text(*dag, "dag_id")},
      {"description", Text(*dag, "description")},
      {"file", Text(*dag, "fileloc")},
      {"schedule", schedule},
      {"window", Text(*dag, "window")},
      {"paused", Text(*dag, "is_paused")},
      {"next_run", Text(*dag, "next_run")},
      {"tags", tags.empty() ? "-" : tags},
      {"params", DumpJson(dag->value("params", json::object()))},
  };
  if (dag->value("has_import_errors", false)) {
    fields.emplace_back("import_errors", "yes: the file has errors; this is the last version that loaded");
  }
  for (const auto& [name, value] : fields) std::printf("%-13s %s\n", (name + ":").c_str(), value.c_str());

  json tasks = dag->value("tasks", json::array());
  std::printf("\ntasks (%zu):\n", tasks.size());
  std::vector<std::vector<std::string>> rows;
  size_t edges = 0;
  for (const json& task : tasks) {
    std::string upstream;
    for (const json& dep : task.value("depends_on", json::array())) {
      upstream += (upstream.empty() ? "<- " : ", ") + dep.get<std::string>();
      ++edges;
    }
    rows.push_back({"  " + task.value("task_id", std::string()), upstream,
                    "trigger_rule=" + task.value("trigger_rule", std::string("all_success"))});
  }
  // Aligned like a table, but without a header: "name  <- up, up  trigger_rule=...".
  std::vector<size_t> widths(3, 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < 3; ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line = row[0] + std::string(widths[0] - row[0].size() + 2, ' ');
    if (widths[1] > 0) line += row[1] + std::string(widths[1] - row[1].size() + 2, ' ');
    std::printf("%s%s\n", line.c_str(), row[2].c_str());
  }
  std::printf("%zu %s\n", edges, edges == 1 ? "edge" : "edges");
  return 0;
}

int TriggerDagCommand(const Config& config, const RemoteOptions& remote, const TriggerOptions& options) {
  auto conf = BuildTriggerConf(options.conf, options.params);
  if (!conf.ok()) return BadInput(conf.status().message());
  auto daemon = DaemonSession::Open(config, remote);
  if (!daemon.ok()) return BadInput(daemon.status().message());
  Result<json> conf_value = ParseJsonInput(*conf);
  if (!conf_value.ok()) return BadInput("--conf is " + conf_value.status().message());
  json body = {{"conf", std::move(*conf_value)}};
  if (!options.run_id.empty()) body["dag_run_id"] = options.run_id;
  auto run = daemon->Json("POST", DagPath(options.dag_id) + "/dagRuns", &body);
  if (!run.ok()) return Fail(run.status());
  const std::string run_id = run->value("dag_run_id", std::string());
  // The id alone on stdout, so `RUN=$(nightshift dags trigger ...)` works.
  std::printf("%s\n", run_id.c_str());
  std::fflush(stdout);
  if (!options.wait) return 0;
  return WaitForRun(*daemon, options.dag_id, run_id);
}

int SetPausedCommand(const Config& config, const RemoteOptions& remote, const std::string& dag_id, bool paused) {
  auto daemon = DaemonSession::Open(config, remote);
  if (!daemon.ok()) return BadInput(daemon.status().message());
  json body = {{"is_paused", paused}};
  auto dag = daemon->Json("PATCH", DagPath(dag_id), &body);
  if (!dag.ok()) return Fail(dag.status());
  std::printf("%s: %s\n", dag_id.c_str(), dag->value("is_paused", paused) ? "paused" : "unpaused");
  return 0;
}

int ListRunsCommand(const Config& config, const RemoteOptions& remote, const RunsListOptions& options) {
  auto daemon = DaemonSession::Open(config, remote);
  if (!daemon.ok()) return BadInput(daemon.status().message());
  // "~" means every DAG, as in Airflow's API.
  std::string target = DagPath(options.dag_id.empty() ? "~" : options.dag_id) +
                       "/dagRuns?limit=" + std::to_string(options.limit);
  if (!options.state.empty()) target += "&state=" + UrlEncode(options.state);
  auto page = daemon->Get(target);
  if (!page.ok()) return Fail(page.status());
  json runs = page->value("dag_runs", json::array());
  if (runs.empty()) {
    std::fprintf(stderr, "no runs\n");
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json& run : runs) {
    rows.push_back({Text(run, "dag_id"), Text(run, "dag_run_id"), Text(run, "state"), Text(run, "run_type"),
                    Text(run, "logical_date"), Text(run, "start_date"), RunDuration(run)});
  }
  PrintTable({"DAG_ID", "RUN_ID", "STATE", "RUN_TYPE", "LOGICAL_DATE", "START_DATE", "DURATION"}, rows);
  std::fflush(stdout);
  size_t total = page->value("total_entries", runs.size());
  if (total > runs.size()) {
    std::fprintf(stderr, "(the newest %zu of %zu runs; --limit N shows more)\n", runs.size(), total);
  }
  return 0;
}

int TaskLogsCommand(const Config& config, const RemoteOptions& remote, const TaskLogsOptions& options) {
  auto daemon = DaemonSession::Open(config, remote);
  if (!daemon.ok()) return BadInput(daemon.status().message());

  // Without --try: the task instance's latest try, and with -f, each try after it.
  int try_number = options.try_number.value_or(0);
  if (!options.try_number) {
    bool said_waiting = false;
    while (true) {
      auto ti = FindTaskInstance(*daemon, options);
      if (!ti.ok()) return Fail(ti.status());
      try_number = ti->value("try_number", 0);
      if (try_number > 0) break;
      const std::string state = ti->value("state", std::string());
      if (!options.follow || IsFinishedTaskState(state)) {
        return Fail(Status::NotFound("task \"" + options.task_id + "\" has no log: it has not run (state " +
                                     state + ")"));
      }
      if (!said_waiting) {
        std::string reason = Text(*ti, "waiting_reason");
        std::fprintf(stderr, "waiting for %s to start (%s%s)\n", options.task_id.c_str(), state.c_str(),
                     reason == "-" ? "" : (": " + reason).c_str());
        said_waiting = true;
      }
      std::this_thread::sleep_for(kPollInterval);
    }
  }

  long long offset = 0;
  while (true) {
    std::string target = RunPath(options.dag_id, options.run_id) + "/taskInstances/" + UrlEncode(options.task_id) +
                         "/logs/" + std::to_string(try_number) + "?offset=" + std::to_string(offset);
    if (options.map_index >= 0) target += "&map_index=" + std::to_string(options.map_index);
    auto response = daemon->Send("GET", target);
    if (!response.ok()) return Fail(response.status());
    if (response->status == 404 && options.follow && offset == 0) {
      // A try that was just queued may not have a log file yet; wait while the task instance
      // says it is on its way, and report the 404 otherwise.
      auto ti = FindTaskInstance(*daemon, options);
      if (!ti.ok()) return Fail(ti.status());
      const std::string state = ti->value("state", std::string());
      if (ti->value("try_number", 0) == try_number && (state == "queued" || state == "running")) {
        std::this_thread::sleep_for(kPollInterval);
        continue;
      }
    }
    if (response->status < 200 || response->status > 299) return Fail(Status::IOError(daemon->ErrorMessage(*response)));

    const std::string& text = response->body;
    if (!text.empty()) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    }
    std::optional<long long> next = ParseOffset(response->Header("x-next-offset"));
    const bool complete = response->Header("x-log-complete") == "true";
    const long long previous = offset;
    offset = next.value_or(offset + static_cast<long long>(text.size()));
    // Not following: read until a response brings nothing new (the daemon may send a long
    // log in parts); a daemon without X-Next-Offset sent it all at once.
    if (!options.follow) {
      if (text.empty() || !next || offset <= previous) return 0;
      continue;
    }
    if (!text.empty()) continue;  // more may be waiting already
    if (!complete) {
      std::this_thread::sleep_for(kPollInterval);
      continue;
    }
    if (options.try_number) return 0;  // the one try asked for has ended
    // This try ended. Unless the task is finished, a retry (or a re-queue after a closing
    // window) is coming: follow that try's log next.
    while (true) {
      auto ti = FindTaskInstance(*daemon, options);
      if (!ti.ok()) return Fail(ti.status());
      if (ti->value("try_number", 0) > try_number) {
        try_number = ti->value("try_number", 0);
        offset = 0;
        std::fprintf(stderr, "--- try %d ---\n", try_number);
        break;
      }
      if (IsFinishedTaskState(ti->value("state", std::string()))) return 0;
      std::this_thread::sleep_for(kPollInterval);
    }
  }
}

}  // namespace nightshift

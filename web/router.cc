#include "web/router.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/embedded_file.h"
#include "core/ids.h"
#include "scheduler/dag_registry.h"
#include "scheduler/json_input.h"
#include "web/prometheus.h"

namespace nightshift {

// Generated from web/static/ and web/openapi.json by web/CMakeLists.txt.
const std::vector<EmbeddedFile>& EmbeddedWebAssets();
const std::vector<EmbeddedFile>& EmbeddedOpenApi();

namespace {

using json = nlohmann::json;

const char* StatusTitle(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Request Entity Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

HttpResponse JsonResponse(const json& body, int status = 200) {
  HttpResponse response;
  response.status = status;
  // Invalid UTF-8 (from a log or a file name) is replaced rather than failing the request.
  response.body = DumpJson(body);
  return response;
}

json OptionalTime(const std::optional<TimePoint>& t) {
  return t ? json(FormatRfc3339(*t)) : json(nullptr);
}

// Splits "/api/v1/dags/x" into {"api","v1","dags","x"}, decoding each segment.
std::vector<std::string> PathSegments(const std::string& path) {
  std::vector<std::string> segments;
  size_t start = 0;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (end > start) segments.push_back(UrlDecode(path.substr(start, end - start), /*plus_is_space=*/false));
    start = end + 1;
  }
  return segments;
}

// Reads a non-negative integer query parameter; nullopt (and *error set) when malformed.
std::optional<int> QueryInt(const ParsedTarget& target, const std::string& name, int fallback,
                            std::string* error) {
  auto it = target.query.find(name);
  if (it == target.query.end()) return fallback;
  const std::string& text = it->second;
  if (text.empty() || text.size() > 9 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    *error = "query parameter " + name + " must be a non-negative integer, got \"" + text + "\"";
    return std::nullopt;
  }
  return std::stoi(text);
}

json RunJson(const DagRun& run) {
  // Stored conf is validated on the way in; a damaged row shows as an empty object rather than
  // failing the read.
  Result<json> stored = ParseJsonInput(run.conf.empty() ? "{}" : run.conf);
  json conf = stored.ok() ? std::move(*stored) : json::object();
  return {{"dag_id", run.dag_id},
          {"dag_run_id", run.run_id},
          {"state", std::string(ToString(run.state))},
          {"run_type", run.run_type},
          {"logical_date", FormatRfc3339(run.logical_date)},
          {"data_interval_start", OptionalTime(run.data_interval_start)},
          {"data_interval_end", OptionalTime(run.data_interval_end)},
          {"queued_at", OptionalTime(run.queued_at)},
          {"start_date", OptionalTime(run.start_date)},
          {"end_date", OptionalTime(run.end_date)},
          {"conf", conf}};
}

json TaskInstanceJson(const TaskInstance& ti) {
  json duration = nullptr;
  if (ti.start_date && ti.end_date) {
    duration = std::chrono::duration<double>(*ti.end_date - *ti.start_date).count();
  }
  json output = nullptr;
  if (ti.output) {
    // An output the rules refuse is shown as the text it is (made UTF-8 by JsonResponse).
    Result<json> parsed = ParseJsonInput(*ti.output);
    output = parsed.ok() ? std::move(*parsed) : json(*ti.output);
  }
  return {{"task_id", ti.task_id},
          {"map_index", ti.map_index},
          {"state", std::string(ToString(ti.state))},
          {"try_number", ti.try_number},
          {"max_tries", ti.TriesAllowed()},
          {"start_date", OptionalTime(ti.start_date)},
          {"end_date", OptionalTime(ti.end_date)},
          {"duration", duration},
          {"pool", ti.pool},
          {"priority_weight", ti.priority_weight},
          {"progress", ti.progress ? json(*ti.progress) : json(nullptr)},
          {"waiting_reason", ti.waiting_reason ? json(*ti.waiting_reason) : json(nullptr)},
          {"cached", ti.cached},
          {"pid", ti.pid ? json(*ti.pid) : json(nullptr)},
          {"external_id", ti.external_id ? json(*ti.external_id) : json(nullptr)},
          {"output", output}};
}

// Compares without leaking, through timing, how much of a guessed token was right.
bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::string& longer = a.size() >= b.size() ? a : b;
  for (size_t i = 0; i < longer.size(); ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

// Request bodies are JSON. A body labelled as something else is refused rather than guessed at;
// form-urlencoded is let through because that is what `curl -d '{...}'` labels its JSON with.
std::optional<HttpResponse> RefuseNonJsonBody(const HttpRequest& request) {
  if (request.body.empty()) return std::nullopt;
  std::string type = request.Header("content-type");
  type = type.substr(0, type.find(';'));
  std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.pop_back();
  if (type.empty() || type == "application/json" || type.ends_with("+json") ||
      type == "application/x-www-form-urlencoded") {
    return std::nullopt;
  }
  return JsonError(415, "request body must be JSON (Content-Type: application/json), got Content-Type \"" +
                            request.Header("content-type") + "\"");
}

// Every request body is read here, under the rules of scheduler/json_input.h (UTF-8, nesting).
Result<json> ParseJsonBody(const HttpRequest& request) {
  if (request.body.empty()) return json::object();
  Result<json> body = ParseJsonInput(request.body);
  if (!body.ok()) return Status::InvalidArgument("request body is " + body.status().message());
  return body;
}

// The body of a mark request, {"state": "success"|"failed"}: the state, or nullopt with the
// 400 in *error.
std::optional<std::string> MarkedState(const HttpRequest& request, HttpResponse* error) {
  auto body = ParseJsonBody(request);
  if (!body.ok()) {
    *error = JsonError(400, body.status().message());
    return std::nullopt;
  }
  if (!body->is_object() || !body->contains("state") || !(*body)["state"].is_string()) {
    *error = JsonError(400, "body must be {\"state\": \"success\"|\"failed\"}");
    return std::nullopt;
  }
  for (const auto& [key, value] : body->items()) {
    if (key != "state") {
      *error = JsonError(400, "unknown field \"" + key + "\" (only state can be changed)");
      return std::nullopt;
    }
  }
  std::string state = (*body)["state"].get<std::string>();
  if (state != "success" && state != "failed") {
    *error = JsonError(400, "state must be \"success\" or \"failed\"");
    return std::nullopt;
  }
  return state;
}

json DagSummary(const Dag& dag, bool is_paused, bool has_import_errors, TimePoint now) {
  json j;
  j["dag_id"] = dag.dag_id;
  j["description"] = dag.description;
  j["schedule"] = dag.schedule ? json(*dag.schedule) : json(nullptr);
  j["is_paused"] = is_paused;
  j["window"] = dag.window ? json(*dag.window) : json(nullptr);
  j["next_run"] = OptionalTime(NextScheduledRun(dag, now));
  j["tags"] = dag.tags;
  j["has_import_errors"] = has_import_errors;
  j["fileloc"] = dag.file_path;
  j["timezone"] = dag.timezone;
  return j;
}

// GET /api/v1/states: every run and task state and which of them are finished, so clients (the
// dashboard) take these sets from core/states rather than keep their own copies.
HttpResponse States() {
  json run_states = json::array(), finished_runs = json::array();
  for (RunState state : AllRunStates()) {
    run_states.push_back(std::string(ToString(state)));
    if (IsFinished(state)) finished_runs.push_back(std::string(ToString(state)));
  }
  json task_states = json::array(), finished_tasks = json::array();
  for (TaskState state : AllTaskStates()) {
    task_states.push_back(std::string(ToString(state)));
    if (IsFinished(state)) finished_tasks.push_back(std::string(ToString(state)));
  }
  return JsonResponse({{"run_states", run_states},
                       {"finished_run_states", finished_runs},
                       {"task_states", task_states},
                       {"finished_task_states", finished_tasks}});
}

}  // namespace

std::string ContentTypeFor(std::string_view name) {
  auto ends = [&](std::string_view ext) { return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext; };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js") || ends(".mjs")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".png")) return "image/png";
  if (ends(".json")) return "application/json";
  return "application/octet-stream";
}

// The dashboard: web/static/ compiled into the binary. Nothing is read from disk, so no
// request path can reach outside it.
std::optional<HttpResponse> StaticAsset(const std::string& path) {
  std::string name = path == "/" ? "index.html" : path.substr(std::string("/static/").size());
  for (const EmbeddedFile& file : EmbeddedWebAssets()) {
    if (file.name != name) continue;
    HttpResponse r;
    r.content_type = ContentTypeFor(name);
    r.body = std::string(file.contents);
    r.headers.emplace_back("Cache-Control", "no-cache");
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    if (name == "index.html") {
      // Everything the page needs is served from here; inline scripts and other origins are out.
      r.headers.emplace_back("Content-Security-Policy",
                             "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                             "connect-src 'self'; frame-ancestors 'none'");
    }
    return r;
  }
  return std::nullopt;
}

HttpResponse JsonError(int status, const std::string& detail) {
  json body = {{"status", status}, {"title", StatusTitle(status)}, {"detail", detail}};
  return JsonResponse(body, status);
}

int HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case Status::Code::kNotFound: return 404;
    case Status::Code::kInvalidArgument: return 400;
    case Status::Code::kAlreadyExists: return 409;
    case Status::Code::kBusy:
    case Status::Code::kUnavailable: return 503;  // worth retrying: the database is locked, full or read-only
    case Status::Code::kOk:  // not an error; a caller that gets here has a bug worth a 500
    case Status::Code::kIOError:
    case Status::Code::kCorruption: return 500;
  }
  return 500;
}

HttpResponse StatusError(const Status& status) {
  const int code = HttpStatusFor(status);
  return JsonError(code, code >= 500 ? status.ToString() : status.message());
}

struct ApiRouter::Call {
  const View& v;
  const HttpRequest& request;
  // The path's parameters; empty when the route's pattern has no such {parameter}.
  std::string dag_id;
  std::string dag_run_id;
  std::string task_id;
  std::string try_number;
};

std::span<const ApiRouter::Route> ApiRouter::Routes() {
  using A = Access;
  using R = const ApiRouter&;
  using C = const Call&;
  static const Route kRoutes[] = {
      {"GET", "/api/v1/health", A::kOpen, [](R r, C) { return r.Health(); }},
      {"GET", "/api/v1/openapi.json", A::kOpen, [](R r, C) { return r.OpenApi(); }},
      {"GET", "/api/v1/states", A::kOpen, [](R, C) { return States(); }},
      {"GET", "/metrics", A::kOpen, [](R r, C c) { return r.Metrics(c.v); }},
      {"GET", "/api/v1/dags", A::kRead, [](R r, C c) { return r.ListDags(c.v, c.request); }},
      {"GET", "/api/v1/importErrors", A::kRead, [](R r, C c) { return r.ListImportErrors(c.v); }},
      {"GET", "/api/v1/windows", A::kRead, [](R r, C c) { return r.ListWindows(c.v); }},
      {"GET", "/api/v1/dags/{dag_id}", A::kRead, [](R r, C c) { return r.GetDag(c.v, c.dag_id); }},
      {"PATCH", "/api/v1/dags/{dag_id}", A::kWrite,
       [](R r, C c) { return r.PatchDag(c.v, c.dag_id, c.request); }},
      {"GET", "/api/v1/dags/{dag_id}/grid", A::kRead, [](R r, C c) { return r.Grid(c.v, c.dag_id, c.request); }},
      {"GET", "/api/v1/dags/{dag_id}/dagRuns", A::kRead,
       [](R r, C c) { return r.ListRuns(c.v, c.dag_id, c.request); }},
      {"POST", "/api/v1/dags/{dag_id}/dagRuns", A::kWrite,
       [](R r, C c) { return r.TriggerRun(c.v, c.dag_id, c.request); }},
      {"GET", "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}", A::kRead,
       [](R r, C c) { return r.GetRun(c.dag_id, c.dag_run_id); }},
      {"PATCH", "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}", A::kWrite,
       [](R r, C c) { return r.PatchRun(c.dag_id, c.dag_run_id, c.request); }},
      {"GET", "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances", A::kRead,
       [](R r, C c) { return r.ListTaskInstances(c.dag_id, c.dag_run_id); }},
      {"PATCH", "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", A::kWrite,
       [](R r, C c) { return r.PatchTask(c.dag_id, c.dag_run_id, c.task_id, c.request); }},
      {"POST", "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/clear", A::kWrite,
       [](R r, C c) { return r.ClearTask(c.dag_id, c.dag_run_id, c.task_id, c.request); }},
      {"GET", "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries", A::kRead,
       [](R r, C c) { return r.ListTries(c.dag_id, c.dag_run_id, c.task_id, c.request); }},
      {"GET", "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}", A::kRead,
       [](R r, C c) { return r.GetLog(c.dag_id, c.dag_run_id, c.task_id, c.try_number, c.request); }},
  };
  return kRoutes;
}

namespace {

// A route's pattern split into segments once: literals, and the Call field each {parameter} fills.
struct CompiledRoute {
  const ApiRouter::Route* route;
  std::vector<std::string> literals;                   // "" where the segment is a parameter
  std::vector<std::string ApiRouter::Call::*> params;  // nullptr where the segment is a literal
};

const std::vector<CompiledRoute>& CompiledRoutes() {
  static const std::vector<CompiledRoute> compiled = [] {
    std::vector<CompiledRoute> out;
    for (const ApiRouter::Route& route : ApiRouter::Routes()) {
      CompiledRoute c{&route, {}, {}};
      for (const std::string& segment : PathSegments(route.pattern)) {
        std::string ApiRouter::Call::*param = nullptr;
        if (segment.starts_with('{')) {
          if (segment == "{dag_id}") param = &ApiRouter::Call::dag_id;
          if (segment == "{dag_run_id}") param = &ApiRouter::Call::dag_run_id;
          if (segment == "{task_id}") param = &ApiRouter::Call::task_id;
          if (segment == "{try_number}") param = &ApiRouter::Call::try_number;
          // A {parameter} the Call has no field for is a mistake in the table, not in a request.
          if (!param) std::abort();
        }
        c.literals.push_back(param ? "" : segment);
        c.params.push_back(param);
      }
      out.push_back(std::move(c));
    }
    return out;
  }();
  return compiled;
}

bool PathFits(const CompiledRoute& c, const std::vector<std::string>& seg) {
  if (seg.size() != c.literals.size()) return false;
  for (size_t i = 0; i < seg.size(); ++i) {
    if (!c.params[i] && seg[i] != c.literals[i]) return false;
  }
  return true;
}

bool MethodFits(const ApiRouter::Route& route, const std::string& method) {
  return method == route.method || (method == "HEAD" && std::string_view(route.method) == "GET");
}

// The route for the request's method and path segments, or nullptr; *allowed then lists the
// methods the path has (empty when no route has this path).
const CompiledRoute* FindRoute(const std::string& method, const std::vector<std::string>& seg,
                               std::string* allowed) {
  for (const CompiledRoute& c : CompiledRoutes()) {
    if (!PathFits(c, seg)) continue;
    if (MethodFits(*c.route, method)) return &c;
    if (allowed) *allowed += (allowed->empty() ? "" : ", ") + std::string(c.route->method);
  }
  return nullptr;
}

}  // namespace

bool ApiRouter::NeedsScheduler(const HttpRequest& request) const {
  const CompiledRoute* c = FindRoute(request.method, PathSegments(ParseTarget(request.target).path), nullptr);
  return c && c->route->access == Access::kWrite && Authorized(request);
}

HttpResponse ApiRouter::Handle(const HttpRequest& request) const {
  static const auto kNoDags = std::make_shared<const DagsSnapshot>();
  View v{context_.config ? context_.config() : nullptr, context_.dags ? context_.dags() : nullptr};
  if (!v.dags) v.dags = kNoDags;
  const ParsedTarget target = ParseTarget(request.target);
  const std::vector<std::string> seg = PathSegments(target.path);
  const std::string& method = request.method;
  const bool get = method == "GET" || method == "HEAD";

  std::string allowed;
  const CompiledRoute* found = FindRoute(method, seg, &allowed);
  if (!found) {
    if (!allowed.empty()) {
      HttpResponse r = JsonError(405, "use " + allowed + " for " + target.path);
      r.headers.emplace_back("Allow", allowed);
      return r;
    }
    if (get && (target.path == "/" || target.path.starts_with("/static/"))) {
      if (std::optional<HttpResponse> asset = StaticAsset(target.path)) return *asset;
    }
    return JsonError(404, "no route for " + request.method + " " + target.path);
  }
  const Route& route = *found->route;
  // Writes need the token; reads too when so configured.
  const bool open = route.access == Access::kOpen ||
                    (route.access == Access::kRead && !(v.config && v.config->read_requires_token));
  if (!open && !Authorized(request)) {
    return JsonError(401, "missing or wrong bearer token (Authorization: Bearer <token>)");
  }
  if (route.access == Access::kWrite) {
    if (std::optional<HttpResponse> refusal = RefuseNonJsonBody(request)) return *refusal;
    if (std::optional<std::string> problem = context_.store_problem ? context_.store_problem() : std::nullopt) {
      return JsonError(503, *problem + "; nothing was changed: changes are refused until a commit succeeds "
                                       "(GET /api/v1/health answers 200 again)");
    }
  }
  Call call{v, request, {}, {}, {}, {}};
  for (size_t i = 0; i < seg.size(); ++i) {
    if (found->params[i]) call.*(found->params[i]) = seg[i];
  }
  // Ids no stored object can have are refused before any lookup.
  const std::string& dag_id = call.dag_id;
  if (!dag_id.empty() && dag_id != "~" && !IsValidId(dag_id)) return JsonError(400, "invalid dag_id \"" + dag_id + "\"");
  const std::string& run_id = call.dag_run_id;
  if (!run_id.empty() && !IsValidRunId(run_id)) return JsonError(400, "invalid dag_run_id \"" + run_id + "\"");
  const std::string& task_id = call.task_id;
  if (!task_id.empty() && !IsValidId(task_id)) return JsonError(400, "invalid task_id \"" + task_id + "\"");
  return route.handler(*this, call);
}

HttpResponse ApiRouter::ChangeFailed(const Status& s) const {
  if (HttpStatusFor(s) == 503) {
    if (context_.commit_failed) context_.commit_failed(s);
    return JsonError(503, "state store cannot commit: " + s.message() + "; nothing was changed, try again later");
  }
  return StatusError(s);
}

bool ApiRouter::Authorized(const HttpRequest& request) const {
  const std::string header = request.Header("authorization");
  const std::string prefix = "Bearer ";
  if (context_.api_token.empty() || header.size() <= prefix.size() || header.compare(0, prefix.size(), prefix) != 0) {
    return false;
  }
  return ConstantTimeEquals(header.substr(prefix.size()), context_.api_token);
}

HttpResponse ApiRouter::PatchDag(const View& v, const std::string& dag_id, const HttpRequest& request) const {
  if (!v.dags->FindDag(dag_id)) return JsonError(404, "DAG \"" + dag_id + "\" not found");
  auto body = ParseJsonBody(request);
  if (!body.ok()) return JsonError(400, body.status().message());
  if (!body->is_object()) return JsonError(400, "request body must be a JSON object");
  for (const auto& [key, value] : body->items()) {
    if (key != "is_paused") return JsonError(400, "unknown field \"" + key + "\" (only is_paused can be changed)");
  }
  if (!body->contains("is_paused") || !(*body)["is_paused"].is_boolean()) {
    return JsonError(400, "is_paused must be true or false");
  }
  Status s = context_.store->SetPaused(dag_id, (*body)["is_paused"].get<bool>());
  if (!s.ok()) return ChangeFailed(s);
  if (context_.wake_scheduler) context_.wake_scheduler();
  return GetDag(v, dag_id);
}

HttpResponse ApiRouter::TriggerRun(const View& v, const std::string& dag_id, const HttpRequest& request) const {
  if (!v.dags->FindDag(dag_id)) return JsonError(404, "DAG \"" + dag_id + "\" not found");
  if (!context_.scheduler) return JsonError(503, "the scheduler is not running");
  auto body = ParseJsonBody(request);
  if (!body.ok()) return JsonError(400, body.status().message());
  if (!body->is_object()) return JsonError(400, "request body must be a JSON object");
  std::optional<std::string> run_id;
  std::optional<TimePoint> logical_date;
  std::string conf = "{}";
  for (const auto& [key, value] : body->items()) {
    if (key == "dag_run_id") {
      if (!value.is_string() || !IsValidRunId(value.get<std::string>())) {
        return JsonError(400, "invalid dag_run_id: " + std::string(kRunIdRule));
      }
      run_id = value.get<std::string>();
    } else if (key == "logical_date") {
      if (!value.is_string()) return JsonError(400, "logical_date must be an RFC 3339 timestamp string");
      auto parsed = ParseTimestamp(value.get<std::string>(), "UTC");
      if (!parsed.ok()) return JsonError(400, "logical_date: " + parsed.status().message());
      logical_date = *parsed;
    } else if (key == "conf") {
      if (!value.is_object()) return JsonError(400, "conf must be a JSON object");
      conf = DumpJson(value);
    } else if (key == "note") {
      // Airflow accepts a note; Nightshift has nowhere to show it yet and ignores it.
    } else {
      return JsonError(400, "unknown field \"" + key + "\" (expected dag_run_id, logical_date, conf)");
    }
  }
  auto run = context_.scheduler->TriggerRun(dag_id, run_id, logical_date, conf);
  if (!run.ok()) {
    const Status& s = run.status();
    if (s.IsAlreadyExists()) {
      return JsonError(HttpStatusFor(s),
                       "DAG run \"" + run_id.value_or("") + "\" already exists for DAG \"" + dag_id + "\"");
    }
    return ChangeFailed(s);
  }
  if (context_.wake_scheduler) context_.wake_scheduler();
  return JsonResponse(RunJson(*run));
}

HttpResponse ApiRouter::ListRuns(const View& v, const std::string& dag_id, const HttpRequest& request) const {
  const ParsedTarget target = ParseTarget(request.target);
  std::string error;
  std::optional<int> limit = QueryInt(target, "limit", 100, &error);
  std::optional<int> offset = QueryInt(target, "offset", 0, &error);
  if (!limit || !offset) return JsonError(400, error);
  RunQuery query;
  if (dag_id != "~") {
    if (!v.dags->FindDag(dag_id)) {
      auto record = context_.store->GetDag(dag_id);
      if (!record.ok()) return StatusError(record.status());
      if (!record->has_value()) return JsonError(404, "DAG \"" + dag_id + "\" not found");
    }
    query.dag_id = dag_id;
  }
  query.limit = std::min(*limit, 1000);
  query.offset = *offset;
  if (auto it = target.query.find("state"); it != target.query.end() && !it->second.empty()) {
    std::optional<RunState> state = ParseRunState(it->second);
    if (!state) return JsonError(400, "state must be one of queued, running, success, failed");
    query.state = state;
  }
  auto page = context_.store->ListRuns(query);
  if (!page.ok()) return StatusError(page.status());
  json runs = json::array();
  for (const DagRun& run : page->runs) runs.push_back(RunJson(run));
  return JsonResponse({{"dag_runs", runs}, {"total_entries", page->total_entries}});
}

HttpResponse ApiRouter::GetRun(const std::string& dag_id, const std::string& run_id) const {
  auto run = context_.store->GetRunSummary(dag_id, run_id);
  if (!run.ok()) return StatusError(run.status());
  if (!run->has_value()) return JsonError(404, "DAG run \"" + run_id + "\" of DAG \"" + dag_id + "\" not found");
  return JsonResponse(RunJson(**run));
}

HttpResponse ApiRouter::ListTaskInstances(const std::string& dag_id, const std::string& run_id) const {
  auto run = context_.store->GetRunSummary(dag_id, run_id);
  if (!run.ok()) return StatusError(run.status());
  if (!run->has_value()) return JsonError(404, "DAG run \"" + run_id + "\" of DAG \"" + dag_id + "\" not found");
  auto tis = context_.store->ListTaskInstances((*run)->id);
  if (!tis.ok()) return StatusError(tis.status());
  json list = json::array();
  for (const TaskInstance& ti : *tis) list.push_back(TaskInstanceJson(ti));
  return JsonResponse({{"task_instances", list}, {"total_entries", list.size()}});
}

HttpResponse ApiRouter::PatchRun(const std::string& dag_id, const std::string& run_id,
                                 const HttpRequest& request) const {
  HttpResponse error;
  std::optional<std::string> token = MarkedState(request, &error);
  if (!token) return error;
  RunState state = *token == "success" ? RunState::kSuccess : RunState::kFailed;
  if (!context_.scheduler) return JsonError(503, "the scheduler is not running");
  Status s = context_.scheduler->MarkRun(dag_id, run_id, state);
  if (!s.ok()) return ChangeFailed(s);
  if (context_.wake_scheduler) context_.wake_scheduler();
  return GetRun(dag_id, run_id);
}

HttpResponse ApiRouter::ClearTask(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                                  const HttpRequest& request) const {
  auto body = ParseJsonBody(request);
  if (!body.ok()) return JsonError(400, body.status().message());
  if (!body->is_object()) return JsonError(400, "request body must be a JSON object");
  bool downstream = false;
  for (const auto& [key, value] : body->items()) {
    if (key == "downstream") {
      if (!value.is_boolean()) return JsonError(400, "downstream must be true or false");
      downstream = value.get<bool>();
    } else {
      return JsonError(400, "unknown field \"" + key + "\" (expected downstream)");
    }
  }
  if (!context_.scheduler) return JsonError(503, "the scheduler is not running");
  Status s = context_.scheduler->ClearTask(dag_id, run_id, task_id, downstream);
  if (!s.ok()) return ChangeFailed(s);
  if (context_.wake_scheduler) context_.wake_scheduler();
  return ListTaskInstances(dag_id, run_id);
}

HttpResponse ApiRouter::PatchTask(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                                  const HttpRequest& request) const {
  HttpResponse error;
  std::optional<std::string> token = MarkedState(request, &error);
  if (!token) return error;
  TaskState state = *token == "success" ? TaskState::kSuccess : TaskState::kFailed;
  if (!context_.scheduler) return JsonError(503, "the scheduler is not running");
  Status s = context_.scheduler->MarkTask(dag_id, run_id, task_id, state);
  if (!s.ok()) return ChangeFailed(s);
  if (context_.wake_scheduler) context_.wake_scheduler();
  return ListTaskInstances(dag_id, run_id);
}

Result<TaskInstance> ApiRouter::FindTaskInstance(const std::string& dag_id, const std::string& run_id,
                                                 const std::string& task_id, const HttpRequest& request,
                                                 HttpResponse* error) const {
  const ParsedTarget target = ParseTarget(request.target);
  int map_index = -1;
  if (auto it = target.query.find("map_index"); it != target.query.end() && it->second != "-1") {
    std::string e;
    std::optional<int> parsed = QueryInt(target, "map_index", -1, &e);
    if (!parsed) {
      *error = JsonError(400, e);
      return Status::InvalidArgument(e);
    }
    map_index = *parsed;
  }
  auto run = context_.store->GetRunSummary(dag_id, run_id);
  if (!run.ok()) {
    *error = StatusError(run.status());
    return run.status();
  }
  if (!run->has_value()) {
    *error = JsonError(404, "DAG run \"" + run_id + "\" of DAG \"" + dag_id + "\" not found");
    return Status::NotFound("run");
  }
  auto tis = context_.store->ListTaskInstances((*run)->id);
  if (!tis.ok()) {
    *error = StatusError(tis.status());
    return tis.status();
  }
  for (const TaskInstance& ti : *tis) {
    if (ti.task_id == task_id && ti.map_index == map_index) return ti;
  }
  *error = JsonError(404, "task \"" + task_id + "\" (map_index " + std::to_string(map_index) + ") not found in run \"" +
                              run_id + "\"");
  return Status::NotFound("task");
}

HttpResponse ApiRouter::ListTries(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                                  const HttpRequest& request) const {
  HttpResponse error;
  auto ti = FindTaskInstance(dag_id, run_id, task_id, request, &error);
  if (!ti.ok()) return error;
  auto tries = context_.store->ListTries(ti->id);
  if (!tries.ok()) return StatusError(tries.status());
  json list = json::array();
  for (const TaskTry& t : *tries) {
    list.push_back({{"try_number", t.try_number},
                    {"state", std::string(ToString(t.state))},
                    {"start_date", OptionalTime(t.start_date)},
                    {"end_date", OptionalTime(t.end_date)},
                    {"exit_code", t.exit_code ? json(*t.exit_code) : json(nullptr)},
                    {"reason", t.reason ? json(*t.reason) : json(nullptr)},
                    {"pid", t.pid ? json(*t.pid) : json(nullptr)},
                    {"external_id", t.external_id ? json(*t.external_id) : json(nullptr)}});
  }
  return JsonResponse({{"tries", list}, {"total_entries", list.size()}});
}

HttpResponse ApiRouter::GetLog(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                               const std::string& try_text, const HttpRequest& request) const {
  if (try_text.empty() || try_text.size() > 6 ||
      !std::all_of(try_text.begin(), try_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return JsonError(400, "try_number must be a positive integer, got \"" + try_text + "\"");
  }
  const int try_number = std::stoi(try_text);
  const ParsedTarget target = ParseTarget(request.target);
  std::string error_text;
  std::optional<int> offset = QueryInt(target, "offset", 0, &error_text);
  if (!offset) return JsonError(400, error_text);
  HttpResponse error;
  auto ti = FindTaskInstance(dag_id, run_id, task_id, request, &error);
  if (!ti.ok()) return error;
  auto tries = context_.store->ListTries(ti->id);
  if (!tries.ok()) return StatusError(tries.status());
  const TaskTry* found = nullptr;
  for (const TaskTry& t : *tries) {
    if (t.try_number == try_number) found = &t;
  }
  if (!found) return JsonError(404, "task \"" + task_id + "\" has no try " + try_text + " in run \"" + run_id + "\"");
  // The path comes from the database, never from the request: ids only select a row.
  HttpResponse response;
  response.content_type = "text/plain; charset=utf-8";
  constexpr size_t kMaxChunk = 1 << 20;
  size_t next = static_cast<size_t>(*offset);
  size_t size = 0;
  if (FILE* f = std::fopen(found->log_path.c_str(), "rb")) {
    std::fseek(f, 0, SEEK_END);
    size = static_cast<size_t>(std::max(0L, std::ftell(f)));
    if (next < size) {
      std::fseek(f, static_cast<long>(next), SEEK_SET);
      std::string chunk(std::min(kMaxChunk, size - next), '\0');
      size_t n = std::fread(chunk.data(), 1, chunk.size(), f);
      chunk.resize(n);
      response.body = std::move(chunk);
      next += n;
    }
    std::fclose(f);
  }
  const bool ended = found->state != TaskState::kQueued && found->state != TaskState::kRunning;
  response.headers.emplace_back("X-Next-Offset", std::to_string(next));
  response.headers.emplace_back("X-Log-Complete", ended && next >= size ? "true" : "false");
  return response;
}

HttpResponse ApiRouter::ListWindows(const View& v) const {
  json list = json::array();
  const TimePoint now = context_.clock->Now();
  if (v.config) {
    for (const auto& [name, window] : v.config->windows) {
      std::optional<TimePoint> change = window.NextChange(now);
      list.push_back({{"name", name},
                      {"is_open", window.IsOpen(now)},
                      {"next_change", change ? json(FormatRfc3339In(*change, window.timezone())) : json(nullptr)},
                      {"timezone", window.timezone()},
                      {"on_close", window.on_close() == OnClose::kKill ? "kill" : "drain"}});
    }
  }
  return JsonResponse({{"windows", list}, {"total_entries", list.size()}});
}

namespace {

// One state for a task's instances in a run (mapped tasks have many): the most urgent one.
std::optional<TaskState> Summarize(const std::vector<TaskState>& states) {
  static const TaskState kUrgency[] = {TaskState::kFailed,  TaskState::kUpstreamFailed, TaskState::kUpForRetry,
                                       TaskState::kRunning, TaskState::kQueued,         TaskState::kScheduled,
                                       TaskState::kSkipped, TaskState::kSuccess};
  for (TaskState s : kUrgency) {
    if (std::find(states.begin(), states.end(), s) != states.end()) return s;
  }
  // A state the ranking does not list still shows rather than an empty cell.
  if (!states.empty()) return states.front();
  return std::nullopt;
}

}  // namespace

HttpResponse ApiRouter::Grid(const View& v, const std::string& dag_id, const HttpRequest& request) const {
  const Dag* dag = v.dags->FindDag(dag_id);
  if (!dag) return JsonError(404, "DAG \"" + dag_id + "\" not found");
  const ParsedTarget target = ParseTarget(request.target);
  std::string error;
  std::optional<int> limit = QueryInt(target, "limit", 25, &error);
  if (!limit) return JsonError(400, error);
  RunQuery query;
  query.dag_id = dag_id;
  query.limit = std::min(*limit, 500);
  auto page = context_.store->ListRuns(query);
  if (!page.ok()) return StatusError(page.status());
  json tasks = json::array();
  std::map<std::string, size_t> column;
  for (const Task& t : dag->tasks) {
    column[t.task_id] = tasks.size();
    tasks.push_back(t.task_id);
  }
  json runs = json::array();
  for (const DagRun& run : page->runs) {
    auto tis = context_.store->ListTaskInstances(run.id);
    if (!tis.ok()) return StatusError(tis.status());
    std::vector<std::vector<TaskState>> by_column(tasks.size());
    for (const TaskInstance& ti : *tis) {
      auto c = column.find(ti.task_id);
      if (c != column.end()) by_column[c->second].push_back(ti.state);
    }
    json states = json::array();
    for (const auto& cell : by_column) {
      std::optional<TaskState> s = Summarize(cell);
      states.push_back(s ? json(std::string(ToString(*s))) : json(nullptr));
    }
    json r = RunJson(run);
    r.erase("conf");
    r["states"] = states;
    runs.push_back(r);
  }
  return JsonResponse({{"tasks", tasks}, {"runs", runs}, {"total_entries", page->total_entries}});
}

HttpResponse ApiRouter::Metrics(const View& v) const {
  PrometheusText out;
  if (auto runs = context_.store->CountRunsByState(); runs.ok()) {
    for (RunState state : AllRunStates()) {
      std::string name(ToString(state));
      out.Gauge("nightshift_dag_runs", "DAG runs in the database by state.", static_cast<double>((*runs)[name]),
                {{"state", name}});
    }
  }
  if (auto tis = context_.store->CountTaskInstancesByState(); tis.ok()) {
    for (TaskState state : AllTaskStates()) {
      std::string name(ToString(state));
      out.Gauge("nightshift_task_instances", "Task instances in the database by state.",
                static_cast<double>((*tis)[name]), {{"state", name}});
    }
  }
  std::optional<SchedulerMetrics> metrics =
      context_.scheduler_metrics ? context_.scheduler_metrics() : std::nullopt;
  if (metrics) {
    const SchedulerMetrics& m = *metrics;
    out.Counter("nightshift_tries_started_total", "Task tries whose process started.", static_cast<double>(m.tries_started));
    out.Counter("nightshift_tries_finished_total", "Task tries that ended, in any way.", static_cast<double>(m.tries_finished));
    out.Counter("nightshift_tries_failed_total", "Task tries that failed, were lost or were stopped.",
                static_cast<double>(m.tries_failed));
    out.Counter("nightshift_scheduler_passes_total", "Scheduler passes committed.", static_cast<double>(m.passes));
    for (const auto& [outcome, count] : {std::pair{"queued", m.standbys_queued},
                                         std::pair{"started", m.standbys_started},
                                         std::pair{"declined", m.standbys_declined}}) {
      out.Counter("nightshift_standbys_total", "Standby tries queued in the slot of a running try, by outcome.",
                  static_cast<double>(count), {{"outcome", outcome}});
    }
    out.HistogramOf("nightshift_scheduler_pass_duration_seconds", "Time one scheduler pass takes.", m.pass_duration);
    out.HistogramOf("nightshift_dispatch_latency_seconds",
                    "Time from a task instance becoming ready to its process starting.", m.dispatch_latency);
    for (const auto& [command, count] : m.slurm_commands) {
      out.Counter("nightshift_slurm_commands_total", "Slurm commands run by the daemon.",
                  static_cast<double>(count), {{"command", command}});
    }
    out.Counter("nightshift_slurm_unreachable_total", "Slurm calls that found no controller.",
                static_cast<double>(m.slurm_unreachable));
    if (v.config) {
      for (const auto& [pool, size] : v.config->pools) {
        out.Gauge("nightshift_pool_slots", "Slots of each pool.", size, {{"pool", pool}});
      }
      for (const auto& [pool, size] : v.config->pools) {
        auto used = m.pool_used.find(pool);
        out.Gauge("nightshift_pool_used", "Queued and running tries in each pool.",
                  used == m.pool_used.end() ? 0 : used->second, {{"pool", pool}});
      }
    }
  }
  if (v.config) {
    const TimePoint now = context_.clock->Now();
    for (const auto& [name, window] : v.config->windows) {
      out.Gauge("nightshift_window_open", "1 while the batch window is open.", window.IsOpen(now) ? 1 : 0,
                {{"window", name}});
    }
  }
  HttpResponse response;
  response.content_type = "text/plain; version=0.0.4; charset=utf-8";
  response.body = out.text();
  return response;
}

HttpResponse ApiRouter::OpenApi() const {
  HttpResponse response;
  for (const EmbeddedFile& file : EmbeddedOpenApi()) response.body = std::string(file.contents);
  return response;
}

HttpResponse ApiRouter::Health() const {
  std::optional<TimePoint> heartbeat =
      context_.latest_heartbeat ? context_.latest_heartbeat() : std::nullopt;
  json body = {{"status", "ok"}, {"scheduler", {{"latest_heartbeat", OptionalTime(heartbeat)}}}};
  if (std::optional<std::string> problem = context_.store_problem ? context_.store_problem() : std::nullopt) {
    body["status"] = "unhealthy";
    body["detail"] = *problem;
    return JsonResponse(body, 503);
  }
  return JsonResponse(body);
}

HttpResponse ApiRouter::ListDags(const View& v, const HttpRequest& request) const {
  const ParsedTarget target = ParseTarget(request.target);
  std::string error;
  std::optional<int> limit = QueryInt(target, "limit", 100, &error);
  std::optional<int> offset = QueryInt(target, "offset", 0, &error);
  if (!limit || !offset) return JsonError(400, error);

  auto records = context_.store->ListDags();
  if (!records.ok()) return StatusError(records.status());
  std::map<std::string, bool> paused;
  for (const DagRecord& r : *records) paused[r.dag_id] = r.is_paused;

  const TimePoint now = context_.clock->Now();
  json dags = json::array();
  int index = 0;
  for (const auto& [dag_id, dag] : v.dags->dags) {  // sorted by dag_id
    if (index++ < *offset) continue;
    if (static_cast<int>(dags.size()) >= *limit) continue;
    auto p = paused.find(dag_id);
    json summary = DagSummary(dag, p != paused.end() && p->second, v.dags->HasImportErrors(dag.file_path), now);
    RunQuery recent;
    recent.dag_id = dag_id;
    recent.limit = 10;
    json recent_runs = json::array();
    if (auto page = context_.store->ListRuns(recent); page.ok()) {
      for (const DagRun& run : page->runs) {
        recent_runs.push_back({{"dag_run_id", run.run_id}, {"state", std::string(ToString(run.state))}});
      }
    }
    summary["recent_runs"] = recent_runs;
    dags.push_back(summary);
  }
  json body = {{"dags", dags}, {"total_entries", v.dags->dags.size()}};
  return JsonResponse(body);
}

HttpResponse ApiRouter::GetDag(const View& v, const std::string& dag_id) const {
  const Dag* dag = v.dags->FindDag(dag_id);
  if (!dag) return JsonError(404, "DAG \"" + dag_id + "\" not found");
  auto record = context_.store->GetDag(dag_id);
  if (!record.ok()) return StatusError(record.status());
  bool is_paused = record->has_value() && (*record)->is_paused;
  json body = DagSummary(*dag, is_paused, v.dags->HasImportErrors(dag->file_path),
                         context_.clock->Now());
  json tasks = json::array();
  for (const Task& task : dag->tasks) {
    tasks.push_back({{"task_id", task.task_id},
                     {"command", task.command},
                     {"depends_on", task.depends_on},
                     {"trigger_rule", ToString(task.trigger_rule)},
                     {"retries", task.retries},
                     {"pool", task.pool},
                     {"priority_weight", task.priority_weight},
                     {"window", task.window ? json(*task.window) : json(nullptr)}});
  }
  body["tasks"] = tasks;
  body["params"] = dag->params;
  return JsonResponse(body);
}

HttpResponse ApiRouter::ListImportErrors(const View& v) const {
  json errors = json::array();
  for (const ImportError& e : v.dags->import_errors) {
    errors.push_back(
        {{"filename", e.filename}, {"line", e.line}, {"column", e.column}, {"message", e.message}});
  }
  json body = {{"import_errors", errors}, {"total_entries", errors.size()}};
  return JsonResponse(body);
}

}  // namespace nightshift

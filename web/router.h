// The REST API as a pure function from request to response (contract section 5). The Beast
// server in http_server.cc only moves bytes; everything a client sees is decided here.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>

#include "core/config.h"
#include "core/time.h"
#include "scheduler/dag_registry.h"
#include "scheduler/scheduler.h"
#include "store/store.h"
#include "web/http_types.h"

namespace nightshift {

// What the API reads. A router is used by one thread at a time (its store connection is its
// own); what other threads change (the config on SIGHUP, the DAGs on a rescan, the scheduler's
// counters) is read through snapshots taken once per request, so no lock is held while a
// request is answered.
struct ApiContext {
  // The current config; it is replaced as a whole on SIGHUP. May return nullptr.
  std::function<std::shared_ptr<const Config>()> config;
  // The DAGs as last loaded from the DAGs folder.
  std::function<std::shared_ptr<const DagsSnapshot>()> dags;
  Store* store = nullptr;
  const Clock* clock = nullptr;
  // Only for the router on the scheduler's thread: the requests that change state need it
  // (NeedsScheduler says which). Without it those requests get 503.
  Scheduler* scheduler = nullptr;
  // Asks the scheduler loop for a pass (after a trigger or a pause changed what is due).
  std::function<void()> wake_scheduler;
  // The last time the scheduler loop completed a pass; nullopt before the first one.
  std::function<std::optional<TimePoint>()> latest_heartbeat;
  // The scheduler's counters as of its last pass; nullopt (or unset) when there is no scheduler.
  std::function<std::optional<SchedulerMetrics>()> scheduler_metrics;
  // Why the state store takes no commits ("state store cannot commit: ... (N failures since
  // ...)"), nullopt while it does: health answers 503 with it, and changes are refused with 503.
  std::function<std::optional<std::string>()> store_problem;
  // Told of a change the store refused (disk full, read-only, I/O error, locked), so that the
  // scheduler loop counts it and retries (SchedulerLoop::CommitFailed).
  std::function<void(const Status&)> commit_failed;
  // The bearer token every POST, PATCH and DELETE needs (and GETs when read_requires_token).
  std::string api_token;
};

class ApiRouter {
 public:
  // Who may call a route: anyone; anyone unless the config sets read_requires_token; only a
  // request with the API token (and then only on the scheduler's thread: NeedsScheduler).
  enum class Access { kOpen, kRead, kWrite };
  // What a handler gets: the request, the snapshots it reads and the path's {parameters}.
  struct Call;
  // One row of the route table. Handle dispatches from it, a known path asked with another
  // method gets its 405 (and Allow header) from it, and a unit test checks that
  // web/openapi.json describes exactly its (method, pattern) pairs.
  struct Route {
    const char* method;   // GET, POST or PATCH; a GET route answers HEAD as well
    const char* pattern;  // e.g. "/api/v1/dags/{dag_id}": literal segments and {parameters}
    Access access;
    HttpResponse (*handler)(const ApiRouter& router, const Call& call);
  };
  // The route table: every route of the API, in the order they are matched.
  static std::span<const Route> Routes();

  explicit ApiRouter(ApiContext context) : context_(std::move(context)) {}
  HttpResponse Handle(const HttpRequest& request) const;
  // True for a request to a kWrite route that carries the right token: it must be handled by
  // the router whose context has the scheduler, on the scheduler's thread. Everything else
  // (reads, and refusals such as 401) can be answered by any router.
  bool NeedsScheduler(const HttpRequest& request) const;

 private:
  // The snapshots one request reads.
  struct View {
    std::shared_ptr<const Config> config;
    std::shared_ptr<const DagsSnapshot> dags;
  };

  HttpResponse Health() const;
  HttpResponse ListDags(const View& v, const HttpRequest& request) const;
  HttpResponse GetDag(const View& v, const std::string& dag_id) const;
  HttpResponse ListImportErrors(const View& v) const;
  HttpResponse PatchDag(const View& v, const std::string& dag_id, const HttpRequest& request) const;
  HttpResponse TriggerRun(const View& v, const std::string& dag_id, const HttpRequest& request) const;
  HttpResponse ListRuns(const View& v, const std::string& dag_id, const HttpRequest& request) const;
  HttpResponse GetRun(const std::string& dag_id, const std::string& run_id) const;
  HttpResponse ListTaskInstances(const std::string& dag_id, const std::string& run_id) const;
  HttpResponse PatchRun(const std::string& dag_id, const std::string& run_id, const HttpRequest& request) const;
  HttpResponse ClearTask(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                         const HttpRequest& request) const;
  HttpResponse PatchTask(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                         const HttpRequest& request) const;
  HttpResponse ListTries(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                         const HttpRequest& request) const;
  HttpResponse GetLog(const std::string& dag_id, const std::string& run_id, const std::string& task_id,
                      const std::string& try_number, const HttpRequest& request) const;
  HttpResponse ListWindows(const View& v) const;
  HttpResponse Grid(const View& v, const std::string& dag_id, const HttpRequest& request) const;
  HttpResponse Metrics(const View& v) const;
  HttpResponse OpenApi() const;
  // The task instance (by task_id and ?map_index=, default -1) of a run, or an error response.
  Result<TaskInstance> FindTaskInstance(const std::string& dag_id, const std::string& run_id,
                                        const std::string& task_id, const HttpRequest& request,
                                        HttpResponse* error) const;
  bool Authorized(const HttpRequest& request) const;
  // The answer to a change the scheduler or the store refused: 404, 400, 409, 503 when the store
  // cannot take it now, else 500.
  HttpResponse ChangeFailed(const Status& s) const;

  ApiContext context_;
};

// {"status":CODE,"title":"...","detail":"..."} with the matching HTTP status.
HttpResponse JsonError(int status, const std::string& detail);

// The HTTP status that answers a request whose work failed with `status` (not OK): 404 not
// found, 400 invalid argument, 409 already exists, 503 busy (worth retrying), 500 otherwise.
// The one mapping from Status to HTTP every handler uses.
int HttpStatusFor(const Status& status);
// The error response for a failed Status: HttpStatusFor's code; the detail is the message, and
// for a 5xx the whole Status text (its kind, e.g. "I/O error: ...", says where to look).
HttpResponse StatusError(const Status& status);

}  // namespace nightshift

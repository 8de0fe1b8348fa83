// The REST API as a pure function from request to response (contract section 5). The Beast
// server in http_server.cc only moves bytes; everything a client sees is decided here.
#pragma once

#include <functional>
#include <optional>

#include "core/config.h"
#include "core/time.h"
#include "scheduler/dag_registry.h"
#include "scheduler/scheduler.h"
#include "store/store.h"
#include "web/http_types.h"

namespace nightshift {

// What the API reads. All pointers outlive the router; the router runs on the daemon's one
// event-loop thread, so none of this needs locking.
struct ApiContext {
  const Config* config = nullptr;
  DagRegistry* dags = nullptr;
  Store* store = nullptr;
  const Clock* clock = nullptr;
  Scheduler* scheduler = nullptr;
  // Asks the scheduler loop for a pass (after a trigger or a pause changed what is due).
  std::function<void()> wake_scheduler;
  // The last time the scheduler loop completed a pass; nullopt before the first one.
  std::function<std::optional<TimePoint>()> latest_heartbeat;
  // The bearer token every POST, PATCH and DELETE needs (and GETs when read_requires_token).
  std::string api_token;
};

class ApiRouter {
 public:
  explicit ApiRouter(ApiContext context) : context_(std::move(context)) {}
  HttpResponse Handle(const HttpRequest& request) const;

 private:
  HttpResponse Health() const;
  HttpResponse ListDags(const HttpRequest& request) const;
  HttpResponse GetDag(const std::string& dag_id) const;
  HttpResponse ListImportErrors() const;
  HttpResponse PatchDag(const std::string& dag_id, const HttpRequest& request) const;
  HttpResponse TriggerRun(const std::string& dag_id, const HttpRequest& request) const;
  HttpResponse ListRuns(const std::string& dag_id, const HttpRequest& request) const;
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
  HttpResponse ListWindows() const;
  HttpResponse Grid(const std::string& dag_id, const HttpRequest& request) const;
  HttpResponse Metrics() const;
  HttpResponse OpenApi() const;
  // The task instance (by task_id and ?map_index=, default -1) of a run, or an error response.
  Result<TaskInstance> FindTaskInstance(const std::string& dag_id, const std::string& run_id,
                                        const std::string& task_id, const HttpRequest& request,
                                        HttpResponse* error) const;
  bool Authorized(const HttpRequest& request) const;

  ApiContext context_;
};

// Every (method, path pattern) the router answers, e.g. {"GET", "/api/v1/dags/{dag_id}"}: the
// OpenAPI description is checked against this list by a test.
const std::vector<std::pair<std::string, std::string>>& ApiRoutes();

// {"status":CODE,"title":"...","detail":"..."} with the matching HTTP status.
HttpResponse JsonError(int status, const std::string& detail);

}  // namespace nightshift

// The API as a pure function: requests in, responses out, no sockets.
#include "web/router.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <vector>

namespace nightshift {
namespace {

using json = nlohmann::json;

class FixedClock : public Clock {
 public:
  TimePoint Now() const override { return *ParseTimestamp("2026-11-28T12:00:00Z", "UTC"); }
};

class NullExecutor : public Executor {
 public:
  size_t FreeSlots() const override { return 100; }
  Status Submit(const TaskSpec&) override { return Status::OK(); }
  std::vector<ExecutorEvent> Drain() override { return {}; }
  Status Cancel(const TaskInstanceKey&) override { return Status::OK(); }
  std::vector<TaskInstanceKey> Adopt(std::span<const RunningTask>) override { return {}; }
};

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nightshift-router-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::filesystem::create_directories(dir_ + "/dags");
    Write("dags/etl.yaml",
          "description: nightly load\nschedule: '0 2 * * *'\ntags: [etl]\ntasks:\n"
          "  - {task_id: a, command: 'true'}\n  - {task_id: b, command: 'true', depends_on: [a]}\n");
    Write("dags/broken.yaml", "tasks:\n  - {task_id: a, command: 'true', depends_on: [nope]}\n");
    config_.dags_folder = dir_ + "/dags";
    config_.state_dir = dir_;
    store_ = OpenSqliteStore(dir_ + "/state.db").value();
    ASSERT_TRUE(store_->Migrate().ok());
    registry_ = std::make_unique<DagRegistry>(config_, *store_, clock_);
    ASSERT_TRUE(registry_->Refresh().ok());
    SchedulerOptions options;
    options.logs_dir = dir_ + "/logs";
    options.create_scheduled_runs = false;  // runs come from the tests' triggers only
    scheduler_ = std::make_unique<Scheduler>(options, *store_, executor_, clock_, registry_->dags());
    ApiContext context;
    context.config = [this] { return std::make_shared<const Config>(config_); };
    context.dags = [this] { return registry_->Snapshot(); };
    context.store = store_.get();
    context.clock = &clock_;
    context.scheduler = scheduler_.get();
    context.api_token = "s3cret";
    context.latest_heartbeat = [] { return std::optional<TimePoint>(); };
    context.scheduler_metrics = [this] { return std::optional<SchedulerMetrics>(scheduler_->metrics()); };
    context.store_problem = [this] { return store_problem_; };
    context.commit_failed = [this](const Status& s) { refused_.push_back(s); };
    router_ = std::make_unique<ApiRouter>(context);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& rel, const std::string& text) { std::ofstream(dir_ + "/" + rel) << text; }

  HttpResponse Call(const std::string& method, const std::string& target, const std::string& body = "",
                    bool auth = true) {
    HttpRequest r;
    r.method = method;
    r.target = target;
    r.body = body;
    if (auth) r.headers["authorization"] = "Bearer s3cret";
    return router_->Handle(r);
  }
  json Body(const HttpResponse& r) { return json::parse(r.body); }

  std::string dir_;
  Config config_;
  FixedClock clock_;
  NullExecutor executor_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<DagRegistry> registry_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ApiRouter> router_;
  std::optional<std::string> store_problem_;  // what the scheduler loop would report
  std::vector<Status> refused_;                // what the router told the loop
};

// While it lives, this process cannot write past the first byte of any file (RLIMIT_FSIZE): a
// real SQLite write fails as on a failing disk (SQLITE_IOERR), and reads still work.
class NoFileWrites {
 public:
  NoFileWrites() {
    getrlimit(RLIMIT_FSIZE, &saved_);
    signal(SIGXFSZ, SIG_IGN);  // the write fails with EFBIG instead of killing the process
    rlimit limit = saved_;
    limit.rlim_cur = 1;
    setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~NoFileWrites() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    signal(SIGXFSZ, SIG_DFL);
  }

 private:
  rlimit saved_{};
};

TEST_F(RouterTest, HealthIsOpenAndShaped) {
  HttpResponse r = Call("GET", "/api/v1/health", "", false);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json::parse(R"({"status":"ok","scheduler":{"latest_heartbeat":null}})"));
}

TEST_F(RouterTest, WhileTheStoreCannotCommitHealthIs503WithTheReasonAndChangesAreRefused) {
  store_problem_ = "state store cannot commit: COMMIT: database or disk is full (3 failures since 2026-11-28T11:59:00Z)";
  HttpResponse r = Call("GET", "/api/v1/health", "", false);
  EXPECT_EQ(r.status, 503);
  const json expected = {{"status", "unhealthy"},
                         {"scheduler", {{"latest_heartbeat", nullptr}}},
                         {"detail", *store_problem_}};
  EXPECT_EQ(Body(r), expected);
  // Every kind of change gets 503 and says why; nothing reaches the store.
  for (auto [method, target, body] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":"r1"})"},
           {"PATCH", "/api/v1/dags/etl", R"({"is_paused":true})"},
           {"PATCH", "/api/v1/dags/etl/dagRuns/r1", R"({"state":"failed"})"},
           {"PATCH", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a", R"({"state":"failed"})"},
           {"POST", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a/clear", "{}"}}) {
    r = Call(method, target, body);
    EXPECT_EQ(r.status, 503) << method << " " << target;
    EXPECT_EQ(Body(r)["title"], "Service Unavailable");
    EXPECT_EQ(Body(r)["detail"],
              *store_problem_ + "; nothing was changed: changes are refused until a commit succeeds "
                                "(GET /api/v1/health answers 200 again)");
  }
  EXPECT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", "{}", false).status, 401) << "the token is checked first";
  // Reads go on.
  EXPECT_EQ(Call("GET", "/api/v1/dags/etl").status, 200);
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags/etl"))["is_paused"], false);
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags/etl/dagRuns"))["total_entries"], 0);
  // The first commit that succeeds ends it.
  store_problem_.reset();
  EXPECT_EQ(Call("GET", "/api/v1/health", "", false).status, 200);
  EXPECT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":"r1"})").status, 200);
}

TEST_F(RouterTest, AChangeTheStoreCannotWriteIs503AndIsReportedToTheSchedulerLoop) {
  ASSERT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":"r0"})").status, 200);
  std::vector<HttpResponse> answers;
  {
    NoFileWrites failing_disk;
    answers.push_back(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":"r1"})"));
    answers.push_back(Call("PATCH", "/api/v1/dags/etl", R"({"is_paused":true})"));
    answers.push_back(Call("PATCH", "/api/v1/dags/etl/dagRuns/r0", R"({"state":"failed"})"));
  }
  for (const HttpResponse& r : answers) {
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_TRUE(Body(r)["detail"].get<std::string>().starts_with("state store cannot commit: ")) << r.body;
    EXPECT_TRUE(Body(r)["detail"].get<std::string>().ends_with("; nothing was changed, try again later")) << r.body;
  }
  ASSERT_EQ(refused_.size(), 3u);
  for (const Status& s : refused_) EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  // Nothing was changed, and once the disk writes again the same changes go through.
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags/etl/dagRuns"))["total_entries"], 1);
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags/etl"))["is_paused"], false);
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags/etl/dagRuns/r0"))["state"], "queued");
  EXPECT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":"r1"})").status, 200);
  EXPECT_EQ(Call("PATCH", "/api/v1/dags/etl", R"({"is_paused":true})").status, 200);
  EXPECT_EQ(Call("PATCH", "/api/v1/dags/etl/dagRuns/r0", R"({"state":"failed"})").status, 200);
}

TEST_F(RouterTest, DagsListHasTheContractFields) {
  json body = Body(Call("GET", "/api/v1/dags", "", false));
  EXPECT_EQ(body["total_entries"], 1);
  const json& dag = body["dags"][0];
  EXPECT_EQ(dag["dag_id"], "etl");
  EXPECT_EQ(dag["description"], "nightly load");
  EXPECT_EQ(dag["schedule"], "0 2 * * *");
  EXPECT_EQ(dag["is_paused"], false);
  EXPECT_EQ(dag["window"], nullptr);
  EXPECT_EQ(dag["next_run"], "2026-11-29T02:00:00Z");
  EXPECT_EQ(dag["tags"], json::array({"etl"}));
  EXPECT_EQ(dag["has_import_errors"], false);
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags?limit=0"))["dags"].size(), 0u);
  EXPECT_EQ(Call("GET", "/api/v1/dags?limit=abc").status, 400);
}

TEST_F(RouterTest, ImportErrorsCarryPosition) {
  json errors = Body(Call("GET", "/api/v1/importErrors", "", false))["import_errors"];
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0]["filename"], dir_ + "/dags/broken.yaml");
  EXPECT_EQ(errors[0]["line"], 2);
  EXPECT_GT(errors[0]["column"], 1);
}

TEST_F(RouterTest, UnknownThingsAreJson404s) {
  HttpResponse r = Call("GET", "/api/v1/dags/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Body(r)["title"], "Not Found");
  EXPECT_EQ(Call("GET", "/api/v1/dags/etl/dagRuns/nope").status, 404);
  EXPECT_EQ(Call("GET", "/api/v1/whatever").status, 404);
}

TEST_F(RouterTest, EveryIdTheLoaderAcceptsIsServedAndNoOther) {
  // The loader and the router share one id rule: what loads is reachable, whatever its dots.
  const std::string longest = "x" + std::string(198, 'y') + ".";
  int file = 0;
  for (const std::string& id : {std::string("a..b"), std::string("...x"), longest}) {
    Write("dags/id" + std::to_string(++file) + ".yaml",
          "dag_id: '" + id + "'\ntasks:\n  - {task_id: ..t, command: 'true'}\n");
  }
  ASSERT_TRUE(registry_->Refresh().ok());
  for (const std::string& id : {std::string("a..b"), std::string("...x"), longest}) {
    HttpResponse r = Call("GET", "/api/v1/dags/" + id);
    EXPECT_EQ(r.status, 200) << id << ": " << r.body;
    EXPECT_EQ(Call("GET", "/api/v1/dags/" + id + "/dagRuns/r/taskInstances/..t/tries").status, 404) << id;
  }
  for (const std::string& id : {std::string("."), std::string("..."), longest + "z"}) {
    EXPECT_EQ(Call("GET", "/api/v1/dags/" + id + "/dagRuns").status, 400) << id;
    EXPECT_EQ(Call("GET", "/api/v1/dags/etl/dagRuns/r/taskInstances/" + id + "/tries").status, 400) << id;
  }
  EXPECT_EQ(Call("GET", "/api/v1/dags/etl/dagRuns/...").status, 400);
  HttpResponse r = Call("POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":".."})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["detail"],
            "invalid dag_run_id: use 1 to 250 letters, digits and \"_.~:+-\", not only dots");
}

TEST_F(RouterTest, WritesNeedTheRightToken) {
  EXPECT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", "{}", false).status, 401);
  HttpRequest r;
  r.method = "POST";
  r.target = "/api/v1/dags/etl/dagRuns";
  r.headers["authorization"] = "Bearer s3cre";
  EXPECT_EQ(router_->Handle(r).status, 401);
  r.headers["authorization"] = "Bearer s3cret!";
  EXPECT_EQ(router_->Handle(r).status, 401);
  r.headers["authorization"] = "s3cret";
  EXPECT_EQ(router_->Handle(r).status, 401);
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags/etl/dagRuns"))["total_entries"], 0);
  config_.read_requires_token = true;
  EXPECT_EQ(Call("GET", "/api/v1/dags", "", false).status, 401);
  EXPECT_EQ(Call("GET", "/api/v1/health", "", false).status, 200);
}

TEST_F(RouterTest, TriggerListAndConflict) {
  HttpResponse r = Call("POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":"r1","conf":{"x":1}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["dag_run_id"], "r1");
  EXPECT_EQ(Body(r)["conf"], json::parse(R"({"x":1})"));
  EXPECT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":"r1"})").status, 409);
  EXPECT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"conf":"x"})").status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"bogus":1})").status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"logical_date":"yesterday"})").status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", "{").status, 400);
  ASSERT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns",
                 R"({"dag_run_id":"r0","logical_date":"2026-01-01T00:00:00Z"})").status, 200);
  json runs = Body(Call("GET", "/api/v1/dags/etl/dagRuns"));
  EXPECT_EQ(runs["total_entries"], 2);
  EXPECT_EQ(runs["dag_runs"][0]["dag_run_id"], "r1");  // newest logical_date first
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags/etl/dagRuns?state=success"))["total_entries"], 0);
  EXPECT_EQ(Call("GET", "/api/v1/dags/etl/dagRuns?state=bogus").status, 400);
  json tis = Body(Call("GET", "/api/v1/dags/etl/dagRuns/r1/taskInstances"))["task_instances"];
  ASSERT_EQ(tis.size(), 2u);
  EXPECT_EQ(tis[0]["task_id"], "a");
  EXPECT_EQ(tis[0]["state"], "scheduled");
  EXPECT_EQ(tis[0]["map_index"], -1);
}

// A conf nested 400,000 deep fits in the 1 MiB body limit; the JSON library parses it without
// recursion but prints and copies it recursively, which overflowed the daemon's stack.
TEST_F(RouterTest, BodiesNestedTooDeepAreA400) {
  const std::string deep = std::string(400000, '[') + std::string(400000, ']');
  for (const std::string& target : {std::string("/api/v1/dags/etl/dagRuns"), std::string("/api/v1/dags/etl")}) {
    const std::string method = target.ends_with("dagRuns") ? "POST" : "PATCH";
    HttpResponse r = Call(method, target, R"({"conf": {"a": )" + deep + "}}");
    ASSERT_EQ(r.status, 400) << target;
    EXPECT_EQ(Body(r)["detail"], "request body is nested deeper than 64 levels (at byte 77)") << target;
  }
  EXPECT_EQ(Call("GET", "/api/v1/health").status, 200);
  const std::string at_limit = std::string(62, '[') + std::string(62, ']');  // 64 with the body and conf objects
  HttpResponse ok = Call("POST", "/api/v1/dags/etl/dagRuns", R"({"conf": {"a": )" + at_limit + "}}");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(Body(ok)["conf"]["a"].dump(), at_limit);
}

TEST_F(RouterTest, BodiesThatAreNotUtf8AreA400) {
  HttpResponse r = Call("POST", "/api/v1/dags/etl/dagRuns", "{\"conf\": {\"city\": \"Z\xfc" "rich\"}}");
  ASSERT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["detail"], "request body is not valid UTF-8 (byte 0xFC) at byte 20");
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags/etl/dagRuns"))["total_entries"], 0);
}

TEST_F(RouterTest, PauseAndUnpause) {
  HttpResponse r = Call("PATCH", "/api/v1/dags/etl", R"({"is_paused":true})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["is_paused"], true);
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags/etl"))["is_paused"], true);
  EXPECT_EQ(Call("PATCH", "/api/v1/dags/etl", R"({"is_paused":"yes"})").status, 400);
  EXPECT_EQ(Call("PATCH", "/api/v1/dags/nope", R"({"is_paused":true})").status, 404);
}

// The route table the router dispatches from is the one web/openapi.json describes: every
// (method, path) in one is in the other.
TEST_F(RouterTest, OpenApiDescribesExactlyTheRouteTable) {
  HttpResponse r = Call("GET", "/api/v1/openapi.json", "", false);
  ASSERT_EQ(r.status, 200);
  json spec = Body(r);
  EXPECT_EQ(spec["openapi"].get<std::string>().substr(0, 2), "3.");
  std::ifstream source(std::string(NIGHTSHIFT_SOURCE_DIR) + "/web/openapi.json");
  ASSERT_TRUE(source) << "web/openapi.json not found in the source tree";
  EXPECT_EQ(json::parse(source), spec) << "the binary serves a different openapi.json than web/openapi.json";
  std::set<std::pair<std::string, std::string>> described;
  for (const auto& [path, ops] : spec["paths"].items()) {
    for (const auto& [method, op] : ops.items()) {
      std::string upper = method;
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      described.insert({upper, path});
    }
  }
  std::set<std::pair<std::string, std::string>> routed;
  for (const ApiRouter::Route& route : ApiRouter::Routes()) {
    EXPECT_TRUE(routed.insert({route.method, route.pattern}).second) << route.method << " " << route.pattern;
  }
  EXPECT_EQ(described, routed);
}

// A path the table knows, asked with a method it does not list for that path, gets 405 and an
// Allow header naming exactly the table's methods; every route is reached by its own method.
TEST_F(RouterTest, WrongMethodsGet405FromTheRouteTable) {
  ASSERT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":"r1"})").status, 200);
  std::map<std::string, std::set<std::string>> methods;
  for (const ApiRouter::Route& route : ApiRouter::Routes()) methods[route.pattern].insert(route.method);
  for (const auto& [pattern, allowed] : methods) {
    std::string path = pattern;
    const std::vector<std::pair<std::string, std::string>> params = {
        {"{dag_id}", "etl"}, {"{dag_run_id}", "r1"}, {"{task_id}", "a"}, {"{try_number}", "1"}};
    for (const auto& [param, value] : params) {
      if (size_t at = path.find(param); at != std::string::npos) path.replace(at, param.size(), value);
    }
    std::string allow;
    for (std::string m : {"GET", "PATCH", "POST"}) {
      if (allowed.count(m)) allow += (allow.empty() ? "" : ", ") + m;
    }
    for (std::string method : {"GET", "POST", "PATCH", "PUT", "DELETE"}) {
      HttpResponse r = Call(method, path, "{}");
      if (allowed.count(method)) {
        EXPECT_NE(r.status, 405) << method << " " << path;
        EXPECT_FALSE(r.body.find("no route") != std::string::npos) << method << " " << path << ": " << r.body;
        continue;
      }
      EXPECT_EQ(r.status, 405) << method << " " << path;
      std::string header;
      for (const auto& [name, value] : r.headers) {
        if (name == "Allow") header = value;
      }
      EXPECT_EQ(header, allow) << method << " " << path;
    }
  }
  EXPECT_EQ(Call("HEAD", "/api/v1/dags/etl").status, 200);
}

TEST(StatusToHttp, OneMappingForEveryStatus) {
  EXPECT_EQ(HttpStatusFor(Status::NotFound("x")), 404);
  EXPECT_EQ(HttpStatusFor(Status::InvalidArgument("x")), 400);
  EXPECT_EQ(HttpStatusFor(Status::AlreadyExists("x")), 409);
  EXPECT_EQ(HttpStatusFor(Status::Busy("x")), 503);
  EXPECT_EQ(HttpStatusFor(Status::IOError("x")), 500);
  EXPECT_EQ(HttpStatusFor(Status::Corruption("x")), 500);
  HttpResponse client = StatusError(Status::InvalidArgument("bad field"));
  EXPECT_EQ(client.status, 400);
  EXPECT_EQ(json::parse(client.body), json::parse(R"({"status":400,"title":"Bad Request","detail":"bad field"})"));
  HttpResponse server = StatusError(Status::IOError("disk"));
  EXPECT_EQ(server.status, 500);
  EXPECT_EQ(json::parse(server.body)["detail"], Status::IOError("disk").ToString());
}

// The dashboard takes its state sets from here: they are core/states's, whatever states exist.
TEST_F(RouterTest, StatesAreCoresAndOpen) {
  config_.read_requires_token = true;
  HttpResponse r = Call("GET", "/api/v1/states", "", false);
  ASSERT_EQ(r.status, 200);
  json body = Body(r);
  std::set<std::string> finished_tasks = body["finished_task_states"];
  ASSERT_EQ(body["task_states"].size(), AllTaskStates().size());
  for (TaskState state : AllTaskStates()) {
    EXPECT_EQ(finished_tasks.count(std::string(ToString(state))) == 1, IsFinished(state)) << ToString(state);
  }
  EXPECT_EQ(body["finished_task_states"], json::parse(R"(["success","failed","upstream_failed","skipped"])"));
  std::set<std::string> finished_runs = body["finished_run_states"];
  ASSERT_EQ(body["run_states"].size(), AllRunStates().size());
  for (RunState state : AllRunStates()) {
    EXPECT_EQ(finished_runs.count(std::string(ToString(state))) == 1, IsFinished(state)) << ToString(state);
  }
}

TEST_F(RouterTest, LogsFollowByOffsetAndIdsCannotEscape) {
  ASSERT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":"r1"})").status, 200);
  ASSERT_TRUE(scheduler_->RunPass().ok());  // a is queued, its try row written
  auto run = store_->GetRun("etl", "r1");
  auto tis = store_->ListTaskInstances((*run)->id);
  auto tries = store_->ListTries((*tis)[0].id);
  ASSERT_EQ(tries->size(), 1u);
  std::filesystem::create_directories(std::filesystem::path((*tries)[0].log_path).parent_path());
  std::ofstream((*tries)[0].log_path) << "line one\nline two\n";

  HttpResponse r = Call("GET", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a/logs/1");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "line one\nline two\n");
  auto header = [&](const HttpResponse& resp, const std::string& name) {
    for (const auto& [k, v] : resp.headers) {
      if (k == name) return v;
    }
    return std::string();
  };
  EXPECT_EQ(header(r, "X-Next-Offset"), "18");
  EXPECT_EQ(header(r, "X-Log-Complete"), "false");  // the try is still queued
  r = Call("GET", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a/logs/1?offset=9");
  EXPECT_EQ(r.body, "line two\n");
  EXPECT_EQ(Call("GET", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a/logs/2").status, 404);
  EXPECT_EQ(Call("GET", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a/logs/x").status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/dags/etl/dagRuns/r1/taskInstances/..%2F..%2Fetc%2Fpasswd/logs/1").status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/dags/etl/dagRuns/..%2F..%2F/taskInstances/a/logs/1").status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/dags/..%2Fetc/dagRuns/r1/taskInstances/a/logs/1").status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a/logs/1?offset=-1").status, 400);

  json tries_body = Body(Call("GET", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a/tries"));
  ASSERT_EQ(tries_body["tries"].size(), 1u);
  EXPECT_EQ(tries_body["tries"][0]["state"], "queued");
}

TEST_F(RouterTest, MarkAndClearMoveTheRunOn) {
  ASSERT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":"r1"})").status, 200);
  ASSERT_TRUE(scheduler_->RunPass().ok());
  HttpResponse r = Call("PATCH", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a", R"({"state":"failed"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["task_instances"][0]["state"], "failed");
  ASSERT_TRUE(scheduler_->RunPass().ok());
  json tis = Body(Call("GET", "/api/v1/dags/etl/dagRuns/r1/taskInstances"))["task_instances"];
  EXPECT_EQ(tis[1]["state"], "upstream_failed");
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags/etl/dagRuns/r1"))["state"], "failed");
  // Marking a success lets b run: the run is running again.
  ASSERT_EQ(Call("PATCH", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a", R"({"state":"success"})").status, 200);
  ASSERT_TRUE(scheduler_->RunPass().ok());
  tis = Body(Call("GET", "/api/v1/dags/etl/dagRuns/r1/taskInstances"))["task_instances"];
  EXPECT_EQ(tis[1]["state"], "queued") << tis.dump();
  EXPECT_EQ(Body(Call("GET", "/api/v1/dags/etl/dagRuns/r1"))["state"], "running");
  // Clear with downstream: both back to scheduled.
  r = Call("POST", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a/clear", R"({"downstream":true})");
  ASSERT_EQ(r.status, 200) << r.body;
  tis = Body(r)["task_instances"];
  EXPECT_EQ(tis[0]["state"], "scheduled");
  EXPECT_EQ(tis[1]["state"], "scheduled");
  EXPECT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns/r1/taskInstances/zz/clear", "{}").status, 404);
  EXPECT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a/clear", R"({"downstream":1})").status, 400);
  EXPECT_EQ(Call("PATCH", "/api/v1/dags/etl/dagRuns/r1/taskInstances/a", R"({"state":"running"})").status, 400);
  // Mark the whole run.
  r = Call("PATCH", "/api/v1/dags/etl/dagRuns/r1", R"({"state":"success"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["state"], "success");
  EXPECT_EQ(Call("PATCH", "/api/v1/dags/etl/dagRuns/nope", R"({"state":"success"})").status, 404);
  EXPECT_EQ(Call("PATCH", "/api/v1/dags/etl/dagRuns/r1", R"({"state":"queued"})").status, 400);
  EXPECT_EQ(Call("PATCH", "/api/v1/dags/etl/dagRuns/r1", R"({"state":"failed"})", false).status, 401);
}

TEST_F(RouterTest, GridWindowsAndMetrics) {
  ASSERT_EQ(Call("POST", "/api/v1/dags/etl/dagRuns", R"({"dag_run_id":"r1"})").status, 200);
  ASSERT_TRUE(scheduler_->RunPass().ok());
  json grid = Body(Call("GET", "/api/v1/dags/etl/grid"));
  EXPECT_EQ(grid["tasks"], json::array({"a", "b"}));
  ASSERT_EQ(grid["runs"].size(), 1u);
  EXPECT_EQ(grid["runs"][0]["states"], json::array({"queued", "scheduled"}));
  EXPECT_EQ(Call("GET", "/api/v1/dags/nope/grid").status, 404);

  config_.windows.emplace("nightly", *Window::Parse("nightly", "UTC", {"22:00-06:00"}, OnClose::kKill));
  json windows = Body(Call("GET", "/api/v1/windows"))["windows"];
  ASSERT_EQ(windows.size(), 1u);
  EXPECT_EQ(windows[0]["name"], "nightly");
  EXPECT_EQ(windows[0]["is_open"], false);
  EXPECT_EQ(windows[0]["next_change"], "2026-11-28T22:00:00+00:00");

  HttpResponse m = Call("GET", "/metrics", "", false);
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("nightshift_dag_runs{state=\"running\"} 1\n"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("nightshift_task_instances{state=\"queued\"} 1\n"), std::string::npos);
  EXPECT_NE(m.body.find("nightshift_window_open{window=\"nightly\"} 0\n"), std::string::npos);
  EXPECT_NE(m.body.find("nightshift_pool_used{pool=\"default\"} 1\n"), std::string::npos);
  EXPECT_NE(m.body.find("# TYPE nightshift_scheduler_pass_duration_seconds histogram"), std::string::npos);
  EXPECT_NE(m.body.find("nightshift_scheduler_passes_total 1\n"), std::string::npos);
}

TEST_F(RouterTest, OnlyAuthorizedChangesNeedTheScheduler) {
  auto request = [](const std::string& method, const std::string& target, bool auth) {
    HttpRequest r;
    r.method = method;
    r.target = target;
    if (auth) r.headers["authorization"] = "Bearer s3cret";
    return r;
  };
  EXPECT_FALSE(router_->NeedsScheduler(request("GET", "/api/v1/dags", true)));
  EXPECT_FALSE(router_->NeedsScheduler(request("HEAD", "/api/v1/dags/etl", true)));
  EXPECT_FALSE(router_->NeedsScheduler(request("POST", "/api/v1/dags/etl/dagRuns", false)));
  EXPECT_FALSE(router_->NeedsScheduler(request("POST", "/static/app.js", true)));
  EXPECT_TRUE(router_->NeedsScheduler(request("POST", "/api/v1/dags/etl/dagRuns", true)));
  EXPECT_TRUE(router_->NeedsScheduler(request("PATCH", "/api/v1/dags/etl", true)));

  // The API thread's router has no scheduler: it answers reads and refusals itself, and a
  // change that reached it by mistake is refused rather than half done.
  ApiContext reader;
  reader.config = [this] { return std::make_shared<const Config>(config_); };
  reader.dags = [this] { return registry_->Snapshot(); };
  reader.store = store_.get();
  reader.clock = &clock_;
  reader.api_token = "s3cret";
  ApiRouter read_router(reader);
  EXPECT_EQ(read_router.Handle(request("GET", "/api/v1/dags/etl", false)).status, 200);
  EXPECT_EQ(read_router.Handle(request("POST", "/api/v1/dags/etl/dagRuns", false)).status, 401);
  EXPECT_EQ(read_router.Handle(request("POST", "/api/v1/dags/etl/dagRuns", true)).status, 503);
  HttpResponse m = read_router.Handle(request("GET", "/metrics", false));
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(m.body.find("nightshift_scheduler_passes_total"), std::string::npos) << m.body;
}

TEST_F(RouterTest, ReadsTheDagsOfTheLatestSnapshot) {
  std::shared_ptr<const DagsSnapshot> before = registry_->Snapshot();
  Write("dags/late.yaml", "tasks:\n  - {task_id: a, command: 'true'}\n");
  EXPECT_EQ(Call("GET", "/api/v1/dags/late").status, 404);  // not rescanned yet
  ASSERT_TRUE(registry_->Refresh().value());
  EXPECT_EQ(Call("GET", "/api/v1/dags/late").status, 200);
  // A reader still holding the earlier snapshot keeps seeing what it saw.
  EXPECT_EQ(before->FindDag("late"), nullptr);
  EXPECT_NE(before->FindDag("etl"), nullptr);
}

TEST_F(RouterTest, ServesTheDashboardFromTheBinary) {
  HttpResponse r = Call("GET", "/", "", false);
  if (r.status == 404) GTEST_SKIP() << "no dashboard files embedded yet";
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(Call("GET", "/static/../CMakeLists.txt", "", false).status, 404);
}

}  // namespace
}  // namespace nightshift

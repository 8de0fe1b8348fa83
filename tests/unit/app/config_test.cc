#include "app/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "dags/dag_folder.h"
#include "scheduler/dag_registry.h"

namespace nightshift {
namespace {

namespace fs = std::filesystem;
using std::chrono::hours;
using std::chrono::seconds;

const std::string kSource = NIGHTSHIFT_SOURCE_DIR;
constexpr char kPath[] = "/etc/nightshift/nightshift.yaml";

Config MustLoad(std::string_view text, const std::string& path = kPath) {
  Result<Config> config = LoadConfigText(text, path);
  EXPECT_TRUE(config.ok()) << config.status().message();
  return config.ok() ? *config : Config{};
}

// Loads `text` and expects the Status message to be exactly these lines.
void ExpectErrors(std::string_view text, const std::string& expected) {
  Result<Config> config = LoadConfigText(text, kPath);
  ASSERT_FALSE(config.ok());
  EXPECT_TRUE(config.status().IsInvalidArgument());
  EXPECT_EQ(config.status().message(), expected);
}

TEST(ConfigTest, EmptyFileGivesDefaultsResolvedNextToIt) {
  Config config = MustLoad("# nothing set\n");
  EXPECT_EQ(config.config_path, kPath);
  EXPECT_EQ(config.dags_folder, "/etc/nightshift/dags");
  EXPECT_EQ(config.state_dir, "/etc/nightshift/.nightshift");
  EXPECT_EQ(config.listen, "127.0.0.1:8080");
  EXPECT_EQ(config.executor, "local");
  EXPECT_EQ(config.parallelism, 32);
  EXPECT_EQ(config.pools, (std::map<std::string, int>{{"default", 128}}));
  EXPECT_TRUE(config.windows.empty());
  EXPECT_EQ(config.retention_max_runs_per_dag, 500);
  EXPECT_EQ(config.retention_max_age, hours(24 * 30));
  EXPECT_EQ(config.token_file, "");
  EXPECT_EQ(config.TokenFile(), "/etc/nightshift/.nightshift/api-token");
  EXPECT_FALSE(config.read_requires_token);
  EXPECT_EQ(config.shutdown_grace, seconds(30));
  EXPECT_EQ(config.kill_grace, seconds(10));
  EXPECT_EQ(config.slurm.poll_interval, seconds(2));
  EXPECT_FALSE(config.slurm.partition.has_value());
}

TEST(ConfigTest, EveryFieldIsRead) {
  Config config = MustLoad(R"(dags_folder: /srv/dags
state_dir: state
listen: 0.0.0.0:9090
executor: slurm
parallelism: 8
pools: {db: 2, gpu: 4}
windows:
  nightly:
    timezone: Europe/Berlin
    open: ["mon-fri 22:00-06:00", "sat,sun 00:00-24:00"]
    on_close: kill
  always:
    open: "00:00-24:00"
retention: {max_runs_per_dag: 50, max_age: 7d}
auth:
  token_file: secrets/token
  read_requires_token: true
shutdown_grace: 1m
kill_grace: 3s
slurm:
  partition: batch
  account: proj42
  qos: normal
  extra_args: ["--mem=4G", "--exclusive"]
  poll_interval: 10s
  shared_dir: /scratch/nightshift
)");
  EXPECT_EQ(config.dags_folder, "/srv/dags");
  EXPECT_EQ(config.state_dir, "/etc/nightshift/state");
  EXPECT_EQ(config.listen, "0.0.0.0:9090");
  EXPECT_EQ(config.executor, "slurm");
  EXPECT_EQ(config.parallelism, 8);
  EXPECT_EQ(config.pools, (std::map<std::string, int>{{"db", 2}, {"default", 128}, {"gpu", 4}}));
  ASSERT_EQ(config.windows.size(), 2u);
  const Window& nightly = config.windows.at("nightly");
  EXPECT_EQ(nightly.name(), "nightly");
  EXPECT_EQ(nightly.timezone(), "Europe/Berlin");
  EXPECT_EQ(nightly.on_close(), OnClose::kKill);
  ASSERT_EQ(nightly.ranges().size(), 2u);
  EXPECT_EQ(nightly.ranges()[0].start_second, 22 * 3600);
  EXPECT_EQ(nightly.ranges()[0].end_second, 6 * 3600);
  EXPECT_EQ(nightly.ranges()[0].days.count(), 5u);
  EXPECT_EQ(nightly.ranges()[1].days.count(), 2u);
  const Window& always = config.windows.at("always");
  EXPECT_EQ(always.timezone(), "UTC");
  EXPECT_EQ(always.on_close(), OnClose::kDrain);
  EXPECT_EQ(always.ranges().size(), 1u);
  EXPECT_EQ(config.retention_max_runs_per_dag, 50);
  EXPECT_EQ(config.retention_max_age, hours(24 * 7));
  EXPECT_EQ(config.token_file, "/etc/nightshift/secrets/token");
  EXPECT_TRUE(config.read_requires_token);
  EXPECT_EQ(config.shutdown_grace, seconds(60));
  EXPECT_EQ(config.kill_grace, seconds(3));
  EXPECT_EQ(config.slurm.partition, "batch");
  EXPECT_EQ(config.slurm.account, "proj42");
  EXPECT_EQ(config.slurm.qos, "normal");
  EXPECT_EQ(config.slurm.extra_args, (std::vector<std::string>{"--mem=4G", "--exclusive"}));
  EXPECT_EQ(config.slurm.poll_interval, seconds(10));
  EXPECT_EQ(config.slurm.shared_dir, "/scratch/nightshift");
}

TEST(ConfigTest, DefaultPoolCanBeResized) {
  Config config = MustLoad("pools: {default: 4}\n");
  EXPECT_EQ(config.pools, (std::map<std::string, int>{{"default", 4}}));
}

TEST(ConfigTest, WindowIsOpenWhenItSaysSo) {
  Config config =
      MustLoad("windows:\n  nightly:\n    timezone: Europe/Berlin\n    open: [\"mon-fri 22:00-06:00\"]\n");
  const Window& nightly = config.windows.at("nightly");
  // Friday 2026-11-27 23:00 in Berlin is 22:00 UTC; Saturday noon is not in the window.
  EXPECT_TRUE(nightly.IsOpen(*ParseTimestamp("2026-11-27T22:00:00Z", "UTC")));
  EXPECT_FALSE(nightly.IsOpen(*ParseTimestamp("2026-11-28T11:00:00Z", "UTC")));
}

TEST(ConfigTest, RelativePathsAreResolvedAgainstTheConfigsFolder) {
  Config config = MustLoad("dags_folder: ./dags/\nstate_dir: ../var/state\nauth: {token_file: ./t}\n",
                           "/opt/app/conf/nightshift.yaml");
  EXPECT_EQ(config.dags_folder, "/opt/app/conf/dags");
  EXPECT_EQ(config.state_dir, "/opt/app/var/state");
  EXPECT_EQ(config.token_file, "/opt/app/conf/t");
}

TEST(ConfigTest, RelativeConfigPathResolvesFromTheWorkingDirectory) {
  Config config = MustLoad("dags_folder: dags\n", "conf/nightshift.yaml");
  EXPECT_EQ(config.dags_folder, (fs::current_path() / "conf/dags").lexically_normal().string());
}

TEST(ConfigTest, BareConfigFileNameResolvesFromTheWorkingDirectory) {
  Config config = MustLoad("dags_folder: dags\n", "nightshift.yaml");
  EXPECT_EQ(config.dags_folder, (fs::current_path() / "dags").lexically_normal().string());
  EXPECT_EQ(config.state_dir, (fs::current_path() / ".nightshift").lexically_normal().string());
}

TEST(ConfigTest, HomeIsExpanded) {
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') GTEST_SKIP() << "no HOME";
  Config config = MustLoad("state_dir: ~/nightshift\n");
  EXPECT_EQ(config.state_dir, (fs::path(home) / "nightshift").lexically_normal().string());
}

TEST(ConfigTest, NullKeepsTheDefault) {
  Config config = MustLoad("listen: null\nauth:\n  token_file: null\n");
  EXPECT_EQ(config.listen, "127.0.0.1:8080");
  EXPECT_EQ(config.token_file, "");
}

TEST(ConfigTest, ListenForms) {
  EXPECT_EQ(MustLoad("listen: \"[::1]:8080\"\n").listen, "[::1]:8080");
  EXPECT_EQ(MustLoad("listen: localhost:0\n").listen, "localhost:0");
}

// --- errors --------------------------------------------------------------------------------

TEST(ConfigErrorTest, MissingFileIsAnIOError) {
  Result<Config> config = LoadConfig("/nonexistent/nightshift.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), Status::Code::kIOError);
  EXPECT_EQ(config.status().message(),
            "cannot read config /nonexistent/nightshift.yaml: No such file or directory");
}

TEST(ConfigErrorTest, Syntax) {
  ExpectErrors("pools: {db: 2\nlisten: x\n",
               std::string(kPath) + ":2:7: YAML syntax error: end of map flow not found");
}

TEST(ConfigErrorTest, InvalidUtf8IsRefusedAtTheByte) {
  ExpectErrors("pools:\n  r\xE9seau: 2\n",
               std::string(kPath) + ":2:4: not valid UTF-8 (byte 0xE9); save the file as UTF-8");
}

TEST(ConfigErrorTest, NotAMapping) {
  ExpectErrors("- a\n", std::string(kPath) + ":1:1: config: expected a mapping, got a list");
}

TEST(ConfigErrorTest, UnknownFieldWithSuggestion) {
  ExpectErrors("dag_folder: ./dags\n",
               std::string(kPath) + ":1:1: unknown field \"dag_folder\" (did you mean \"dags_folder\"?)");
  ExpectErrors("paralelism: 4\n",
               std::string(kPath) + ":1:1: unknown field \"paralelism\" (did you mean \"parallelism\"?)");
}

TEST(ConfigErrorTest, UnknownNestedField) {
  ExpectErrors("windows:\n  nightly:\n    open: [\"22:00-06:00\"]\n    on_clsoe: kill\n",
               std::string(kPath) + ":4:5: unknown field \"on_clsoe\" (did you mean \"on_close\"?)");
}

TEST(ConfigErrorTest, WrongTypes) {
  ExpectErrors("parallelism: lots\nauth: {read_requires_token: sometimes}\ndags_folder: [a]\n",
               std::string(kPath) + ":1:14: parallelism: expected an integer, got \"lots\"\n" + kPath +
                   ":2:29: auth.read_requires_token: expected true or false, got \"sometimes\"\n" + kPath +
                   ":3:14: dags_folder: expected a string, got a list");
}

TEST(ConfigErrorTest, BadDuration) {
  ExpectErrors(
      "retention:\n  max_age: 30 days\n",
      std::string(kPath) +
          ":2:12: retention.max_age: invalid duration \"30 days\": unknown unit at position 3 (units: ms, "
          "s, m, h, d, w)");
}

TEST(ConfigErrorTest, BadGraceDuration) {
  ExpectErrors(
      "kill_grace: soon\n",
      std::string(kPath) +
          ":1:13: kill_grace: invalid duration \"soon\": expected a number at position 1 (use e.g. 90, "
          "90s, 5m, 1h30m)");
}

TEST(ConfigErrorTest, BadWindowRangePointsAtTheEntry) {
  ExpectErrors(R"(windows:
  nightly:
    open:
      - "mon-fri 22:00-06:00"
      - "mon-fri 25:00-06:00"
)",
               std::string(kPath) + ":5:9: window nightly: bad range \"mon-fri 25:00-06:00\": " + [] {
                 Result<WindowRange> r = Window::ParseRange("mon-fri 25:00-06:00");
                 std::string m = r.status().message();
                 return m.substr(m.find("\": ") + 3);
               }());
}

TEST(ConfigErrorTest, WindowWithoutOpen) {
  ExpectErrors("windows:\n  nightly:\n    timezone: UTC\n",
               std::string(kPath) +
                   ":3:5: windows.nightly: missing field \"open\", e.g. open: [\"mon-fri 22:00-06:00\"]");
}

TEST(ConfigErrorTest, WindowWithEmptyOpen) {
  ExpectErrors(
      "windows:\n  nightly:\n    open: []\n",
      std::string(kPath) + ":3:11: windows.nightly.open: the list is empty; the window would never open");
}

TEST(ConfigErrorTest, BadOnClose) {
  ExpectErrors("windows:\n  nightly:\n    open: [\"22:00-06:00\"]\n    on_close: drian\n",
               std::string(kPath) +
                   ":4:15: windows.nightly.on_close: unknown value \"drian\" (did you mean \"drain\"?)");
}

TEST(ConfigErrorTest, UnknownTimeZoneInWindow) {
  ExpectErrors("windows:\n  nightly:\n    timezone: Europe/Berln\n    open: [\"22:00-06:00\"]\n",
               std::string(kPath) +
                   ":3:15: windows.nightly.timezone: unknown time zone \"Europe/Berln\" (did you mean "
                   "\"Europe/Berlin\"?)");
}

TEST(ConfigErrorTest, BadExecutor) {
  ExpectErrors(
      "executor: kubernetes\n",
      std::string(kPath) + ":1:11: executor: unknown executor \"kubernetes\" (one of: local, slurm)");
  ExpectErrors("executor: slrum\n",
               std::string(kPath) + ":1:11: executor: unknown executor \"slrum\" (did you mean \"slurm\"?)");
}

TEST(ConfigErrorTest, ParallelismAtLeastOne) {
  ExpectErrors("parallelism: 0\n", std::string(kPath) + ":1:14: parallelism: must be at least 1, got 0");
}

TEST(ConfigErrorTest, PoolSizeAtLeastOne) {
  ExpectErrors("pools:\n  db: 0\n", std::string(kPath) + ":2:7: pools.db: must be at least 1, got 0");
}

TEST(ConfigErrorTest, PoolName) {
  ExpectErrors(
      "pools: {\"my pool\": 2}\n",
      std::string(kPath) +
          ":1:9: pools: invalid pool name \"my pool\": use 1 to 200 letters, digits, \"_\", \".\" or \"-\", not only dots");
}

TEST(ConfigErrorTest, ListenNeedsHostAndPort) {
  for (const char* listen : {"8080", ":8080", "localhost:http", "localhost:70000", "::1:8080"}) {
    SCOPED_TRACE(listen);
    ExpectErrors(std::string("listen: \"") + listen + "\"\n",
                 std::string(kPath) + ":1:9: listen: expected HOST:PORT such as 127.0.0.1:8080, got \"" +
                     listen + "\"");
  }
}

TEST(ConfigErrorTest, SlurmFieldsAreChecked) {
  ExpectErrors("slurm:\n  partiton: batch\n  poll_interval: 0s\n",
               std::string(kPath) + ":2:3: unknown field \"partiton\" (did you mean \"partition\"?)\n" +
                   kPath + ":3:18: slurm.poll_interval: must be longer than 0s");
}

TEST(ConfigTest, LimitsAreReadAndLogSizeHasADefault) {
  EXPECT_FALSE(MustLoad("").limits.log_size.has_value());  // the wrapper's kDefaultTaskLogSize
  Config config = MustLoad(
      "limits:\n"
      "  log_size: 100MB\n"
      "  cpu_time: 10m\n"
      "  address_space: 4GiB\n"
      "  open_files: 1024\n"
      "  nice: 10\n");
  EXPECT_EQ(config.limits.log_size, 100'000'000);
  EXPECT_EQ(config.limits.cpu_time, std::chrono::minutes(10));
  EXPECT_EQ(config.limits.address_space, int64_t{4} << 30);
  EXPECT_EQ(config.limits.open_files, 1024);
  EXPECT_EQ(config.limits.nice, 10);
  TaskLimits only_nice;
  only_nice.nice = -5;
  EXPECT_EQ(MustLoad("limits: {cpu_time: null, nice: -5}\n").limits, only_nice);
}

TEST(ConfigErrorTest, BadLimitsPointAtTheValue) {
  ExpectErrors("limits:\n"
               "  log_size: 100 parsecs\n"
               "  cpu_time: 0s\n"
               "  address_space: 512\n"
               "  open_files: many\n"
               "  nice: 20\n"
               "  cpu: 1m\n",
               std::string(kPath) + ":2:13: limits.log_size: invalid size \"100 parsecs\": unknown unit \"parsecs\" "
                   "(units: B, K, M, G, T, KiB.., KB..)\n" +
                   kPath + ":3:13: limits.cpu_time: must be longer than 0s\n" +
                   kPath + ":4:18: limits.address_space: must be at least 1MiB, got 512\n" +
                   kPath + ":5:15: limits.open_files: expected an integer, got \"many\"\n" +
                   kPath + ":6:9: limits.nice: must be at most 19, got 20\n" +
                   kPath + ":7:3: unknown field \"cpu\" (did you mean \"cpu_time\"?)");
  ExpectErrors("limits: 4GB\n", std::string(kPath) + ":1:9: limits: expected a mapping such as {cpu_time: 10m, "
                                                     "address_space: 4GB}, got \"4GB\"");
}

TEST(ConfigErrorTest, AllErrorsAreReportedOneLineEach) {
  Result<Config> config = LoadConfigText("listen: nope\nparallelism: -1\nexecutor: x\n", kPath);
  ASSERT_FALSE(config.ok());
  const std::string& message = config.status().message();
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 2);
  EXPECT_TRUE(message.starts_with(std::string(kPath) + ":1:9: listen:")) << message;
}

// --- the shipped example ---------------------------------------------------------------------

TEST(ConfigTest, ExampleConfigLoadsAndItsDagsValidate) {
  Result<Config> config = LoadConfig(kSource + "/examples/nightshift.yaml");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->dags_folder, kSource + "/examples/dags");
  EXPECT_EQ(config->state_dir, kSource + "/examples/.nightshift");
  EXPECT_EQ(config->listen, "127.0.0.1:8080");
  EXPECT_EQ(config->pools, (std::map<std::string, int>{{"db", 2}, {"default", 128}}));
  ASSERT_EQ(config->windows.count("nightly"), 1u);
  EXPECT_EQ(config->windows.at("nightly").timezone(), "Europe/Berlin");
  EXPECT_EQ(config->windows.at("nightly").ranges().size(), 2u);
  EXPECT_EQ(config->windows.at("nightly").on_close(), OnClose::kDrain);

  DagFolder folder(config->dags_folder, MakeDagLoadContext(*config));
  folder.Refresh();
  for (const ImportError& error : folder.import_errors()) ADD_FAILURE() << FormatImportError(error);
  EXPECT_GE(folder.dags().size(), 4u);
}

TEST(ConfigTest, BadConfigsInTestdataAreRefused) {
  const std::string folder = kSource + "/tests/testdata/bad_configs";
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().extension() != ".yaml") continue;
    ++files;
    Result<Config> config = LoadConfig(entry.path().string());
    EXPECT_FALSE(config.ok()) << entry.path();
    if (!config.ok()) {
      EXPECT_TRUE(config.status().message().starts_with(entry.path().string() + ":"))
          << config.status().message();
    }
  }
  EXPECT_GE(files, 3u);
}

}  // namespace
}  // namespace nightshift

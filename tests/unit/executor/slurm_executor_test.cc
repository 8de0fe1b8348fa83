// SlurmExecutor's pure pieces (quoting, the batch script, sbatch's argv, parsing squeue and
// scontrol, the state mapping), and the executor itself against fake sbatch/squeue/scontrol/
// scancel scripts. The fakes only stand in for Slurm here, in unit tests: the integration tests
// (tests/integration/test_slurm.py) run against a real cluster. The test binary is its own task
// wrapper (wrapper_main_test.cc), as for the local executor.
#include "executor/slurm_executor.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "executor/local_executor.h"
#include "executor/task_protocol.h"

namespace nightshift {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Kind = ExecutorEvent::Kind;

std::string SelfExe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "/proc/self/exe";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text, bool executable = false) {
  std::ofstream(path, std::ios::binary) << text;
  if (executable) ::chmod(path.c_str(), 0755);
}

// Runs `sh -c SCRIPT` and returns its stdout.
std::string Shell(const std::string& script) {
  std::string out;
  FILE* p = ::popen(("/bin/sh -c " + ShellQuote(script)).c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/slurm-executor-test.XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

const char* const kTricky[] = {
    "plain",      "",  "it's", "$(touch PWNED)", "`touch PWNED`",     "a\nb",     "back\\slash",
    "\"double\"", "*", "~",    "$HOME",          "'; touch PWNED; '", "tab\there"};

TEST(ShellQuoteTest, EveryValueReachesTheShellVerbatim) {
  TempDir dir;
  for (const char* value : kTricky) {
    const std::string out = Shell("cd " + ShellQuote(dir.path()) + " && printf %s " + ShellQuote(value));
    EXPECT_EQ(out, value);
  }
  EXPECT_FALSE(fs::exists(dir.path() + "/PWNED"));
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
}

TEST(SlurmJobNameTest, NamesDagRunTaskMapIndexAndTry) {
  EXPECT_EQ(SlurmJobName(TaskInstanceKey{"etl", "manual__1", "load", 3, 2}), "ns:etl:manual__1:load:3:2");
  EXPECT_EQ(SlurmJobName(TaskInstanceKey{"etl", "r", "t", -1, 1}), "ns:etl:r:t:-1:1");
  EXPECT_EQ(SlurmArrayJobName(TaskInstanceKey{"etl", "r:1", "load", 3, 2}), "ns:etl:r:1:load:array:2");
}

TEST(JobArrayTest, IndexesAsSbatchTakesThem) {
  EXPECT_EQ(FormatArrayIndexes({5, 0, 1, 2, 8, 3, 7, 2}), "0-3,5,7-8");
  EXPECT_EQ(FormatArrayIndexes({4}), "4");
  EXPECT_EQ(FormatArrayIndexes({1, 3}), "1,3");
}

TEST(JobArrayTest, EachElementRunsTheScriptOfItsMapIndex) {
  TempDir dir;
  std::vector<std::pair<int, std::string>> elements;
  for (int index : {0, 4}) {
    const std::string path = dir.path() + "/it's " + std::to_string(index) + ".sbatch";
    WriteFile(path, "#!/bin/sh\necho element " + std::to_string(index) + "\n");
    elements.emplace_back(index, path);
  }
  WriteFile(dir.path() + "/array.sbatch", BuildArrayScript(TaskInstanceKey{"d", "r", "t", -1, 1}, elements));
  const std::string run = "cd " + ShellQuote(dir.path()) + " && SLURM_ARRAY_TASK_ID=";
  EXPECT_EQ(Shell(run + "4 sh array.sbatch"), "element 4\n");
  EXPECT_EQ(Shell(run + "0 sh array.sbatch"), "element 0\n");
  EXPECT_EQ(Shell(run + "2 sh array.sbatch 2>/dev/null; echo $?"), "1\n");
}

TEST(BatchScriptTest, ExportsTheEnvironmentLiterallyAndExecsTheWrapper) {
  TempDir dir;
  // A stand-in wrapper that reports what it got: its arguments and two variables.
  const std::string fake = dir.path() + "/fake-wrapper";
  WriteFile(fake,
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > args.txt\nprintf '%s' \"$NIGHTSHIFT_PARAM_X\" > x.txt\n"
            "printf '%s' \"$NIGHTSHIFT_OUTPUT\" > out.txt\n",
            true);
  TaskSpec spec;
  spec.key = {"d", "r", "t", -1, 1};
  spec.command = "echo '$(touch PWNED)'";
  spec.cwd = dir.path();
  spec.log_path = dir.path() + "/t/1.log";
  spec.output_path = dir.path() + "/t/1.output.json";
  spec.env["NIGHTSHIFT_PARAM_X"] = "$(touch PWNED) `touch PWNED` 'q' \"dq\"\nline2";
  spec.env["odd-name"] = "v";
  const std::string script = BuildBatchScript(spec, fake, 1234);
  WriteFile(dir.path() + "/job.sbatch", script);
  Shell("cd " + ShellQuote(dir.path()) + " && sh job.sbatch");
  EXPECT_EQ(ReadFile(dir.path() + "/x.txt"), spec.env["NIGHTSHIFT_PARAM_X"]);
  EXPECT_EQ(ReadFile(dir.path() + "/out.txt"), spec.output_path);
  const std::string args = ReadFile(dir.path() + "/args.txt");
  EXPECT_EQ(args, "__task-wrapper\n--log\n" + spec.log_path + "\n--status\n" + spec.log_path +
                      ".status\n--pid-file\n" + spec.log_path + ".pid\n--progress-file\n" + spec.log_path +
                      ".progress\n--cwd\n" + dir.path() + "\n--kill-grace-ms\n1234\n--\n" + spec.command +
                      "\n");
  EXPECT_FALSE(fs::exists(dir.path() + "/PWNED"));
}

TEST(SbatchArgvTest, ConfigThenTaskOptions) {
  TaskSpec spec;
  spec.key = {"d", "r", "t", 2, 1};
  spec.slurm.partition = "gpu";
  spec.slurm.cpus_per_task = 4;
  spec.slurm.mem = "4G";
  spec.slurm.time = "01:00:00";
  spec.slurm.gres = "gpu:1";
  spec.slurm.extra_args = {"--exclusive"};
  SlurmConfig config;
  config.partition = "batch";
  config.account = "proj";
  config.qos = "normal";
  config.extra_args = {"--nice=10"};
  EXPECT_EQ(BuildSbatchArgv("sbatch", spec, config, "/s/1.sbatch", "/s"),
            (std::vector<std::string>{"sbatch", "--parsable", "--job-name=ns:d:r:t:2:1", "--output=/dev/null",
                                      "--export=ALL", "--chdir=/s", "--partition=gpu", "--account=proj",
                                      "--qos=normal", "--cpus-per-task=4", "--mem=4G", "--time=01:00:00",
                                      "--gres=gpu:1", "--nice=10", "--exclusive", "/s/1.sbatch"}));
  spec.slurm = {};
  auto argv = BuildSbatchArgv("sbatch", spec, config, "/s/1.sbatch", "/s");
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--partition=batch"), argv.end());
  argv = BuildSbatchArgv("sbatch", spec, config, "/s/a.sbatch", "/s", "0-9,12");
  EXPECT_EQ(std::vector<std::string>(argv.begin(), argv.begin() + 4),
            (std::vector<std::string>{"sbatch", "--parsable", "--job-name=ns:d:r:t:array:1", "--array=0-9,12"}));
}

TEST(SlurmParseTest, SbatchJobId) {
  EXPECT_EQ(ParseSbatchJobId("123\n"), "123");
  EXPECT_EQ(ParseSbatchJobId("456;cluster\n"), "456");
  EXPECT_EQ(ParseSbatchJobId(""), std::nullopt);
  EXPECT_EQ(ParseSbatchJobId("Submitted batch job 5\n"), std::nullopt);
}

TEST(SlurmParseTest, SqueueLines) {
  auto jobs =
      ParseSqueueOutput("12|RUNNING|None\n13|PENDING|Resources\ngarbage\n14_2|CANCELLED by 0|None\n\n");
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0].job_id, "12");
  EXPECT_EQ(jobs[0].state, "RUNNING");
  EXPECT_EQ(jobs[1].reason, "Resources");
  EXPECT_EQ(jobs[2].job_id, "14_2");
  EXPECT_EQ(jobs[2].state, "CANCELLED");
  EXPECT_EQ(jobs[2].name, "");
  jobs = ParseSqueueOutput("15_3|PENDING|Priority|ns:d:run\n16|RUNNING|None|/logs/d/r/t.array|ns:d:r|x:t:array:1\n");
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].reason, "Priority");
  EXPECT_EQ(jobs[0].name, "ns:d:run");
  EXPECT_EQ(jobs[1].work_dir, "/logs/d/r/t.array");
  EXPECT_EQ(jobs[1].name, "ns:d:r|x:t:array:1");
}

TEST(SlurmParseTest, ScontrolShowJob) {
  auto info = ParseScontrolShowJob(
      "JobId=7 JobName=ns:d:r:t:-1:1 UserId=root(0) JobState=FAILED Reason=NonZeroExitCode "
      "Dependency=(null) ExitCode=3:0 RunTime=00:00:01\n");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->job_id, "7");
  EXPECT_EQ(info->state, "FAILED");
  EXPECT_EQ(info->reason, "NonZeroExitCode");
  EXPECT_EQ(info->exit_code, 3);
  EXPECT_FALSE(ParseScontrolShowJob("slurm_load_jobs error: Invalid job id specified\n").has_value());
}

TEST(SlurmParseTest, StatesMapToPhases) {
  EXPECT_EQ(ClassifySlurmState("PENDING"), SlurmPhase::kQueued);
  EXPECT_EQ(ClassifySlurmState("CONFIGURING"), SlurmPhase::kQueued);
  EXPECT_EQ(ClassifySlurmState("RUNNING"), SlurmPhase::kRunning);
  EXPECT_EQ(ClassifySlurmState("COMPLETING"), SlurmPhase::kRunning);
  EXPECT_EQ(ClassifySlurmState("COMPLETED"), SlurmPhase::kCompleted);
  EXPECT_EQ(ClassifySlurmState("FAILED"), SlurmPhase::kCompleted);
  for (const char* ended : {"CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL"}) {
    EXPECT_EQ(ClassifySlurmState(ended), SlurmPhase::kEnded) << ended;
  }
  EXPECT_TRUE(IsTransientSlurmError(
      "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"));
  EXPECT_FALSE(IsTransientSlurmError("sbatch: error: invalid partition specified: nope"));
}

// The executor against fake Slurm commands in a temporary folder. `squeue` answers from the
// file `squeue.out` (empty: the job is unknown), `scontrol` from `scontrol.out`; every command
// appends its argv to `calls.txt`.
class FakeSlurmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string d = dir_.path();
    const std::string log_call = "printf '%s ' \"$(basename \"$0\")\" \"$@\" >> " +
                                 ShellQuote(d + "/calls.txt") + "; echo >> " + ShellQuote(d + "/calls.txt") +
                                 "\n";
    // sbatch: fails once if `sbatch.fail` exists (and removes it), and as long as `sbatch.down`
    // exists; else runs the script at once
    // when `sbatch.run` exists; prints job id 42.
    WriteFile(
        d + "/sbatch",
        "#!/bin/sh\n" + log_call + "cd " + ShellQuote(d) +
            "\nif [ -e sbatch.fail ] || [ -e sbatch.down ]; then rm -f sbatch.fail; echo 'sbatch: error: Batch job "
            "submission failed: Unable to contact slurm controller (connect failure)' >&2; exit 1; fi\n"
            "for last; do :; done\nif [ -e sbatch.run ]; then sh \"$last\" >/dev/null 2>&1; fi\necho 42\n",
        true);
    WriteFile(
        d + "/squeue",
        "#!/bin/sh\n" + log_call + "cd " + ShellQuote(d) +
            "\nif [ -s squeue.out ]; then cat squeue.out; else echo 'slurm_load_jobs error: Invalid job id "
            "specified' >&2; exit 1; fi\n",
        true);
    WriteFile(
        d + "/scontrol",
        "#!/bin/sh\n" + log_call + "cd " + ShellQuote(d) +
            "\nif [ -s scontrol.out ]; then cat scontrol.out; else echo 'slurm_load_jobs error: Invalid job "
            "id specified' >&2; exit 1; fi\n",
        true);
    WriteFile(d + "/scancel", "#!/bin/sh\n" + log_call, true);
    SlurmExecutorOptions options;
    options.slurm.poll_interval = std::chrono::milliseconds(30);
    options.wrapper_argv0 = SelfExe();
    options.sbatch = d + "/sbatch";
    options.squeue = d + "/squeue";
    options.scontrol = d + "/scontrol";
    options.scancel = d + "/scancel";
    executor_ = std::make_unique<SlurmExecutor>(io_, options, [] {});
  }

  TaskSpec Spec(const std::string& command, int map_index = -1, int try_number = 1) {
    TaskSpec spec;
    spec.key = {"d", "r", "t", map_index, try_number};
    spec.command = command;
    spec.cwd = dir_.path();
    const std::string folder = dir_.path() + "/logs/" + (map_index < 0 ? "t" : "t." + std::to_string(map_index));
    spec.log_path = folder + "/" + std::to_string(try_number) + ".log";
    spec.output_path = folder + "/" + std::to_string(try_number) + ".output.json";
    return spec;
  }
  TaskSpec ArraySpec(int map_index, int try_number = 1) {
    TaskSpec spec = Spec("true", map_index, try_number);
    spec.slurm.array = true;
    return spec;
  }
  size_t Count(Kind kind) const {
    return std::count_if(events_.begin(), events_.end(), [&](const ExecutorEvent& e) { return e.kind == kind; });
  }

  // Turns the io_context until `done` holds for the events so far (or 20 s pass).
  bool RunUntil(const std::function<bool()>& done) {
    io_.restart();  // it stops whenever it ran out of work, as between two calls
    auto guard = boost::asio::make_work_guard(io_);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_.run_one_for(20ms);
      for (ExecutorEvent& e : executor_->Drain()) events_.push_back(std::move(e));
    }
    return true;
  }
  bool HasEvent(Kind kind) const {
    return std::any_of(events_.begin(), events_.end(),
                       [&](const ExecutorEvent& e) { return e.kind == kind; });
  }
  const ExecutorEvent* Last(Kind kind) const {
    for (auto it = events_.rbegin(); it != events_.rend(); ++it) {
      if (it->kind == kind) return &*it;
    }
    return nullptr;
  }
  std::string Calls() const { return ReadFile(dir_.path() + "/calls.txt"); }
  void Say(const std::string& file, const std::string& text) { WriteFile(dir_.path() + "/" + file, text); }

  TempDir dir_;
  boost::asio::io_context io_;
  std::unique_ptr<SlurmExecutor> executor_;
  std::vector<ExecutorEvent> events_;
};

TEST_F(FakeSlurmTest, PendingStaysQueuedThenRunsAndFinishesWithTheWrappersExitCode) {
  Say("squeue.out", "42|PENDING|Resources\n");
  ASSERT_TRUE(executor_->Submit(Spec("echo '::progress 1/4'; exit 3")).ok());
  ASSERT_TRUE(RunUntil([&] { return executor_->counters().squeue >= 3; }));
  // A pending job only says, once, why it waits.
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, Kind::kWaiting);
  EXPECT_EQ(events_[0].reason, "slurm: PENDING (Resources)");
  EXPECT_EQ(ReadFile(dir_.path() + "/logs/t/1.log.slurm_job"), "42\n");
  // Run the script as Slurm would, then report it running and failed.
  Shell("cd " + ShellQuote(dir_.path() + "/logs/t") + " && sh 1.sbatch >/dev/null 2>&1");
  Say("squeue.out", "42|RUNNING|None\n");
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kProgress); }));
  ASSERT_NE(Last(Kind::kStarted), nullptr);
  EXPECT_EQ(Last(Kind::kStarted)->external_id, "42");
  EXPECT_DOUBLE_EQ(*Last(Kind::kProgress)->progress, 0.25);
  Say("squeue.out", "42|FAILED|NonZeroExitCode\n");
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kFinished); }));
  EXPECT_EQ(Last(Kind::kFinished)->exit_code, 3);
  EXPECT_EQ(std::count_if(events_.begin(), events_.end(), [](auto& e) { return e.kind == Kind::kStarted; }),
            1);
  const std::string calls = Calls();
  EXPECT_NE(calls.find("sbatch --parsable --job-name=ns:d:r:t:-1:1 --output=/dev/null --export=ALL"),
            std::string::npos)
      << calls;
  EXPECT_NE(calls.find("squeue -h -t all -r -o %i|%T|%r -j 42"), std::string::npos) << calls;
  // A second submission of the same try is refused: it has a status (and a job id).
  EXPECT_TRUE(executor_->Submit(Spec("true")).IsAlreadyExists());
}

TEST_F(FakeSlurmTest, CompletedJobNeverSeenRunningStillStartsThenSucceeds) {
  Say("sbatch.run", "");
  Say("squeue.out", "42|COMPLETED|None\n");
  ASSERT_TRUE(executor_->Submit(Spec("echo hi")).ok());
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kFinished); }));
  ASSERT_EQ(events_.size(), 2u);
  EXPECT_EQ(events_[0].kind, Kind::kStarted);
  EXPECT_EQ(events_[1].exit_code, 0);
  EXPECT_NE(ReadFile(dir_.path() + "/logs/t/1.log").find("hi"), std::string::npos);
}

TEST_F(FakeSlurmTest, CancelRunsScancelAndTheCancelledJobFailsWithSlurmsReason) {
  Say("squeue.out", "42|RUNNING|None\n");
  ASSERT_TRUE(executor_->Submit(Spec("sleep 100")).ok());
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kStarted); }));
  ASSERT_TRUE(executor_->Cancel(events_[0].key).ok());
  ASSERT_TRUE(RunUntil([&] { return Calls().find("scancel 42") != std::string::npos; }));
  Say("squeue.out", "42|CANCELLED|None\n");
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kFinished); }));
  EXPECT_EQ(Last(Kind::kFinished)->reason, "slurm: CANCELLED");
  EXPECT_NE(Last(Kind::kFinished)->exit_code, 0);
}

TEST_F(FakeSlurmTest, TimeoutAndOutOfMemoryFailWithTheirState) {
  Say("squeue.out", "42|TIMEOUT|TimeLimit\n");
  ASSERT_TRUE(executor_->Submit(Spec("sleep 100")).ok());
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kFinished); }));
  EXPECT_EQ(Last(Kind::kFinished)->reason, "slurm: TIMEOUT (TimeLimit)");
  EXPECT_EQ(Last(Kind::kFinished)->exit_code, 143);
}

TEST_F(FakeSlurmTest, JobUnknownEverywhereIsLostUnlessItLeftAStatus) {
  ASSERT_TRUE(executor_->Submit(Spec("true")).ok());  // squeue.out and scontrol.out are empty
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kLost); }));
  EXPECT_NE(Last(Kind::kLost)->reason.find("vanished"), std::string::npos) << Last(Kind::kLost)->reason;
  EXPECT_NE(Calls().find("scontrol show job -o 42"), std::string::npos);
}

TEST_F(FakeSlurmTest, PurgedFromSqueueButKnownToScontrol) {
  Say("sbatch.run", "");
  Say("scontrol.out", "JobId=42 JobName=x JobState=COMPLETED Reason=None ExitCode=0:0\n");
  ASSERT_TRUE(executor_->Submit(Spec("true")).ok());
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kFinished); }));
  EXPECT_EQ(Last(Kind::kFinished)->exit_code, 0);
}

TEST_F(FakeSlurmTest, UnreachableControllerRetriesSbatchAndTheTryStaysQueued) {
  Say("sbatch.fail", "");
  Say("squeue.out", "42|RUNNING|None\n");
  ASSERT_TRUE(executor_->Submit(Spec("sleep 100")).ok());
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kStarted); }));
  EXPECT_FALSE(HasEvent(Kind::kLost));
  EXPECT_EQ(executor_->counters().sbatch, 2);
}

TEST_F(FakeSlurmTest, TriesWaitingForAnUnreachableControllerSayWhyAndGoWhenItAnswers) {
  Say("sbatch.down", "");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(executor_->Submit(Spec("true", i)).ok());
  ASSERT_TRUE(RunUntil([&] { return executor_->counters().sbatch >= 6; }));
  // Every try says why it waits; after the first failures one submission at a time probes.
  EXPECT_EQ(Count(Kind::kWaiting), 3u);
  for (const ExecutorEvent& e : events_) {
    EXPECT_NE(e.reason.find("slurm: controller unreachable"), std::string::npos) << e.reason;
    EXPECT_NE(e.reason.find("Unable to contact slurm controller"), std::string::npos) << e.reason;
  }
  EXPECT_FALSE(HasEvent(Kind::kLost));
  EXPECT_EQ(executor_->counters().squeue, 0) << "no job to follow yet";
  const int64_t calls_while_down = executor_->counters().sbatch;
  fs::remove(dir_.path() + "/sbatch.down");
  // (The fake gives every job id 42.)
  ASSERT_TRUE(RunUntil([&] {
    for (int i = 0; i < 3; ++i) {
      if (ReadFile(TryFiles::OfLog(Spec("", i).log_path).slurm_job) != "42\n") return false;
    }
    return true;
  }));
  // Once it answers, each try goes once (a probe already on its way may have been the first).
  EXPECT_LE(executor_->counters().sbatch, calls_while_down + 3);
  EXPECT_FALSE(HasEvent(Kind::kLost));
}

TEST_F(FakeSlurmTest, ATryCancelledWhileTheControllerIsAwayNeverReachesSlurm) {
  Say("sbatch.down", "");
  ASSERT_TRUE(executor_->Submit(Spec("true")).ok());
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kWaiting); }));  // held, between two attempts
  ASSERT_TRUE(executor_->Cancel(Spec("").key).ok());
  ASSERT_TRUE(HasEvent(Kind::kLost) || RunUntil([&] { return HasEvent(Kind::kLost); }));
  EXPECT_EQ(Last(Kind::kLost)->reason, "cancelled before Slurm accepted it");
}

TEST_F(FakeSlurmTest, MappedTriesWithArrayGoAsOneJobArrayAndRetriesAlone) {
  Say("squeue.out", "42_0|RUNNING|None\n42_1|RUNNING|None\n42_3|PENDING|Priority\n");
  for (int i : {3, 0, 1}) ASSERT_TRUE(executor_->Submit(ArraySpec(i)).ok());
  ASSERT_TRUE(executor_->Submit(ArraySpec(2, /*try_number=*/2)).ok());  // a retry: a job of its own
  ASSERT_TRUE(RunUntil([&] { return Count(Kind::kStarted) == 2 && HasEvent(Kind::kWaiting); }));
  EXPECT_EQ(executor_->counters().sbatch, 2);
  const std::string calls = Calls();
  EXPECT_NE(calls.find("sbatch --parsable --job-name=ns:d:r:t:array:1 --array=0-1,3 "), std::string::npos) << calls;
  EXPECT_NE(calls.find("sbatch --parsable --job-name=ns:d:r:t:2:2 --output"), std::string::npos) << calls;
  for (int i : {0, 1, 3}) {
    EXPECT_EQ(ReadFile(dir_.path() + "/logs/t." + std::to_string(i) + "/1.log.slurm_job"),
              "42_" + std::to_string(i) + "\n");
  }
  std::set<std::string> started;
  for (const ExecutorEvent& e : events_) {
    if (e.kind == Kind::kStarted) started.insert(*e.external_id + "=" + std::to_string(e.key.map_index));
  }
  EXPECT_EQ(started, (std::set<std::string>{"42_0=0", "42_1=1"}));
  EXPECT_EQ(Last(Kind::kWaiting)->key.map_index, 3);
  EXPECT_EQ(Last(Kind::kWaiting)->reason, "slurm: PENDING (Priority)");
  // The array's script hands each element to its try's own batch script.
  const std::string array_script = ReadFile(dir_.path() + "/logs/t.array/1.from-0.sbatch");
  EXPECT_NE(array_script.find("3) exec /bin/sh " + ShellQuote(dir_.path() + "/logs/t.3/1.sbatch")), std::string::npos)
      << array_script;
}

TEST_F(FakeSlurmTest, AdoptFindsByNameAJobWhoseIdWasNeverRecorded) {
  TaskSpec spec = Spec("true", 5);
  fs::create_directories(dir_.path() + "/logs/t.5");
  WriteFile(TryFiles::OfLog(spec.log_path).slurm_job, "");  // sbatch ran; the daemon died before its answer
  const std::string logs = dir_.path() + "/logs";
  Say("squeue.out", "40|RUNNING|None|" + logs + "/t.5|ns:d:r:t:5:2\n" +  // another try
                        "41|RUNNING|None|/elsewhere/logs/t.array|ns:d:r:t:array:1\n" +  // another daemon's
                        "77_5|RUNNING|None|" + logs + "/t.array|ns:d:r:t:array:1\n" +
                        "77_4|RUNNING|None|" + logs + "/t.array|ns:d:r:t:array:1\n");
  std::vector<RunningTask> tasks = {RunningTask{spec.key, std::nullopt, std::nullopt, spec.log_path, "slurm"}};
  EXPECT_EQ(executor_->Adopt(tasks).size(), 1u);
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kStarted); }));
  EXPECT_EQ(Last(Kind::kStarted)->external_id, "77_5");
  EXPECT_EQ(ReadFile(TryFiles::OfLog(spec.log_path).slurm_job), "77_5\n");
  EXPECT_NE(Calls().find("squeue -h -t all -r -o %i|%T|%r|%Z|%j -u " + std::to_string(::getuid())), std::string::npos)
      << Calls();
  EXPECT_EQ(executor_->counters().sbatch, 0);
}

TEST_F(FakeSlurmTest, AdoptWithAnEmptyJobIdThatSlurmDoesNotKnowStartsTheTryAgain) {
  TaskSpec spec = Spec("true");
  fs::create_directories(dir_.path() + "/logs/t");
  WriteFile(TryFiles::OfLog(spec.log_path).slurm_job, "");
  Say("squeue.out", "40|RUNNING|None|" + dir_.path() + "/logs/t|ns:d:r:t:-1:2\n" +  // another try's job
                        "41|RUNNING|None|/elsewhere/logs/t|ns:d:r:t:-1:1\n");       // another daemon's
  std::vector<RunningTask> tasks = {RunningTask{spec.key, std::nullopt, std::nullopt, spec.log_path, "slurm"}};
  EXPECT_EQ(executor_->Adopt(tasks).size(), 1u);
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kLost); }));
  EXPECT_EQ(Last(Kind::kLost)->reason, "never started");
  EXPECT_FALSE(HasEvent(Kind::kStarted));
  // The scheduler then submits the same try again, which the empty id file does not prevent.
  EXPECT_TRUE(executor_->Submit(spec).ok());
}

TEST_F(FakeSlurmTest, AdoptFollowsTheRecordedJobAndSubmitsNothing) {
  TaskSpec spec = Spec("true");
  fs::create_directories(dir_.path() + "/logs/t");
  Say("squeue.out", "42|RUNNING|None\n");
  std::vector<RunningTask> tasks = {RunningTask{spec.key, std::nullopt, "42", spec.log_path, "slurm"}};
  EXPECT_EQ(executor_->Adopt(tasks).size(), 1u);
  ASSERT_TRUE(RunUntil([&] { return executor_->counters().squeue >= 2; }));
  EXPECT_FALSE(HasEvent(Kind::kStarted)) << "kStarted was sent before the restart";
  WriteFile(spec.log_path + ".status", FormatStatusFile(TaskExit{0, ""}));
  Say("squeue.out", "42|COMPLETED|None\n");
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kFinished); }));
  EXPECT_EQ(Last(Kind::kFinished)->exit_code, 0);
  EXPECT_EQ(executor_->counters().sbatch, 0);
  EXPECT_EQ(Calls().find("sbatch"), std::string::npos);
}

TEST_F(FakeSlurmTest, AdoptWithoutAJobIdWasNeverStarted) {
  TaskSpec spec = Spec("true");
  std::vector<RunningTask> tasks = {
      RunningTask{spec.key, std::nullopt, std::nullopt, spec.log_path, "slurm"}};
  EXPECT_TRUE(executor_->Adopt(tasks).empty());
  ASSERT_TRUE(RunUntil([&] { return HasEvent(Kind::kLost); }));
  EXPECT_EQ(Last(Kind::kLost)->reason, "never started");
}

}  // namespace
}  // namespace nightshift

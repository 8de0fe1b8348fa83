// main() of executor_tests. The test binary has two roles besides running the tests, the way
// the nightshift binary does, so this file replaces gtest_main (whose main() the linker then
// leaves out of libgtest_main.a):
//  - the Slurm executor's task wrapper (`__task-wrapper`), which task_wrapper_limits_test.cc
//    runs for real;
//  - a minimal daemon that a test kills with -9 (kTestDaemonCommand, test_daemon.h): its
//    LocalExecutor's supervisor must carry on without it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "executor/local_executor.h"
#include "executor/task_protocol.h"
#include "executor/task_wrapper.h"
#include "tests/unit/executor/test_daemon.h"

namespace nightshift {

// `executor_tests __test-daemon LOG_PATH JOURNAL_PATH COMMAND`: submits one try, prints
// "ready COMMAND_PID" once the command reported progress, then waits to be killed.
int RunTestDaemon(int argc, char** argv) {
  if (argc != 5) return 2;
  boost::asio::io_context io;
  std::unique_ptr<LocalExecutor> executor;
  int64_t command_pid = 0;
  bool progressed = false;
  bool ended = false;
  executor = std::make_unique<LocalExecutor>(io, LocalExecutorOptions{}, [&] {
    for (const ExecutorEvent& e : executor->Drain()) {
      if (e.kind == ExecutorEvent::Kind::kStarted) command_pid = e.pid.value_or(0);
      if (e.kind == ExecutorEvent::Kind::kProgress) progressed = true;
      if (e.kind == ExecutorEvent::Kind::kFinished || e.kind == ExecutorEvent::Kind::kLost) ended = true;
    }
  });
  TaskSpec spec;
  spec.key = kTestDaemonKey;
  spec.log_path = argv[2];
  spec.journal_path = argv[3];
  spec.command = argv[4];
  if (!executor->Submit(spec).ok()) return 1;
  while (!progressed && !ended && io.run_one() > 0) {
  }
  if (!progressed || command_pid <= 0) return 3;
  std::printf("ready %lld\n", static_cast<long long>(command_pid));
  std::fflush(stdout);
  for (;;) ::pause();
}

}  // namespace nightshift

int main(int argc, char** argv) {
  if (argc > 1 && argv[1] == nightshift::kTaskWrapperCommand) return nightshift::RunTaskWrapper(argc, argv);
  if (argc > 1 && argv[1] == nightshift::kTestDaemonCommand) return nightshift::RunTestDaemon(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

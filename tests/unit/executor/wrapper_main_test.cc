// main() of executor_tests. The test binary doubles as the task wrapper, the way the nightshift
// binary does: LocalExecutor in these tests starts /proc/self/exe __task-wrapper ... So this
// file replaces gtest_main (whose main() the linker then leaves out of libgtest_main.a).
// It also doubles as a minimal daemon that a test kills with -9 (kTestDaemonCommand).
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

// `executor_tests __test-daemon LOG_PATH COMMAND`: submits one try, prints "ready WRAPPER_PID"
// once the task reported progress, then waits to be killed.
int RunTestDaemon(int argc, char** argv) {
  if (argc != 4) return 2;
  boost::asio::io_context io;
  std::unique_ptr<LocalExecutor> executor;
  int64_t wrapper_pid = 0;
  bool progressed = false;
  executor = std::make_unique<LocalExecutor>(io, LocalExecutorOptions{}, [&] {
    for (const ExecutorEvent& e : executor->Drain()) {
      if (e.kind == ExecutorEvent::Kind::kStarted) wrapper_pid = e.pid.value_or(0);
      if (e.kind == ExecutorEvent::Kind::kProgress) progressed = true;
    }
  });
  TaskSpec spec;
  spec.key = kTestDaemonKey;
  spec.log_path = argv[2];
  spec.command = argv[3];
  if (!executor->Submit(spec).ok()) return 1;
  while (!progressed && io.run_one() > 0) {
  }
  std::printf("ready %lld\n", static_cast<long long>(wrapper_pid));
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

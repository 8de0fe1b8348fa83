// The test binary's second role besides the task wrapper: a daemon that a test kills with -9
// (wrapper_main_test.cc).
#pragma once

#include <string_view>

#include "executor/executor.h"

namespace nightshift {

// `executor_tests __test-daemon LOG_PATH JOURNAL_PATH COMMAND`: submits one try through a
// LocalExecutor, prints "ready PID" (the command's pid) once the command reported progress,
// then waits to be killed.
inline constexpr std::string_view kTestDaemonCommand = "__test-daemon";
inline const TaskInstanceKey kTestDaemonKey{"dag", "run", "killed", -1, 1};

}  // namespace nightshift

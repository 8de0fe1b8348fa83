// The test binary's second role besides the task wrapper: a daemon that a test kills with -9.
#pragma once

#include <string_view>

#include "executor/executor.h"

namespace nightshift {

inline constexpr std::string_view kTestDaemonCommand = "__test-daemon";
inline const TaskInstanceKey kTestDaemonKey{"dag", "run", "killed", -1, 1};

}  // namespace nightshift

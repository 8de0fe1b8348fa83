// The one rule for the names users give things. They end up in file paths (a run's logs and
// journal live under logs/<dag_id>/<run_id>/<task_id>/), in URLs and in SQL rows, so every
// module checks them here: the DAG loader, the config reader and the HTTP router.
#pragma once

#include <cstddef>
#include <string_view>

namespace nightshift {

// dag_id, task_id, pool and window names: [A-Za-z0-9_.-]{1,200}, and not made only of dots
// ("." and ".." would name a folder above the run's own).
constexpr size_t kMaxIdLength = 200;
bool IsValidId(std::string_view id);
// What IsValidId accepts, worded to follow "invalid dag_id \"..\": ".
inline constexpr std::string_view kIdRule =
    "use 1 to 200 letters, digits, \"_\", \".\" or \"-\", not only dots";

// dag_run_id: run ids hold timestamps ("scheduled__2026-11-27T01:00:00+00:00"), so they also
// allow "~", ":" and "+", and up to 250 characters; never only dots either.
constexpr size_t kMaxRunIdLength = 250;
bool IsValidRunId(std::string_view id);
inline constexpr std::string_view kRunIdRule = "use 1 to 250 letters, digits and \"_.~:+-\", not only dots";

}  // namespace nightshift

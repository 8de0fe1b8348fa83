// A DAG frozen as JSON when a run starts, so that a run keeps the task list it started with
// even when its file changes or the daemon restarts.
#pragma once

#include <string>
#include <string_view>

#include "core/dag.h"
#include "core/status.h"

namespace nightshift {

std::string SnapshotDag(const Dag& dag);
// The same text built through an nlohmann::json tree: SnapshotDag's reference (tests) and its
// fallback for strings that are not valid UTF-8 (nlohmann throws for those, as it always did).
std::string SnapshotDagAsTree(const Dag& dag);
Result<Dag> RestoreDag(std::string_view snapshot);

}  // namespace nightshift

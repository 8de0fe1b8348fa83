// A DAG frozen as JSON when a run starts, so that a run keeps the task list it started with
// even when its file changes or the daemon restarts.
#pragma once

#include <string>
#include <string_view>

#include "core/dag.h"
#include "core/status.h"

namespace nightshift {

// The DAG as compact JSON. Never fails: a string that is not UTF-8 (the loader refuses such
// files, so only a Dag built in code has one) is written with U+FFFD for each bad byte.
std::string SnapshotDag(const Dag& dag);
// The DAG a snapshot holds (also one written with every task field, version 1); Corruption
// when it is not one.
Result<Dag> RestoreDag(std::string_view snapshot);

}  // namespace nightshift

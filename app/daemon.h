// `nightshift serve`: wires the store, the DAGs folder, the HTTP server and signals onto one
// io_context (one thread; see docs/adr/0001-one-thread.md) and runs until SIGTERM/SIGINT.
#pragma once

#include "core/config.h"

namespace nightshift {

// Returns the process exit code: 0 after a clean stop, 1 when start-up failed.
int ServeDaemon(const Config& config);

}  // namespace nightshift

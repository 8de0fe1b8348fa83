// When a failed try may run again (retries, retry_delay, exponential backoff).
#pragma once

#include "core/dag.h"
#include "core/duration.h"

namespace nightshift {

// The wait before the try after `failed_try` (1-based): retry_delay, doubled for each earlier
// failure when retry_exponential_backoff is set, capped by max_retry_delay (when set).
Duration RetryDelay(const Task& task, int failed_try);

}  // namespace nightshift

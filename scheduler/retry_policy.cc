#include "scheduler/retry_policy.h"

#include <algorithm>

namespace nightshift {

Duration RetryDelay(const Task& task, int failed_try) {
  Duration delay = task.retry_delay;
  if (task.retry_exponential_backoff) {
    // Double per earlier failure; stop doubling once past any sane cap to avoid overflow.
    const Duration ceiling = task.max_retry_delay.value_or(std::chrono::hours(24 * 365));
    for (int i = 1; i < failed_try && delay < ceiling; ++i) delay *= 2;
  }
  if (task.max_retry_delay) delay = std::min(delay, *task.max_retry_delay);
  return delay;
}

}  // namespace nightshift

// What one try of a task may use: the size of its log, and the rlimits and niceness its
// command starts with (`limits:` in nightshift.yaml and in a DAG's tasks). The task wrapper
// applies them; the config holds the defaults and a task's own fields override them one by one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/duration.h"
#include "core/status.h"

namespace nightshift {

// The log of one try is cut at this size unless `limits.log_size` says otherwise.
inline constexpr int64_t kDefaultTaskLogSize = int64_t{100} << 20;

struct TaskLimits {
  // Bytes of output kept in a try's log, the rest dropped; unset means kDefaultTaskLogSize.
  std::optional<int64_t> log_size;
  std::optional<Duration> cpu_time;      // RLIMIT_CPU, whole seconds (rounded up)
  std::optional<int64_t> address_space;  // RLIMIT_AS, bytes
  std::optional<int64_t> open_files;     // RLIMIT_NOFILE
  std::optional<int> nice;               // setpriority(2), -20..19

  // These limits with every field that `over` sets taken from `over`.
  TaskLimits OverriddenBy(const TaskLimits& over) const;
  // The rlimits or niceness set (log_size aside): "cpu_time=2s, address_space=100MiB"; empty
  // when none is.
  std::string DescribeProcessLimits() const;

  bool operator==(const TaskLimits&) const = default;
};

// Sizes as users write them: 1048576 (bytes), "512K", "100MB", "100MiB", "4G", "1.5GiB".
// K, M, G, T alone or with "iB" are powers of 1024 (as ulimit and sbatch read them); "KB",
// "MB", "GB", "TB" are powers of 1000. Case does not matter; "B" alone means bytes.
Result<int64_t> ParseByteSize(std::string_view text);
// The shortest exact text ParseByteSize reads back: "100MiB", "1500", "4GiB".
std::string FormatByteSize(int64_t bytes);

}  // namespace nightshift

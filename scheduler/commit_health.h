// Whether the state store takes commits, as the scheduler loop sees it. A store that refuses
// them (disk full, read-only file system, I/O error, a lock held too long) is retried after a
// growing delay rather than at once, logged once per interval rather than once per failure, and
// reported by the API (health 503, changes refused with 503) until a commit succeeds again.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>

#include "core/status.h"
#include "core/time.h"

namespace nightshift {

// The first retry after a failed commit, and the longest wait between retries.
inline constexpr std::chrono::milliseconds kCommitRetryFirst{50};
inline constexpr std::chrono::milliseconds kCommitRetryMax{5000};
// At most one log line about failing commits per this long (the first failure is logged at once).
inline constexpr std::chrono::seconds kCommitLogInterval{10};

// How long to wait before the next try after `failures` commits in a row failed: nothing for
// none, then kCommitRetryFirst, doubling with each failure up to kCommitRetryMax.
std::chrono::milliseconds CommitRetryDelay(int failures);

// Counts failed commits since the last successful one. Recorded on the scheduler's thread;
// Problem() may be called from any thread.
class CommitHealth {
 public:
  // Counts a failed commit at `now`. Returns the line to log when one is due (the first failure,
  // then one per kCommitLogInterval): "state store cannot commit: <error> (N failures since
  // <the previous line>)".
  std::optional<std::string> RecordFailure(const Status& status, TimePoint now);
  // A commit succeeded: the problem is over. Returns the line to log when there was one.
  std::optional<std::string> RecordSuccess();

  // Failed commits in a row, and how long to wait before the next try.
  int failures() const;
  std::chrono::milliseconds RetryDelay() const { return CommitRetryDelay(failures()); }
  // nullopt while commits succeed; otherwise what the API says: "state store cannot commit:
  // <error> (N failures since <the first>)".
  std::optional<std::string> Problem() const;

 private:
  mutable std::mutex mu_;
  int failures_ = 0;
  TimePoint failing_since_;
  std::string last_error_;
  int failures_since_line_ = 0;
  TimePoint last_line_;
};

}  // namespace nightshift

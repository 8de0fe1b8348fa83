#include "scheduler/commit_health.h"

#include <algorithm>

namespace nightshift {

std::chrono::milliseconds CommitRetryDelay(int failures) {
  if (failures <= 0) return std::chrono::milliseconds(0);
  // Doubling 50 ms passes 5 s after 7 steps; capping the exponent keeps the shift defined.
  const int doublings = std::min(failures - 1, 16);
  return std::min(kCommitRetryFirst * (int64_t{1} << doublings), std::chrono::milliseconds(kCommitRetryMax));
}

std::optional<std::string> CommitHealth::RecordFailure(const Status& status, TimePoint now) {
  std::lock_guard lock(mu_);
  if (failures_ == 0) {
    failing_since_ = now;
    last_line_ = now;
  }
  ++failures_;
  ++failures_since_line_;
  last_error_ = status.message();
  // The first failure is told at once; after that, one line per interval counts what it saw.
  if (failures_ > 1 && now - last_line_ < kCommitLogInterval) return std::nullopt;
  std::string line = "state store cannot commit: " + last_error_ + " (" + std::to_string(failures_since_line_) +
                     (failures_since_line_ == 1 ? " failure" : " failures") + " since " + FormatRfc3339(last_line_) +
                     ")";
  failures_since_line_ = 0;
  last_line_ = now;
  return line;
}

std::optional<std::string> CommitHealth::RecordSuccess() {
  std::lock_guard lock(mu_);
  if (failures_ == 0) return std::nullopt;
  std::string line = "state store commits again, after " + std::to_string(failures_) +
                     (failures_ == 1 ? " failure" : " failures") + " since " + FormatRfc3339(failing_since_);
  failures_ = 0;
  failures_since_line_ = 0;
  last_error_.clear();
  return line;
}

int CommitHealth::failures() const {
  std::lock_guard lock(mu_);
  return failures_;
}

std::optional<std::string> CommitHealth::Problem() const {
  std::lock_guard lock(mu_);
  if (failures_ == 0) return std::nullopt;
  return "state store cannot commit: " + last_error_ + " (" + std::to_string(failures_) +
         (failures_ == 1 ? " failure" : " failures") + " since " + FormatRfc3339(failing_since_) + ")";
}

}  // namespace nightshift

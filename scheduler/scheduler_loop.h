// Drives a Scheduler on an io_context: a pass runs when something happened (an executor event,
// a trigger, a DAG change: Wake()) or when the time the last pass asked for has come. Wakes
// are coalesced into one pass; there is no fixed poll. While the state store refuses commits,
// passes are retried after a growing delay (commit_health.h), and wakes wait for that retry.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <optional>

#include "scheduler/commit_health.h"
#include "scheduler/scheduler.h"

namespace nightshift {

class SchedulerLoop {
 public:
  // One pass: the time the next one is due (nullopt: only when woken), or why it was not committed.
  using PassFunction = std::function<Result<std::optional<TimePoint>>()>;

  SchedulerLoop(boost::asio::io_context& io, Scheduler& scheduler, const Clock& clock);
  SchedulerLoop(boost::asio::io_context& io, PassFunction pass, const Clock& clock);

  // Asks for a pass soon (at most one is pending at a time); while commits fail, at the retry.
  void Wake();
  // A change made outside a pass (an API request) that the store did not commit: counted with
  // the passes' failures, and a pass is retried after the delay to see whether the store is back.
  void CommitFailed(const Status& status);
  // Called after each committed pass (e.g. `nightshift run` checks whether its run ended).
  void set_after_pass(std::function<void()> f) { after_pass_ = std::move(f); }
  void Stop();

  // Whether commits succeed; Problem() may be read from any thread.
  const CommitHealth& commit_health() const { return health_; }

 private:
  void Pass();
  void ArmTimer(TimePoint when);
  // Counts a failed commit, logs when a line is due, and arms the retry.
  void Failed(const Status& status, const char* what);

  boost::asio::io_context& io_;
  PassFunction pass_;
  const Clock& clock_;
  boost::asio::steady_timer timer_;
  bool pass_pending_ = false;
  bool stopped_ = false;
  CommitHealth health_;
  TimePoint retry_at_;  // while commits fail, no pass starts before this
  std::function<void()> after_pass_;
};

}  // namespace nightshift

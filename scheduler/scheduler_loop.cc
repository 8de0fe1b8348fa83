#include "scheduler/scheduler_loop.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace nightshift {

SchedulerLoop::SchedulerLoop(boost::asio::io_context& io, Scheduler& scheduler, const Clock& clock)
    : SchedulerLoop(io, [&scheduler] { return scheduler.RunPass(); }, clock) {}

SchedulerLoop::SchedulerLoop(boost::asio::io_context& io, PassFunction pass, const Clock& clock)
    : io_(io), pass_(std::move(pass)), clock_(clock), timer_(io) {}

void SchedulerLoop::Wake() {
  if (pass_pending_ || stopped_) return;
  if (health_.failures() > 0 && clock_.Now() < retry_at_) {
    // The store refused the last commit: an event (a try that ended, a trigger) waits for the
    // retry instead of running a pass that would fail the same way at once.
    ArmTimer(retry_at_);
    return;
  }
  pass_pending_ = true;
  boost::asio::post(io_, [this] { Pass(); });
}

void SchedulerLoop::CommitFailed(const Status& status) {
  if (stopped_) return;
  Failed(status, "a change was not committed");
}

void SchedulerLoop::Stop() {
  stopped_ = true;
  timer_.cancel();
}

void SchedulerLoop::Pass() {
  pass_pending_ = false;
  if (stopped_) return;
  auto next = pass_();
  if (!next.ok()) return Failed(next.status(), "scheduler pass failed");
  if (std::optional<std::string> line = health_.RecordSuccess()) spdlog::info("{}", *line);
  if (after_pass_) after_pass_();
  if (stopped_) return;
  if (next->has_value()) {
    ArmTimer(**next);
  } else {
    timer_.cancel();
  }
}

void SchedulerLoop::Failed(const Status& status, const char* what) {
  const TimePoint now = clock_.Now();
  std::optional<std::string> line = health_.RecordFailure(status, now);
  const std::chrono::milliseconds delay = health_.RetryDelay();
  retry_at_ = now + delay;
  if (line) spdlog::error("{}: {}; retrying in {} ms", what, *line, delay.count());
  if (!pass_pending_) ArmTimer(retry_at_);
}

void SchedulerLoop::ArmTimer(TimePoint when) {
  auto delay = when - clock_.Now();
  if (delay < std::chrono::milliseconds(0)) delay = std::chrono::milliseconds(0);
  // Wake a hair late rather than early, so the due work is really due when the pass runs.
  timer_.expires_after(delay + std::chrono::milliseconds(1));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Wake();
  });
}

}  // namespace nightshift

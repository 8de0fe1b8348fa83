#include "scheduler/scheduler_loop.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace nightshift {

SchedulerLoop::SchedulerLoop(boost::asio::io_context& io, Scheduler& scheduler, const Clock& clock)
    : io_(io), scheduler_(scheduler), clock_(clock), timer_(io) {}

void SchedulerLoop::Wake() {
  if (pass_pending_ || stopped_) return;
  pass_pending_ = true;
  boost::asio::post(io_, [this] { Pass(); });
}

void SchedulerLoop::Stop() {
  stopped_ = true;
  timer_.cancel();
}

void SchedulerLoop::Pass() {
  pass_pending_ = false;
  if (stopped_) return;
  auto next = scheduler_.RunPass();
  if (!next.ok()) {
    // The database refused the pass (locked, disk full): try again with a growing back-off
    // instead of spinning, and say so in the log each time.
    ++consecutive_failures_;
    auto delay = std::chrono::milliseconds(std::min(100 << std::min(consecutive_failures_, 6), 5000));
    spdlog::warn("scheduler pass failed ({} in a row), retrying in {} ms", consecutive_failures_, delay.count());
    ArmTimer(clock_.Now() + delay);
    return;
  }
  consecutive_failures_ = 0;
  if (after_pass_) after_pass_();
  if (stopped_) return;
  if (next->has_value()) {
    ArmTimer(**next);
  } else {
    timer_.cancel();
  }
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

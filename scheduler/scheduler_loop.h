// Drives a Scheduler on an io_context: a pass runs when something happened (an executor event,
// a trigger, a DAG change: Wake()) or when the time the last pass asked for has come. Wakes
// are coalesced into one pass; there is no fixed poll.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>

#include "scheduler/scheduler.h"

namespace nightshift {

class SchedulerLoop {
 public:
  SchedulerLoop(boost::asio::io_context& io, Scheduler& scheduler, const Clock& clock);

  // Asks for a pass soon (at most one is pending at a time).
  void Wake();
  // Called after each committed pass (e.g. `nightshift run` checks whether its run ended).
  void set_after_pass(std::function<void()> f) { after_pass_ = std::move(f); }
  void Stop();

 private:
  void Pass();
  void ArmTimer(TimePoint when);

  boost::asio::io_context& io_;
  Scheduler& scheduler_;
  const Clock& clock_;
  boost::asio::steady_timer timer_;
  bool pass_pending_ = false;
  bool stopped_ = false;
  int consecutive_failures_ = 0;
  std::function<void()> after_pass_;
};

}  // namespace nightshift

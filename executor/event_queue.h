// What an executor has to report, held until the owner calls Drain(), and the one notification
// per batch that tells the owner to do so. Both executors report this way.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "executor/executor.h"

namespace nightshift {

class ExecutorEventQueue {
 public:
  ExecutorEventQueue(boost::asio::io_context& io, std::function<void()> on_event)
      : io_(io), on_event_(std::move(on_event)), later_(io) {}

  // Queues the event; the first one since the last notification posts one more. Posted, not
  // called: the owner may call Submit() from inside its handler, and is never re-entered.
  void Push(ExecutorEvent event);
  // Queues an event that need not be seen at once (a try started, its progress): the owner
  // hears of it with the next event, or after `delay` at the latest. A `true` task's start and
  // end then cost the owner one pass, not two.
  void PushLater(ExecutorEvent event, std::chrono::milliseconds delay);
  std::vector<ExecutorEvent> Drain();

 private:
  boost::asio::io_context& io_;
  std::function<void()> on_event_;
  std::deque<ExecutorEvent> events_;
  bool notify_pending_ = false;
  boost::asio::steady_timer later_;
  bool later_armed_ = false;
  // The posted handler holds a weak copy: once it expires, the queue is gone and it does nothing.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace nightshift

#include "executor/event_queue.h"

#include <boost/asio/post.hpp>
#include <iterator>

namespace nightshift {

void ExecutorEventQueue::Push(ExecutorEvent event) {
  events_.push_back(std::move(event));
  if (notify_pending_) return;
  notify_pending_ = true;
  std::weak_ptr<int> alive = alive_;
  boost::asio::post(io_, [this, alive] {
    if (alive.expired()) return;
    notify_pending_ = false;
    if (on_event_) on_event_();
  });
}

std::vector<ExecutorEvent> ExecutorEventQueue::Drain() {
  std::vector<ExecutorEvent> out(std::make_move_iterator(events_.begin()), std::make_move_iterator(events_.end()));
  events_.clear();
  return out;
}

}  // namespace nightshift

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

void ExecutorEventQueue::PushLater(ExecutorEvent event, std::chrono::milliseconds delay) {
  events_.push_back(std::move(event));
  if (notify_pending_ || later_armed_) return;
  later_armed_ = true;
  std::weak_ptr<int> alive = alive_;
  later_.expires_after(delay);
  later_.async_wait([this, alive](const boost::system::error_code& ec) {
    if (alive.expired() || ec) return;
    later_armed_ = false;
    // Drained meanwhile along with a later event: nothing left to announce.
    if (events_.empty() || notify_pending_) return;
    if (on_event_) on_event_();
  });
}

std::vector<ExecutorEvent> ExecutorEventQueue::Drain() {
  std::vector<ExecutorEvent> out(std::make_move_iterator(events_.begin()), std::make_move_iterator(events_.end()));
  events_.clear();
  return out;
}

}  // namespace nightshift

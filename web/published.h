// A value one thread replaces and other threads read (the scheduler's thread publishes its
// config, counters and heartbeat; the HTTP thread reads them). Readers get an immutable copy
// that stays valid however often the writer replaces it; the lock is held only to swap the
// pointer.
#pragma once

#include <memory>
#include <mutex>

namespace nightshift {

template <typename T>
class Published {
 public:
  Published() = default;
  explicit Published(T value) : value_(std::make_shared<const T>(std::move(value))) {}

  void Set(T value) {
    auto next = std::make_shared<const T>(std::move(value));
    std::lock_guard lock(mu_);
    value_.swap(next);
    // The previous value is released after the lock (in `next`), outside the readers' way.
  }

  // nullptr until the first Set.
  std::shared_ptr<const T> Get() const {
    std::lock_guard lock(mu_);
    return value_;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const T> value_;
};

}  // namespace nightshift

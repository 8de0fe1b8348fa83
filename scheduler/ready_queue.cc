#include "scheduler/ready_queue.h"

namespace nightshift {

void ReadyQueue::Push(const ReadyEntry& entry) {
  Remove(entry.run_pk, entry.index);
  queue_.insert(entry);
  location_[{entry.run_pk, entry.index}] = {entry, ""};
}

void ReadyQueue::Park(const ReadyEntry& entry, const std::string& window) {
  Remove(entry.run_pk, entry.index);
  parked_[window].insert(entry);
  location_[{entry.run_pk, entry.index}] = {entry, window};
}

bool ReadyQueue::Remove(int64_t run_pk, size_t index) {
  auto it = location_.find({run_pk, index});
  if (it == location_.end()) return false;
  const auto& [entry, window] = it->second;
  if (window.empty()) {
    queue_.erase(entry);
  } else if (auto parked = parked_.find(window); parked != parked_.end()) {
    parked->second.erase(entry);
    if (parked->second.empty()) parked_.erase(parked);
  }
  location_.erase(it);
  return true;
}

void ReadyQueue::Unpark(const std::string& window) {
  auto parked = parked_.find(window);
  if (parked == parked_.end()) return;
  for (const ReadyEntry& entry : parked->second) {
    queue_.insert(entry);
    location_[{entry.run_pk, entry.index}].second.clear();
  }
  parked_.erase(parked);
}

std::vector<std::string> ReadyQueue::ParkedWindows() const {
  std::vector<std::string> out;
  for (const auto& [window, entries] : parked_) out.push_back(window);
  return out;
}

void ReadyQueue::Clear() {
  queue_.clear();
  parked_.clear();
  location_.clear();
}

}  // namespace nightshift

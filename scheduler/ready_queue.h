// The task instances whose trigger rule passed and that wait for a slot, in the order they
// may start (Airflow's: priority_weight first, then the older run). Dispatch walks it from the
// front and stops when parallelism is used up, so a pass costs what it starts, not what
// waits. Instances whose batch window is closed are parked per window and come back when it
// opens, instead of being walked past on every pass.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/time.h"

namespace nightshift {

struct ReadyEntry {
  int neg_priority = 0;  // -priority_weight: higher weights first
  TimePoint logical_date{};
  int64_t run_pk = 0;
  size_t index = 0;  // into the run's task instances

  auto operator<=>(const ReadyEntry&) const = default;
};

class ReadyQueue {
 public:
  using Queue = std::set<ReadyEntry>;

  void Push(const ReadyEntry& entry);
  void Park(const ReadyEntry& entry, const std::string& window);
  // Takes the instance out, wherever it waits; false when it was not there.
  bool Remove(int64_t run_pk, size_t index);
  bool Contains(int64_t run_pk, size_t index) const { return location_.count({run_pk, index}) > 0; }
  // Puts what waits for `window` back in the queue.
  void Unpark(const std::string& window);
  std::vector<std::string> ParkedWindows() const;
  void Clear();

  const Queue& queue() const { return queue_; }

 private:
  Queue queue_;
  std::map<std::string, Queue> parked_;                      // window -> entries
  std::map<std::pair<int64_t, size_t>, std::pair<ReadyEntry, std::string>> location_;  // "" = queue_
};

}  // namespace nightshift

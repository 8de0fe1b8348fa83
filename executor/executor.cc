#include "executor/executor.h"

namespace nightshift {

std::string TaskInstanceKey::ToString() const {
  std::string s = dag_id + "/" + run_id + "/" + task_id;
  if (map_index >= 0) s += "[" + std::to_string(map_index) + "]";
  return s + "#" + std::to_string(try_number);
}

}  // namespace nightshift

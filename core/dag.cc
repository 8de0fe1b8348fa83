#include "core/dag.h"

namespace nightshift {

const std::vector<std::string_view>& TriggerRuleNames() {
  static const std::vector<std::string_view> names = {
      "all_success", "all_failed",  "all_done",
      "one_success", "one_failed",  "none_failed",
      "none_failed_min_one_success", "none_skipped", "always"};
  return names;
}

std::string_view ToString(TriggerRule rule) { return TriggerRuleNames()[static_cast<size_t>(rule)]; }

std::optional<TriggerRule> ParseTriggerRule(std::string_view text) {
  const auto& names = TriggerRuleNames();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == text) return static_cast<TriggerRule>(i);
  }
  return std::nullopt;
}

const Task* Dag::FindTask(std::string_view task_id) const {
  for (const Task& t : tasks) {
    if (t.task_id == task_id) return &t;
  }
  return nullptr;
}

}  // namespace nightshift

#include "executor/environment.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string_view>

extern char** environ;  // (unistd.h declares it only under _GNU_SOURCE)

namespace nightshift {
namespace {

std::string_view NameOf(std::string_view assignment) { return assignment.substr(0, assignment.find('=')); }

}  // namespace

std::vector<std::string> SortedEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    if (std::strchr(*e, '=')) env.emplace_back(*e);
  }
  SortByName(&env);
  return env;
}

void SortByName(std::vector<std::string>* assignments) {
  std::stable_sort(assignments->begin(), assignments->end(),
                   [](const std::string& a, const std::string& b) { return NameOf(a) < NameOf(b); });
}

std::vector<char*> MergedEnvironment(std::vector<std::string>& base, std::vector<std::string>& over) {
  std::vector<char*> out;
  out.reserve(base.size() + over.size() + 1);
  auto next = over.begin();
  for (std::string& assignment : base) {
    const std::string_view name = NameOf(assignment);
    for (; next != over.end() && NameOf(*next) < name; ++next) out.push_back(next->data());
    if (next != over.end() && NameOf(*next) == name) continue;  // the try's value wins
    out.push_back(assignment.data());
  }
  for (; next != over.end(); ++next) out.push_back(next->data());
  out.push_back(nullptr);
  return out;
}

}  // namespace nightshift

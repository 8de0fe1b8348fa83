#include "core/ids.h"

#include <algorithm>
#include <cctype>

namespace nightshift {
namespace {

bool OnlyDots(std::string_view id) {
  return std::all_of(id.begin(), id.end(), [](char c) { return c == '.'; });
}

bool IsValidName(std::string_view id, size_t max_length, std::string_view punctuation) {
  if (id.empty() || id.size() > max_length || OnlyDots(id)) return false;
  return std::all_of(id.begin(), id.end(), [&](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || punctuation.find(c) != std::string_view::npos;
  });
}

}  // namespace

bool IsValidId(std::string_view id) { return IsValidName(id, kMaxIdLength, "_.-"); }

bool IsValidRunId(std::string_view id) { return IsValidName(id, kMaxRunIdLength, "_.~:+-"); }

}  // namespace nightshift

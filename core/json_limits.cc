#include "core/json_limits.h"

#include <string>

namespace nightshift {

Status CheckJsonNesting(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > kMaxNestingDepth) {
          return Status::InvalidArgument(TooDeepMessage() + " (at byte " + std::to_string(i) + ")");
        }
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return Status::OK();
}

std::string TooDeepMessage() {
  return "nested deeper than " + std::to_string(kMaxNestingDepth) + " levels";
}

}  // namespace nightshift

#include "core/status.h"

namespace nightshift {

std::string Status::ToString() const {
  const char* prefix = "";
  switch (code_) {
    case Code::kOk: return "OK";
    case Code::kNotFound: prefix = "not found: "; break;
    case Code::kInvalidArgument: prefix = "invalid argument: "; break;
    case Code::kAlreadyExists: prefix = "already exists: "; break;
    case Code::kIOError: prefix = "I/O error: "; break;
    case Code::kCorruption: prefix = "corruption: "; break;
    case Code::kBusy: prefix = "busy: "; break;
    case Code::kUnavailable: prefix = "unavailable: "; break;
  }
  return prefix + message_;
}

}  // namespace nightshift

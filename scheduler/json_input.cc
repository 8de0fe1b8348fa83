#include "scheduler/json_input.h"

#include <exception>

#include "core/json_limits.h"
#include "core/utf8.h"

namespace nightshift {

Result<nlohmann::json> ParseJsonInput(std::string_view text) {
  if (std::optional<size_t> bad = FindInvalidUtf8(text)) {
    return Status::InvalidArgument(InvalidUtf8Message(static_cast<unsigned char>(text[*bad])) + " at byte " +
                                   std::to_string(*bad));
  }
  if (Status s = CheckJsonNesting(text); !s.ok()) return s;
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2: syntax error ...":
    // the part after the library's tag is what a user can act on.
    std::string_view what = e.what();
    if (size_t tag_end = what.find("] "); what.starts_with("[json.exception") && tag_end != what.npos) {
      what.remove_prefix(tag_end + 2);
    }
    return Status::InvalidArgument("not valid JSON: " + std::string(what));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("not valid JSON: ") + e.what());
  }
}

std::string DumpJson(const nlohmann::json& value) {
  try {
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const std::exception&) {
    // With the replace handler dump throws only for lack of memory; "null" keeps the caller's
    // text JSON.
    return "null";
  }
}

Result<std::optional<std::string>> ParseTryOutput(std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) return std::optional<std::string>();
  Result<nlohmann::json> value = ParseJsonInput(text);
  if (!value.ok()) return Status::InvalidArgument("output is " + value.status().message());
  return std::optional<std::string>(DumpJson(*value));
}

}  // namespace nightshift

// JSON that comes from outside the daemon (a request body, a trigger's conf, the file a task
// writes to NIGHTSHIFT_OUTPUT, a conf or output read back from the state database) goes through
// here, and nothing here throws. Parsing refuses text that is not UTF-8 (core/utf8.h) or nested
// deeper than kMaxNestingDepth (core/json_limits.h) before nlohmann/json sees it: its parser
// would take such text, but printing, copying or freeing the value recurses once per level.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace nightshift {

// The value `text` holds; InvalidArgument saying why when it is not one JSON value, is not
// UTF-8 or breaks the nesting rule. The message does not repeat the text.
Result<nlohmann::json> ParseJsonInput(std::string_view text);

// Compact JSON text of `value`. Never throws: a string that is not UTF-8 (built in code from a
// log or a file name) has its bad bytes replaced by U+FFFD.
std::string DumpJson(const nlohmann::json& value);

// What a try wrote to its NIGHTSHIFT_OUTPUT file, as compact JSON text; nullopt for a file
// left empty (or only whitespace). InvalidArgument, starting "output ", when it is not usable.
Result<std::optional<std::string>> ParseTryOutput(std::string_view text);

}  // namespace nightshift

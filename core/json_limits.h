// The one nesting rule for structured text from outside (request bodies, a trigger's conf, the
// JSON a task writes to NIGHTSHIFT_OUTPUT, params in a DAG file): at most kMaxNestingDepth
// arrays and objects inside each other. The JSON library recurses once per level to copy or
// print a value (and yaml-cpp to parse one), so a deeper value from a user could overflow the
// stack; it is refused before it reaches them.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace nightshift {

inline constexpr int kMaxNestingDepth = 64;

// OK when no array or object in the JSON `text` is nested deeper than kMaxNestingDepth
// (a top-level array is depth 1). Looks only at brackets outside strings, so it gives no verdict
// on whether `text` is valid JSON otherwise; it reads `text` once and allocates nothing.
Status CheckJsonNesting(std::string_view text);

// "nested deeper than 64 levels": how every refusal of the rule above is worded.
std::string TooDeepMessage();

}  // namespace nightshift

// Small text helpers shared by every module: one definition each, so error messages and
// parsers agree on what "blank" and "quoted" mean.
#pragma once

#include <string>
#include <string_view>

namespace nightshift {

// `text` without leading and trailing whitespace (std::isspace: space, \t, \n, \v, \f, \r).
// The result views `text`: keep the string it came from alive, or copy it.
std::string_view Trim(std::string_view text);

// `text` in double quotes, for error messages: `"nightly_etl"`. Text longer than 60
// characters is cut there and ends in "...", so one huge value cannot flood a message.
std::string Quote(std::string_view text);

// ASCII case folding; other bytes are kept as they are.
std::string Lower(std::string_view text);
std::string Upper(std::string_view text);

}  // namespace nightshift

// The one UTF-8 rule: text that comes from outside (DAG files, the config, task output) is
// checked here before any library that requires UTF-8 (nlohmann/json's dump) sees it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace nightshift {

// The offset of the first byte of `text` that does not start a well-formed UTF-8 sequence
// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or nullopt when all of
// `text` is valid.
std::optional<size_t> FindInvalidUtf8(std::string_view text);

// Where byte `offset` of `text` sits as an editor counts: 1-based line, and 1-based column in
// characters (a UTF-8 sequence before it on the line counts once; a byte that is not valid
// UTF-8 counts as one character).
struct TextPosition {
  int line = 1;
  int column = 1;
};
TextPosition PositionOfOffset(std::string_view text, size_t offset);

// "not valid UTF-8 (byte 0xE9)": how every refusal of invalid UTF-8 names the bad byte.
std::string InvalidUtf8Message(unsigned char byte);

}  // namespace nightshift

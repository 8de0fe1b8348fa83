// Helpers the fuzz targets share to cut their input into the parts a parser takes.
#pragma once

#include <cstdint>
#include <string_view>

namespace nightshift::fuzz {

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// Removes and returns the text before the first newline (all of `rest` when there is none).
inline std::string_view NextLine(std::string_view& rest) {
  const size_t newline = rest.find('\n');
  const std::string_view line = rest.substr(0, newline);
  rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
  return line;
}

}  // namespace nightshift::fuzz

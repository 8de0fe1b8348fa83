// A file compiled into the binary (see cmake/Embed.cmake).
#pragma once

#include <string_view>
#include <vector>

namespace nightshift {

struct EmbeddedFile {
  std::string_view name;      // path relative to its source folder, e.g. "0001_init.sql"
  std::string_view contents;  // the bytes, not NUL-terminated
};

}  // namespace nightshift

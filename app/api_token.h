// The API's bearer token, kept in a file only its owner can read.
#pragma once

#include <string>

#include "core/status.h"

namespace nightshift {

// Reads the token from `path`, or, when the file does not exist, creates it with mode 0600
// holding 32 random bytes as hex. An empty or unreadable file is an error.
Result<std::string> LoadOrCreateApiToken(const std::string& path);

}  // namespace nightshift

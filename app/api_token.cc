#include "app/api_token.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/strings.h"

namespace nightshift {

Result<std::string> LoadOrCreateApiToken(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    unsigned char bytes[32];
    int random = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (random < 0 || read(random, bytes, sizeof(bytes)) != static_cast<ssize_t>(sizeof(bytes))) {
      if (random >= 0) close(random);
      return Status::IOError("cannot read /dev/urandom for the API token");
    }
    close(random);
    static const char kHex[] = "0123456789abcdef";
    std::string token;
    for (unsigned char b : bytes) {
      token += kHex[b >> 4];
      token += kHex[b & 15];
    }
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    // O_EXCL: if another process created it first, read theirs instead of overwriting it.
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      std::string line = token + "\n";
      bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
      close(fd);
      if (!ok) return Status::IOError("cannot write API token file " + path);
      return token;
    }
    if (errno != EEXIST) return Status::IOError("cannot create API token file " + path + ": " + std::strerror(errno));
  }
  std::ifstream in(path);
  if (!in) return Status::IOError("cannot read API token file " + path);
  std::stringstream text;
  text << in.rdbuf();
  std::string token(Trim(text.str()));
  if (token.empty()) return Status::InvalidArgument("API token file " + path + " is empty");
  return token;
}

}  // namespace nightshift

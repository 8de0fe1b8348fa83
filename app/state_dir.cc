#include "app/state_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

namespace nightshift {

StateDirLock::~StateDirLock() {
  if (fd_ >= 0) close(fd_);
}

Status StateDirLock::Acquire(const std::string& state_dir) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(state_dir) / "logs", ec);
  if (ec) return Status::IOError("cannot create state directory " + state_dir + ": " + ec.message());
  const std::string path = state_dir + "/daemon.lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return Status::Busy("another nightshift daemon (pid " + holder + ") is using state directory " +
                        state_dir + "; stop it first");
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    close(fd);
    return Status::IOError("cannot write " + path + ": " + std::strerror(errno));
  }
  fd_ = fd;
  return Status::OK();
}

}  // namespace nightshift

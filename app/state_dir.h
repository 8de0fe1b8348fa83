// The daemon's state directory: created on first start, and locked so that two daemons never
// schedule from the same database.
#pragma once

#include <string>

#include "core/status.h"

namespace nightshift {

class StateDirLock {
 public:
  StateDirLock() = default;
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;
  ~StateDirLock();

  // Creates `state_dir` (and its logs/ folder) if missing and takes an exclusive lock on
  // <state_dir>/daemon.lock, writing our pid there. Fails with a message naming the holder's pid
  // when another process holds it. The lock is released when the process ends, even by kill -9.
  Status Acquire(const std::string& state_dir);

 private:
  int fd_ = -1;
};

}  // namespace nightshift

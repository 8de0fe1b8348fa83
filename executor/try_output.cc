#include "executor/try_output.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <utility>

#include "executor/task_wrapper.h"

namespace nightshift {
namespace {

constexpr std::string_view kDirective = "::progress";
// An unfinished line is held back only while it may still turn out to be a progress directive;
// past this size it cannot be one and goes to the log as it is.
constexpr size_t kMaxHeldLine = 4096;

// True while `held` (the start of an unfinished line) may still become "::progress ...".
bool CouldBeDirective(std::string_view held) {
  return held.size() <= kDirective.size() ? kDirective.starts_with(held) : held.starts_with(kDirective);
}

}  // namespace

int WriteFully(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return 0;
}

int OpenForAppend(const std::string& path) {
  const int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC;
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd >= 0 || errno != ENOENT) return fd;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) {
    errno = ec.value();
    return -1;
  }
  return ::open(path.c_str(), flags, 0644);
}

int64_t MonotonicMs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int64_t CpuLimitSeconds(Duration cpu_time) {
  return (cpu_time.count() + 999) / 1000;  // a limit of 1.5s allows 2
}

TryOutput::TryOutput(int log_fd, std::string log_path, int64_t size_limit, int64_t existing_bytes)
    : log_fd_(log_fd),
      log_path_(std::move(log_path)),
      size_limit_(size_limit),
      log_bytes_(existing_bytes),
      log_mid_line_(existing_bytes > 0) {}  // cannot tell cheaply; a blank line is the lesser harm

int TryOutput::OpenLog() {
  if (log_fd_ >= 0) return 0;
  owned_fd_.Reset(OpenForAppend(log_path_));
  if (!owned_fd_) return errno;
  log_fd_ = owned_fd_.get();
  const off_t size = ::lseek(log_fd_, 0, SEEK_END);
  log_bytes_ = size > 0 ? size : 0;
  log_mid_line_ = size > 0;
  return 0;
}

void TryOutput::Note(const std::string& text) {
  if (OpenLog() != 0) return;
  std::string line = (log_mid_line_ ? "\nnightshift: " : "nightshift: ") + text + "\n";
  log_mid_line_ = false;
  (void)WriteFully(log_fd_, line);  // best effort: a note must not hide the error it reports
}

void TryOutput::WriteLog(std::string_view data) {
  if (data.empty()) return;
  if (log_errno_ != 0) {
    unwritten_bytes_ += static_cast<int64_t>(data.size());
    return;
  }
  if (int err = OpenLog(); err != 0) {
    log_errno_ = err;
    unwritten_bytes_ += static_cast<int64_t>(data.size());
    return;
  }
  const int64_t room = std::max<int64_t>(0, size_limit_ - log_bytes_);
  const bool reaches_limit = static_cast<int64_t>(data.size()) > room;
  if (reaches_limit) {
    dropped_bytes_ += static_cast<int64_t>(data.size()) - room;
    data = data.substr(0, static_cast<size_t>(room));
  }
  if (int err = WriteFully(log_fd_, data); err != 0) {
    // The rest of the output is drained and counted but not written: a log with a hole would
    // look complete. The try fails for it when the command ends.
    log_errno_ = err;
    unwritten_bytes_ += static_cast<int64_t>(data.size());
    return;
  }
  log_bytes_ += static_cast<int64_t>(data.size());
  if (!data.empty()) log_mid_line_ = data.back() != '\n';
  if (reaches_limit && !log_cut_) {
    log_cut_ = true;
    // Said at once for whoever follows the log; the count of what was dropped comes at the end.
    Note("the log reached limits.log_size (" + FormatByteSize(size_limit_) +
         "); the rest of the task's output is dropped");
  }
}

std::optional<double> TryOutput::OnOutput(std::string_view chunk) {
  std::optional<double> progress;
  // Scanned in place, line by line, and logged in runs between directives: a task printing
  // short lines at full speed must not be slowed down by us.
  std::string joined;
  if (!held_.empty()) {
    joined = std::exchange(held_, {});
    joined.append(chunk);
    chunk = joined;
  }
  size_t logged = 0;  // chunk[logged, start) is output not yet written to the log
  size_t start = 0;
  while (const void* found = std::memchr(chunk.data() + start, '\n', chunk.size() - start)) {
    const size_t nl = static_cast<size_t>(static_cast<const char*>(found) - chunk.data());
    if (!mid_line_ && chunk[start] == kDirective.front()) {
      if (auto p = ParseProgressDirective(chunk.substr(start, nl - start))) {
        progress = p;  // only the latest of a burst matters
        WriteLog(chunk.substr(logged, start - logged));
        logged = nl + 1;
      }
    }
    mid_line_ = false;
    start = nl + 1;
  }
  // Hold back an unfinished line only while it may still be a directive, so that partial
  // lines ("downloading... ") show up in the log at once.
  const std::string_view rest = chunk.substr(start);
  if (!rest.empty() && !mid_line_ && CouldBeDirective(rest) && rest.size() <= kMaxHeldLine) {
    held_.assign(rest);
    WriteLog(chunk.substr(logged, start - logged));
  } else {
    if (!rest.empty()) mid_line_ = true;
    WriteLog(chunk.substr(logged));
  }
  return progress;
}

std::optional<double> TryOutput::Flush() {
  if (held_.empty()) return std::nullopt;
  std::optional<double> progress = mid_line_ ? std::nullopt : ParseProgressDirective(held_);
  if (!progress) {
    WriteLog(held_);  // a final line without newline stays as the task wrote it
    mid_line_ = true;
  }
  held_.clear();
  return progress;
}

void TryOutput::Conclude(TaskExit& exit) {
  if (dropped_bytes_ > 0) {
    Note(std::to_string(dropped_bytes_) + " bytes of output were dropped: the log is limited to " +
         FormatByteSize(size_limit_) + " (limits.log_size)");
  }
  if (log_errno_ == 0) return;
  // Its output is lost, so its success cannot be told apart from a failure.
  if (exit.exit_code == 0) {
    exit.exit_code = kWrapperSetupFailedExit;
    exit.reason = "exit code 0";
  }
  exit.reason += "; cannot write the log " + log_path_ + ": " + std::strerror(log_errno_) + " (" +
                 std::to_string(unwritten_bytes_) + " bytes of output lost)";
  Note(exit.reason);  // may fail too; the journal or status file has it
}

TaskExit DescribeExit(int wait_status, const rusage& usage, const TaskLimits& limits, bool stopping, bool killed) {
  TaskExit exit{ExitCodeOfWaitStatus(wait_status), {}};
  if (exit.exit_code != 0) exit.reason = DescribeWaitStatus(wait_status);
  if (exit.exit_code != 0 && stopping) {
    exit.reason += killed ? " (stopped: SIGTERM, then SIGKILL)" : " (stopped)";
  }
  if (exit.exit_code != 0 && !stopping && limits.cpu_time) {
    // SIGXCPU at the soft limit, SIGKILL at the hard one; a shell that ran the command as its
    // child reports 128+SIGXCPU instead.
    const int64_t used_ms = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * int64_t{1000} +
                            (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000;
    const bool by_signal = WIFSIGNALED(wait_status) &&
                           (WTERMSIG(wait_status) == SIGXCPU ||
                            (WTERMSIG(wait_status) == SIGKILL && used_ms >= CpuLimitSeconds(*limits.cpu_time) * 1000));
    if (by_signal || exit.exit_code == 128 + SIGXCPU) {
      exit.reason += ": CPU time limit exceeded (limits.cpu_time: " + FormatDuration(*limits.cpu_time) + ")";
      return exit;
    }
  }
  if (exit.exit_code != 0 && !stopping) {
    if (std::string applied = limits.DescribeProcessLimits(); !applied.empty()) {
      exit.reason += " (under limits: " + applied + ")";
    }
  }
  return exit;
}

}  // namespace nightshift

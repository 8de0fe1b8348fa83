// What happens to a try's output and how its end is described, shared by the two processes
// that watch a command: the supervisor (local tries, supervisor.h) and the task wrapper
// (Slurm tries, task_wrapper.h).
//
// TryOutput takes the command's stdout+stderr as it arrives and copies it into the log, except
// `::progress DONE/TOTAL` and `::progress PCT%` lines, which it returns as progress. Past the
// log's size limit the output is counted and dropped; after a failed write nothing more is
// written (a log with a hole would look complete) and the try fails for it.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/task_limits.h"
#include "core/unique_fd.h"
#include "executor/task_protocol.h"

namespace nightshift {

class TryOutput {
 public:
  // `log_fd` is not owned; -1 opens (and creates) the log at the first byte to write, so that
  // a try that prints nothing costs no file. `existing_bytes`: what an open log holds already.
  TryOutput(int log_fd, std::string log_path, int64_t size_limit, int64_t existing_bytes);
  TryOutput(const TryOutput&) = delete;
  TryOutput& operator=(const TryOutput&) = delete;

  // The latest progress in `chunk`, if it had any.
  std::optional<double> OnOutput(std::string_view chunk);
  // At the end: an unfinished last line is written (or read as progress).
  std::optional<double> Flush();
  // A line of ours in the log ("nightshift: TEXT"), on a line of its own. Best effort.
  void Note(const std::string& text);
  // The closing notes (dropped bytes) and the reason the log makes the try fail, if any:
  // folded into `exit`.
  void Conclude(TaskExit& exit);

 private:
  void WriteLog(std::string_view data);
  // 0, or why the log cannot be opened.
  int OpenLog();

  int log_fd_;
  UniqueFd owned_fd_;  // log_fd_, when we opened it
  std::string log_path_;
  int64_t size_limit_;
  int64_t log_bytes_;          // in the log file, notes aside
  bool log_mid_line_;          // the log file ends inside a line: a note starts a new one
  std::string held_;           // the start of an unfinished line that may become a directive
  bool mid_line_ = false;      // the output is inside a line: what follows cannot be a directive
  int64_t dropped_bytes_ = 0;  // output past size_limit_
  int log_errno_ = 0;          // the first failed write to the log
  int64_t unwritten_bytes_ = 0;
  bool log_cut_ = false;
};

// The exit code and reason of a command that ended with `wait_status` (from wait4, with its
// `usage`), stopped by us (`stopping`, `killed`: SIGTERM sent, then SIGKILL) or not, under
// `limits`.
TaskExit DescribeExit(int wait_status, const rusage& usage, const TaskLimits& limits, bool stopping, bool killed);

// How many whole seconds RLIMIT_CPU gets for a cpu_time limit (rounded up).
int64_t CpuLimitSeconds(Duration cpu_time);
// RLIMIT_CPU's soft limit sends SIGXCPU; the hard limit, this much later, SIGKILL for a command
// that catches or ignores SIGXCPU.
inline constexpr int64_t kCpuTimeKillAfterSeconds = 5;

// 0, or the errno of the write that failed.
int WriteFully(int fd, std::string_view data);

// Opens `path` to append to it (created 0644 if missing, close-on-exec), making its folder
// first if that is missing, as `mkdir -p` would. -1 with errno set (the mkdir's, if that failed).
int OpenForAppend(const std::string& path);

// CLOCK_MONOTONIC in milliseconds: the stop deadlines of both watchers.
int64_t MonotonicMs();

}  // namespace nightshift

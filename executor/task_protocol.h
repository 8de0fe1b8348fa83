// What the local executor and its task wrapper (task_wrapper.h) agree on: the wrapper's command
// line, the files it leaves next to a try's log, and the lines it prints on its stdout. Both
// sides include this header so that a format exists in one place only.
//
// Files (their paths: core/try_files.h), all replaced atomically (written to a temporary name,
// then renamed):
//   pid file       "PID STARTTIME\n": the wrapper's pid and field 22 of /proc/PID/stat, written
//                  before the command starts. STARTTIME tells a live wrapper from a process
//                  that later got the same pid.
//   status file    "EXIT_CODE\n" optionally followed by "REASON\n"; written once (not fsync'ed),
//                  when the command has ended. Its presence means the try's result is known.
//                  EXIT_CODE is the command's, or kWrapperSetupFailedExit when the command
//                  succeeded but its log could not be written (REASON says so).
//   progress file  "FRACTION\n", 0..1, the latest progress the command reported.
// Wrapper stdout: one "progress FRACTION\n" line per progress update the command reported, and
// "error MESSAGE\n" before it exits kWrapperSetupFailedExit: why it could not start the command
// (it may have had nowhere else to say it: a full disk or a read-only log folder).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "core/task_limits.h"
#include "core/time.h"
#include "core/unique_fd.h"

namespace nightshift {

// argv[1] of the nightshift binary that makes it act as a task wrapper.
inline constexpr std::string_view kTaskWrapperCommand = "__task-wrapper";

// Exit codes the wrapper uses for itself, seen without a status file (and 125 in one, see above):
// it did not start the command (bad arguments, unwritable log or pid file).
inline constexpr int kWrapperSetupFailedExit = 125;
// It refused to start the command because another wrapper holds this try, or the try already
// has a status: a try never runs twice.
inline constexpr int kWrapperRefusedExit = 75;

// The wrapper's options. Its command line is
//   ARGV0 __task-wrapper --log PATH --status PATH --pid-file PATH [--progress-file PATH]
//         [--cwd DIR] [--kill-grace-ms N] [--log-size BYTES] [--cpu-time DURATION]
//         [--address-space BYTES] [--open-files N] [--nice N] -- COMMAND
// with COMMAND one argument, run by /bin/sh -c.
struct TaskWrapperArgs {
  std::string log_path;           // required; stdout and stderr lines are appended here
  std::string status_path;        // required
  std::string pid_path;           // required
  std::string progress_path;      // optional; empty: progress is only printed on stdout
  std::string cwd;                // optional; empty: the wrapper's own working directory
  int64_t kill_grace_ms = 10000;  // SIGTERM to SIGKILL on cancel
  std::string command;
  // Unset log_size means kDefaultTaskLogSize; the other limits are applied only when set.
  TaskLimits limits;

  // The full argv, starting with `argv0` and kTaskWrapperCommand.
  std::vector<std::string> ToArgv(const std::string& argv0) const;
};

// Parses main()'s argc/argv. argv[0] is the program; argv[1] may be kTaskWrapperCommand, in
// which case it is skipped.
Result<TaskWrapperArgs> ParseTaskWrapperArgs(int argc, const char* const* argv);

// --- files ---

// Writes `content` to `path` through a temporary file in the same folder and rename(2), so a
// reader sees the old content or the new one, never a part. With `durable`, the file and its
// folder are fsync'ed before returning, so the content survives a machine crash too.
Status WriteFileAtomically(const std::string& path, std::string_view content, bool durable);

// A file that will be written once, later, when its folder may have no space left: its blocks
// are allocated now, in a temporary file next to it, and Commit() writes into them and renames.
// Destroying it uncommitted removes the temporary file.
class ReservedFile {
 public:
  static Result<ReservedFile> Create(const std::string& path, size_t reserve_bytes);
  ReservedFile(ReservedFile&& other) noexcept;
  ReservedFile& operator=(ReservedFile&&) = delete;
  ReservedFile(const ReservedFile&) = delete;
  ~ReservedFile();

  // Replaces `path` with `content` (at most the reserved size) as WriteFileAtomically does.
  Status Commit(std::string_view content, bool durable);

 private:
  ReservedFile(std::string path, std::string tmp, UniqueFd fd, size_t size)
      : path_(std::move(path)), tmp_(std::move(tmp)), fd_(std::move(fd)), size_(size) {}
  std::string path_;
  std::string tmp_;
  UniqueFd fd_;
  size_t size_ = 0;
};
// What the wrapper reserves for its status file: an exit code and a reason of a few lines.
inline constexpr size_t kStatusFileReserve = 4096;

struct PidFileContents {
  pid_t pid = 0;
  uint64_t start_time = 0;  // clock ticks after boot, field 22 of /proc/PID/stat
};
std::string FormatPidFile(const PidFileContents& contents);
// NotFound when the file does not exist; Corruption when it does not parse.
Result<PidFileContents> ReadPidFile(const std::string& path);

struct TaskExit {
  int exit_code = 0;   // 0..255, or 128+signal when the command was killed by a signal
  std::string reason;  // empty, or why it failed ("killed by signal 15", ...)
};
std::string FormatStatusFile(const TaskExit& exit);
// NotFound when the file does not exist; Corruption when it does not parse.
Result<TaskExit> ReadStatusFile(const std::string& path);

std::string FormatFraction(double fraction);  // shortest text that reads back to the same double
std::optional<double> ParseFraction(std::string_view text);  // 0..1 only
// The progress file's value; nullopt when it is missing or unreadable.
std::optional<double> ReadProgressFile(const std::string& path);

// The sidecar files are read by both executors: whether one is there, and when it was
// written (a status file's time is when the try ended, even if nobody watched).
bool PathExists(const std::string& path);
std::optional<TimePoint> FileModifiedAt(const std::string& path);

// The progress line the wrapper prints on stdout, and its parser (nullopt: not a progress line).
std::string FormatProgressReport(double fraction);  // "progress 0.5\n"
std::optional<double> ParseProgressReport(std::string_view line);

// The wrapper's last word on stdout when it could not start the command, and its parser
// (nullopt: not such a line).
std::string FormatWrapperError(std::string_view message);  // "error MESSAGE\n", one line
std::optional<std::string> ParseWrapperError(std::string_view line);

// --- processes ---

struct ProcStat {
  char state = '?';  // field 3: R, S, D, Z (zombie), ...
  uint64_t start_time = 0;
};
// Reads /proc/PID/stat; nullopt when no such process exists (any more).
std::optional<ProcStat> ReadProcStat(pid_t pid);
// The same from the text of such a file; nullopt when it is not one.
std::optional<ProcStat> ParseProcStat(std::string_view text);
// pidfd_open(2), called directly: glibc 2.36's <sys/pidfd.h> lacks extern "C" and so cannot be
// linked from C++. -1 with errno on failure; the descriptor is close-on-exec.
int PidfdOpen(pid_t pid);

// "exit code 3", "killed by signal 15 (Terminated)": for a wait status from waitpid(2).
std::string DescribeWaitStatus(int wait_status);
// The exit code a shell would report for a wait status: the code itself, or 128+signal.
int ExitCodeOfWaitStatus(int wait_status);

}  // namespace nightshift

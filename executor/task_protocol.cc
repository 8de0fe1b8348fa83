#include "executor/task_protocol.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/strings.h"
#include "core/unique_fd.h"

namespace nightshift {
namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(ErrnoText(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::OK();
}

// Whole small file; NotFound when missing.
Result<std::string> ReadSmallFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Status::NotFound(path);
    return Status::IOError(path + ": " + ErrnoText(errno));
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IOError(path + ": " + ErrnoText(errno));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (1 << 20)) break;  // our files are tiny; do not follow a runaway one
  }
  return text;
}

template <typename T>
std::optional<T> ParseNumber(std::string_view text) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// fsyncs the folder `path` is in: a rename lives there, and without this a crash could forget it.
void SyncParentFolder(const std::string& path) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  if (UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); dfd) ::fsync(dfd.get());
}

// The temporary name a file is written under before rename(2). The pid in it keeps two writers
// (say, a wrapper and a test) off each other's file.
std::string TemporaryNameFor(const std::string& path) { return path + ".tmp" + std::to_string(::getpid()); }

}  // namespace

std::vector<std::string> TaskWrapperArgs::ToArgv(const std::string& argv0) const {
  std::vector<std::string> argv = {
      argv0,   std::string(kTaskWrapperCommand), "--log", log_path, "--status", status_path, "--pid-file",
      pid_path};
  if (!progress_path.empty()) {
    argv.insert(argv.end(), {"--progress-file", progress_path});
  }
  if (!cwd.empty()) argv.insert(argv.end(), {"--cwd", cwd});
  argv.insert(argv.end(), {"--kill-grace-ms", std::to_string(kill_grace_ms)});
  if (limits.log_size) argv.insert(argv.end(), {"--log-size", std::to_string(*limits.log_size)});
  if (limits.cpu_time) argv.insert(argv.end(), {"--cpu-time", FormatDuration(*limits.cpu_time)});
  if (limits.address_space) argv.insert(argv.end(), {"--address-space", std::to_string(*limits.address_space)});
  if (limits.open_files) argv.insert(argv.end(), {"--open-files", std::to_string(*limits.open_files)});
  if (limits.nice) argv.insert(argv.end(), {"--nice", std::to_string(*limits.nice)});
  argv.insert(argv.end(), {"--", command});
  return argv;
}

Result<TaskWrapperArgs> ParseTaskWrapperArgs(int argc, const char* const* argv) {
  TaskWrapperArgs args;
  int i = 1;
  if (i < argc && argv[i] == kTaskWrapperCommand) ++i;
  bool have_command = false;
  for (; i < argc; ++i) {
    std::string_view opt = argv[i];
    if (opt == "--") {
      if (argc - i - 1 != 1) return Status::InvalidArgument("expected exactly one COMMAND after --");
      args.command = argv[i + 1];
      have_command = true;
      break;
    }
    if (i + 1 >= argc) return Status::InvalidArgument(std::string(opt) + " needs a value");
    std::string value = argv[++i];
    if (opt == "--log") {
      args.log_path = value;
    } else if (opt == "--status") {
      args.status_path = value;
    } else if (opt == "--pid-file") {
      args.pid_path = value;
    } else if (opt == "--progress-file") {
      args.progress_path = value;
    } else if (opt == "--cwd") {
      args.cwd = value;
    } else if (opt == "--kill-grace-ms") {
      auto ms = ParseNumber<int64_t>(value);
      if (!ms || *ms < 0) return Status::InvalidArgument("--kill-grace-ms: not a number: " + value);
      args.kill_grace_ms = *ms;
    } else if (opt == "--log-size" || opt == "--address-space" || opt == "--open-files") {
      auto n = ParseNumber<int64_t>(value);
      if (!n || *n <= 0) return Status::InvalidArgument(std::string(opt) + ": not a positive number: " + value);
      (opt == "--log-size" ? args.limits.log_size : opt == "--address-space" ? args.limits.address_space
                                                                             : args.limits.open_files) = *n;
    } else if (opt == "--cpu-time") {
      auto duration = ParseDuration(value);
      if (!duration.ok() || duration->count() <= 0) {
        return Status::InvalidArgument("--cpu-time: not a positive duration: " + value);
      }
      args.limits.cpu_time = *duration;
    } else if (opt == "--nice") {
      auto n = ParseNumber<int>(value);
      if (!n || *n < -20 || *n > 19) return Status::InvalidArgument("--nice: not a number from -20 to 19: " + value);
      args.limits.nice = *n;
    } else {
      return Status::InvalidArgument("unknown option " + std::string(opt));
    }
  }
  if (!have_command) return Status::InvalidArgument("missing -- COMMAND");
  if (args.log_path.empty() || args.status_path.empty() || args.pid_path.empty()) {
    return Status::InvalidArgument("--log, --status and --pid-file are required");
  }
  return args;
}

Status WriteFileAtomically(const std::string& path, std::string_view content, bool durable) {
  const std::string tmp = TemporaryNameFor(path);
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return Status::IOError(tmp + ": " + ErrnoText(errno));
  Status s = WriteAll(fd.get(), content);
  if (s.ok() && durable && ::fsync(fd.get()) != 0) s = Status::IOError(ErrnoText(errno));
  if (int err = fd.Close(); err != 0 && s.ok()) s = Status::IOError(ErrnoText(err));
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = Status::IOError(ErrnoText(errno));
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return Status::IOError(path + ": " + s.message());
  }
  if (durable) SyncParentFolder(path);
  return Status::OK();
}

Result<ReservedFile> ReservedFile::Create(const std::string& path, size_t reserve_bytes) {
  std::string tmp = TemporaryNameFor(path);
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return Status::IOError(tmp + ": " + ErrnoText(errno));
  // Emulated with writes where the file system has no fallocate(2); either way the blocks are ours.
  if (int err = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(reserve_bytes)); err != 0) {
    fd.Reset();
    ::unlink(tmp.c_str());
    return Status::IOError(tmp + ": cannot reserve " + std::to_string(reserve_bytes) + " bytes: " + ErrnoText(err));
  }
  return ReservedFile(path, std::move(tmp), std::move(fd), reserve_bytes);
}

ReservedFile::ReservedFile(ReservedFile&& other) noexcept
    : path_(std::move(other.path_)), tmp_(std::move(other.tmp_)), fd_(std::move(other.fd_)), size_(other.size_) {}

ReservedFile::~ReservedFile() {
  if (!fd_) return;
  fd_.Reset();
  ::unlink(tmp_.c_str());
}

Status ReservedFile::Commit(std::string_view content, bool durable) {
  if (!fd_) return Status::IOError(path_ + ": already written");
  if (content.size() > size_) content = content.substr(0, size_);
  Status s;
  // Overwrites the reserved blocks, then gives back the rest: neither needs free space.
  for (size_t done = 0; s.ok() && done < content.size();) {
    ssize_t n = ::pwrite(fd_.get(), content.data() + done, content.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) s = Status::IOError(ErrnoText(n < 0 ? errno : EIO));
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (s.ok() && ::ftruncate(fd_.get(), static_cast<off_t>(content.size())) != 0) s = Status::IOError(ErrnoText(errno));
  if (s.ok() && durable && ::fsync(fd_.get()) != 0) s = Status::IOError(ErrnoText(errno));
  if (int err = fd_.Close(); err != 0 && s.ok()) s = Status::IOError(ErrnoText(err));
  if (s.ok() && ::rename(tmp_.c_str(), path_.c_str()) != 0) s = Status::IOError(ErrnoText(errno));
  if (!s.ok()) {
    ::unlink(tmp_.c_str());
    return Status::IOError(path_ + ": " + s.message());
  }
  if (durable) SyncParentFolder(path_);
  return Status::OK();
}

std::string FormatPidFile(const PidFileContents& contents) {
  return std::to_string(contents.pid) + " " + std::to_string(contents.start_time) + "\n";
}

Result<PidFileContents> ReadPidFile(const std::string& path) {
  auto text = ReadSmallFile(path);
  if (!text.ok()) return text.status();
  std::string_view line = Trim(*text);
  const auto space = line.find(' ');
  if (space == std::string_view::npos) return Status::Corruption(path + ": expected \"PID STARTTIME\"");
  auto pid = ParseNumber<pid_t>(line.substr(0, space));
  auto start = ParseNumber<uint64_t>(Trim(line.substr(space + 1)));
  if (!pid || *pid <= 0 || !start) return Status::Corruption(path + ": expected \"PID STARTTIME\"");
  return PidFileContents{*pid, *start};
}

std::string FormatStatusFile(const TaskExit& exit) {
  std::string text = std::to_string(exit.exit_code) + "\n";
  if (!exit.reason.empty()) {
    std::string reason = exit.reason;
    for (char& c : reason) {
      if (c == '\n') c = ' ';
    }
    text += reason + "\n";
  }
  return text;
}

Result<TaskExit> ReadStatusFile(const std::string& path) {
  auto text = ReadSmallFile(path);
  if (!text.ok()) return text.status();
  std::string_view rest = *text;
  const auto nl = rest.find('\n');
  std::string_view first = Trim(rest.substr(0, nl));
  auto code = ParseNumber<int>(first);
  if (!code || *code < 0 || *code > 255) return Status::Corruption(path + ": expected an exit code");
  TaskExit exit{*code, {}};
  if (nl != std::string_view::npos) exit.reason = std::string(Trim(rest.substr(nl + 1)));
  return exit;
}

std::string FormatFraction(double fraction) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, fraction);
  if (ec != std::errc()) return "0";
  return std::string(buf, end);
}

std::optional<double> ParseFraction(std::string_view text) {
  auto value = ParseNumber<double>(Trim(text));
  if (!value || !std::isfinite(*value) || *value < 0 || *value > 1) return std::nullopt;
  return value;
}

std::optional<double> ReadProgressFile(const std::string& path) {
  auto text = ReadSmallFile(path);
  if (!text.ok()) return std::nullopt;
  return ParseFraction(*text);
}

std::string FormatProgressReport(double fraction) { return "progress " + FormatFraction(fraction) + "\n"; }

std::optional<double> ParseProgressReport(std::string_view line) {
  constexpr std::string_view kPrefix = "progress ";
  if (!line.starts_with(kPrefix)) return std::nullopt;
  return ParseFraction(line.substr(kPrefix.size()));
}

std::string FormatWrapperError(std::string_view message) {
  std::string line = "error ";
  for (char c : message) line.push_back(c == '\n' ? ' ' : c);
  return line + "\n";
}

std::optional<std::string> ParseWrapperError(std::string_view line) {
  constexpr std::string_view kPrefix = "error ";
  if (!line.starts_with(kPrefix)) return std::nullopt;
  return std::string(Trim(line.substr(kPrefix.size())));
}

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  auto text = ReadSmallFile("/proc/" + std::to_string(pid) + "/stat");
  if (!text.ok()) return std::nullopt;
  return ParseProcStat(*text);
}

std::optional<ProcStat> ParseProcStat(std::string_view text) {
  // Field 2 is "(comm)" and comm may hold spaces and parentheses: count from the last ')'.
  const auto close = text.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  // Split by hand: the supervisor parses one of these per try, and a stream allocates.
  std::string_view rest = text.substr(close + 1);
  ProcStat stat;
  for (int index = 3;; ++index) {
    const size_t begin = rest.find_first_not_of(" \n");
    if (begin == std::string_view::npos) break;
    rest.remove_prefix(begin);
    const std::string_view field = rest.substr(0, rest.find_first_of(" \n"));
    rest.remove_prefix(field.size());
    if (index == 3) stat.state = field[0];
    if (index == 22) {
      auto start = ParseNumber<uint64_t>(field);
      if (!start) return std::nullopt;
      stat.start_time = *start;
      return stat;
    }
  }
  return std::nullopt;
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return "exit code " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    const char* name = ::strsignal(sig);
    return "killed by signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : "");
  }
  return "wait status " + std::to_string(wait_status);
}

int ExitCodeOfWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 255;
}

bool PathExists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::optional<TimePoint> FileModifiedAt(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  auto since_epoch = std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec);
  return TimePoint(std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch));
}

}  // namespace nightshift

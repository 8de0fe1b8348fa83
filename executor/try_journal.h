// The tries journal: one append-only text file per run (`tries.journal` in the run's log
// folder) where the supervisor (supervisor.h) records each local try it starts and how it
// ended. It is how a try's result outlives the daemon: a daemon killed with -9 loses nothing
// the supervisor saw, and the next daemon reads the journal to adopt or conclude the tries the
// store still has as queued or running.
//
// One line per record, each written with a single write(2) to an O_APPEND descriptor, so
// records never interleave; fields are separated by tabs:
//   S <TAB> LOG_PATH <TAB> PID <TAB> STARTTIME <TAB> SUPERVISOR_PID <TAB> SUPERVISOR_STARTTIME
//        the try's command started as PID (field 22 of /proc/PID/stat is STARTTIME, which
//        tells it from a later process with the same pid); written right after the spawn
//   E <TAB> LOG_PATH <TAB> EXIT_CODE <TAB> UNIX_MS <TAB> REASON
//        it ended at UNIX_MS with EXIT_CODE (0..255, or 128+signal); REASON may be empty
// A try is named by its log path, which is unique per try. Like the SQLite commits
// (synchronous=NORMAL), records are not fsync'ed: they survive any process being killed, and
// only a machine crash, which also kills the tries, can lose them (docs/adr/0005).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"
#include "core/time.h"
#include "core/try_files.h"  // TryJournalPath: where the journal of a run is

namespace nightshift {


struct JournalStart {
  pid_t pid = 0;
  uint64_t start_time = 0;
  pid_t supervisor_pid = 0;
  uint64_t supervisor_start_time = 0;
};

struct JournalEnd {
  int exit_code = 0;
  std::string reason;
  TimePoint at{};
};

// What the journal says of one try.
struct JournalTry {
  std::optional<JournalStart> start;
  std::optional<JournalEnd> end;
};

std::string FormatJournalStart(std::string_view log_path, const JournalStart& start);
std::string FormatJournalEnd(std::string_view log_path, const JournalEnd& end);

// Every try in the journal at `path`, by log path; an empty map when the file does not exist.
// A torn or unreadable line (there should be none) is skipped.
Result<std::map<std::string, JournalTry>> ReadTryJournal(const std::string& path);

// Whether a log path can name a try in the journal: no tab, no newline.
bool IsJournalSafe(std::string_view text);

}  // namespace nightshift

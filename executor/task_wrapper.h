// The task wrapper: a small process between a Slurm job and one try's command (local tries
// have the supervisor instead, supervisor.h). It is what makes a try's result durable: it
// lives in its own session, so a daemon killed with -9 does not take it along, and it writes
// the command's exit code to the status file before it exits, whether or not anyone is still
// listening. A restarted daemon adopts it through its pid file.
//
// The nightshift binary runs it when invoked as
//   nightshift __task-wrapper --log PATH --status PATH --pid-file PATH [--progress-file PATH]
//                             [--cwd DIR] [--kill-grace-ms N] [LIMIT OPTIONS] -- COMMAND
// (see TaskWrapperArgs in task_protocol.h), i.e. main() does
//   if (argc > 1 && argv[1] == kTaskWrapperCommand) return RunTaskWrapper(argc, argv);
// before anything else (no threads, no logging setup).
//
// What it does, in order:
//  1. ignores SIGPIPE and SIGHUP, blocks SIGTERM/SIGINT/SIGCHLD (read through a signalfd),
//     calls setsid();
//  2. opens the log and takes an exclusive flock on it for its whole life; if another wrapper
//     holds it, or the status file already exists, it exits kWrapperRefusedExit without
//     running anything (a try never runs twice);
//  3. takes the status file's space (ReservedFile), so a full disk cannot keep the result from
//     being recorded, and writes the pid file "PID STARTTIME";
//  4. starts the command with StartChild (process.h): own process group, default signal
//     dispositions, empty signal mask, stdin /dev/null, stdout+stderr into a pipe, chdir(--cwd)
//     (failure: message in the log, exit 127), the rlimits and niceness of --cpu-time,
//     --address-space, --open-files, --nice (failure: message in the log, exit 126), exec
//     /bin/sh -c COMMAND;
//  5. copies the pipe into the log line by line, except `::progress DONE/TOTAL` and
//     `::progress PCT%` lines, which update the progress file and print "progress FRACTION" on
//     its stdout (EPIPE there is ignored: the daemon may be gone); past --log-size bytes the
//     output is read and dropped, and a note at the end of the log counts it; a failed write to
//     the log stops the writing and fails the try (exit 125 if the command succeeded) with why;
//  6. on SIGTERM/SIGINT: SIGTERM to the command's process group, SIGKILL after --kill-grace-ms
//     (GroupStop);
//  7. when the command exits: the remaining output is copied, the group is SIGKILLed if we were
//     stopping it, the status file is written (and fsync'ed), and the wrapper exits with the
//     command's exit code (0..255, or 128+signal).
// Exits kWrapperSetupFailedExit without a status when it could not start the command, after
// printing "error MESSAGE" on its stdout.
#pragma once

#include <optional>
#include <string_view>

namespace nightshift {

// main() for `nightshift __task-wrapper ...`; argv as main() received it.
int RunTaskWrapper(int argc, char** argv);

// Parses a line the task printed (without its newline): "::progress 5/10" -> 0.5,
// "::progress 42%" -> 0.42, clamped to 0..1. nullopt when it is not a well-formed progress
// line, which then goes to the log like any other.
std::optional<double> ParseProgressDirective(std::string_view line);

}  // namespace nightshift

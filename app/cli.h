// The `nightshift` command line (contract section 3).
#pragma once

namespace nightshift {

// Parses argv and runs the chosen command; returns the process exit code.
int RunCli(int argc, char** argv);

}  // namespace nightshift

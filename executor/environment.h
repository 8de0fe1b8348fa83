// A try's environment: the daemon's own, sent to the supervisor once, with each try's variables
// over it. Only the try's variables (about ten, against the fifty or so a login environment
// holds) travel with each start.
#pragma once

#include <string>
#include <vector>

namespace nightshift {

// This process's environment as NAME=VALUE strings, sorted by name.
std::vector<std::string> SortedEnvironment();

// Sorts NAME=VALUE strings by name. (Not by the whole string: "A0=1" comes before "A=1" that
// way, and a merge by name would then keep both a task's A and the base's.)
void SortByName(std::vector<std::string>* assignments);

// What execve takes: `base` with each variable of `over` set over it, both sorted by name.
// The pointers point into the two vectors, which must outlive the result and not change.
std::vector<char*> MergedEnvironment(std::vector<std::string>& base, std::vector<std::string>& over);

}  // namespace nightshift

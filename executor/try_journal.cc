#include "executor/try_journal.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <vector>

namespace nightshift {
namespace {

std::vector<std::string_view> SplitTabs(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  for (size_t tab; (tab = line.find('\t', start)) != std::string_view::npos; start = tab + 1) {
    fields.push_back(line.substr(start, tab - start));
  }
  fields.push_back(line.substr(start));
  return fields;
}

template <typename T>
bool ParseNumber(std::string_view text, T* out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

// Reasons are ours, but may quote a path or a message: kept to one line, no tabs.
std::string OneLine(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  }
  return out;
}

}  // namespace

bool IsJournalSafe(std::string_view text) { return text.find_first_of("\t\n") == std::string_view::npos; }

std::string FormatJournalStart(std::string_view log_path, const JournalStart& start) {
  std::string line = "S\t";
  line += log_path;
  line += '\t' + std::to_string(start.pid) + '\t' + std::to_string(start.start_time) + '\t' +
          std::to_string(start.supervisor_pid) + '\t' + std::to_string(start.supervisor_start_time) + '\n';
  return line;
}

std::string FormatJournalEnd(std::string_view log_path, const JournalEnd& end) {
  const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(end.at.time_since_epoch()).count();
  std::string line = "E\t";
  line += log_path;
  line += '\t' + std::to_string(end.exit_code) + '\t' + std::to_string(ms) + '\t' + OneLine(end.reason) + '\n';
  return line;
}

Result<std::map<std::string, JournalTry>> ReadTryJournal(const std::string& path) {
  std::map<std::string, JournalTry> tries;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return tries;
    return Status::IOError("cannot read " + path + ": " + std::strerror(errno));
  }
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline: a record still being written (or torn); not trusted
    const std::vector<std::string_view> f = SplitTabs(line);
    if (f[0] == "S" && f.size() == 6) {
      JournalStart start;
      if (ParseNumber(f[2], &start.pid) && ParseNumber(f[3], &start.start_time) &&
          ParseNumber(f[4], &start.supervisor_pid) && ParseNumber(f[5], &start.supervisor_start_time)) {
        tries[std::string(f[1])].start = start;
      }
    } else if (f[0] == "E" && f.size() == 5) {
      JournalEnd end;
      int64_t ms = 0;
      if (ParseNumber(f[2], &end.exit_code) && ParseNumber(f[3], &ms)) {
        end.at = TimePoint(std::chrono::milliseconds(ms));
        end.reason = std::string(f[4]);
        tries[std::string(f[1])].end = std::move(end);
      }
    }
  }
  return tries;
}

}  // namespace nightshift

#include "dags/dag_folder.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>
#include <tuple>
#include <utility>

#include "dags/yaml_reader.h"

namespace nightshift {
namespace {

namespace fs = std::filesystem;

struct FileStamp {
  int64_t mtime_ns = 0;
  int64_t size = 0;
};

bool IsDagFileName(const std::string& name) {
  if (name.empty() || name.front() == '.') return false;
  const std::string extension = fs::path(name).extension().string();
  return extension == ".yaml" || extension == ".yml";
}

// The DAG files under `folder`, by path, in the order the directory walk found them. Hidden
// files and folders (editor swap files, .git) are skipped. Errors never throw: an unreadable
// subfolder is skipped, and a missing or unreadable top folder is reported through `error`.
std::map<std::string, FileStamp> ScanFolder(const std::string& folder, std::string& error) {
  std::map<std::string, FileStamp> found;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) {
    error = ec ? ec.message() : (fs::exists(folder, ec) ? "not a folder" : "no such folder");
    return found;
  }
  fs::recursive_directory_iterator it(folder, fs::directory_options::skip_permission_denied, ec);
  if (ec) {
    error = ec.message();
    return found;
  }
  for (const fs::recursive_directory_iterator end; it != end; it.increment(ec)) {
    if (ec) break;
    const fs::path& path = it->path();
    const std::string name = path.filename().string();
    std::error_code type_ec;
    if (!name.empty() && name.front() == '.') {
      if (it->is_directory(type_ec)) it.disable_recursion_pending();
      continue;
    }
    if (!IsDagFileName(name) || !it->is_regular_file(type_ec)) continue;  // follows symlinks
    struct stat info;
    if (::stat(path.c_str(), &info) != 0) continue;  // deleted while we looked
    found[path.string()] =
        FileStamp{static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec,
                  static_cast<int64_t>(info.st_size)};
  }
  return found;
}

}  // namespace

DagFolder::DagFolder(std::string folder, DagLoadContext context)
    : folder_(std::move(folder)), context_(std::move(context)) {}

bool DagFolder::Refresh() {
  std::string folder_error;
  const std::map<std::string, FileStamp> found = ScanFolder(folder_, folder_error);
  bool changed = false;

  // A folder that cannot be read is kept as a pseudo-file entry under the folder's own name, so
  // that it shows as an import error and disappears again once the folder is there.
  if (!folder_error.empty()) {
    ImportError error{folder_, 1, 1, "cannot read the DAGs folder: " + folder_error};
    auto it = files_.find(folder_);
    if (it == files_.end() || it->second.result.errors.size() != 1 ||
        it->second.result.errors.front().message != error.message) {
      FileEntry entry;
      entry.mtime_ns = -1;
      entry.result.errors.push_back(std::move(error));
      files_[folder_] = std::move(entry);
      changed = true;
    }
  }

  for (auto it = files_.begin(); it != files_.end();) {
    const bool is_folder_entry = it->first == folder_ && it->second.mtime_ns == -1;
    const bool keep = is_folder_entry ? !folder_error.empty() : found.count(it->first) != 0;
    if (keep) {
      ++it;
    } else {
      it = files_.erase(it);
      changed = true;
    }
  }

  for (const auto& [path, stamp] : found) {
    auto it = files_.find(path);
    if (it != files_.end() && it->second.mtime_ns == stamp.mtime_ns && it->second.size == stamp.size)
      continue;
    FileEntry entry;
    entry.mtime_ns = stamp.mtime_ns;
    entry.size = stamp.size;
    entry.result = LoadDagFile(path, context_);
    if (entry.result.dag) {
      entry.last_good = entry.result.dag;
    } else if (it != files_.end()) {
      entry.last_good = std::move(it->second.last_good);
    }
    files_[path] = std::move(entry);
    changed = true;
  }

  if (changed) Rebuild();
  return changed;
}

void DagFolder::Rebuild() {
  dags_.clear();
  import_errors_.clear();
  std::map<std::string, std::vector<std::string>> files_by_id;  // paths in sorted order
  for (const auto& [path, entry] : files_) {
    for (const ImportError& error : entry.result.errors) import_errors_.push_back(error);
    if (entry.last_good) files_by_id[entry.last_good->dag_id].push_back(path);
  }
  for (const auto& [dag_id, paths] : files_by_id) {
    if (paths.size() == 1) {
      dags_.emplace(dag_id, *files_.at(paths.front()).last_good);
      continue;
    }
    // Serving either one would depend on scan order; neither is served until one is renamed.
    for (const std::string& path : paths) {
      std::string others;
      for (const std::string& other : paths) {
        if (other == path) continue;
        if (!others.empty()) others += ", ";
        others += other;
      }
      // The loader keeps no position for dag_id; the file is read again to point at it. This
      // only happens for the rare duplicate, and a file that changed since is fixed by the next
      // Refresh().
      YamlPosition at;
      std::string text;
      if (ReadWholeFile(path, text).ok()) {
        if (std::optional<YamlPosition> found = FindTopLevelValue(text, "dag_id")) at = *found;
      }
      import_errors_.push_back(
          ImportError{path, at.line, at.column, "dag_id \"" + dag_id + "\" is also defined in " + others});
    }
  }
  std::stable_sort(import_errors_.begin(), import_errors_.end(),
                   [](const ImportError& a, const ImportError& b) {
                     return std::tie(a.filename, a.line, a.column) < std::tie(b.filename, b.line, b.column);
                   });
}

}  // namespace nightshift

// The DAGs folder: every *.yaml / *.yml under it (subfolders included), loaded and kept
// current. Refresh() re-reads only files that changed on disk.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/dag.h"
#include "core/run.h"
#include "dags/dag_loader.h"

namespace nightshift {

class DagFolder {
 public:
  DagFolder(std::string folder, DagLoadContext context);

  // Rescans the folder: loads new files, reloads files whose modification time or size
  // changed, forgets deleted ones. Returns true when the set of DAGs or errors changed.
  // Two files with the same dag_id are both import errors and neither DAG is served.
  // A file that loaded before and now has errors keeps serving its last good DAG.
  // A broken file never stops the others from loading.
  bool Refresh();

  const std::map<std::string, Dag>& dags() const { return dags_; }  // by dag_id
  const std::vector<ImportError>& import_errors() const { return import_errors_; }  // by filename

 private:
  struct FileEntry {
    int64_t mtime_ns = 0;
    int64_t size = 0;
    DagLoadResult result;
    // The DAG as last loaded without errors. A file that breaks keeps being served from it
    // (and reports its errors) until it is fixed or deleted, so a typo saved at 21:59 does
    // not cancel the night's schedule.
    std::optional<Dag> last_good;
  };
  void Rebuild();

  std::string folder_;
  DagLoadContext context_;
  std::map<std::string, FileEntry> files_;  // by path
  std::map<std::string, Dag> dags_;
  std::vector<ImportError> import_errors_;
};

}  // namespace nightshift

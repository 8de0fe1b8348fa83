// Reads one DAG file (contract section 1) into a Dag, validating everything that can be known
// without running it. Every problem is reported with its position in the file.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/dag.h"
#include "core/run.h"

namespace nightshift {

// What a DAG may refer to outside its own file, taken from the daemon's config.
struct DagLoadContext {
  std::set<std::string> windows;                 // window names the config defines
  std::set<std::string> pools = {"default"};     // pool names the config defines
};

struct DagLoadResult {
  std::optional<Dag> dag;            // set only when `errors` is empty
  std::vector<ImportError> errors;   // filename, 1-based line and column, message
};

// Loads the DAG at `path`. dag_id defaults to the file's stem.
DagLoadResult LoadDagFile(const std::string& path, const DagLoadContext& context);
// Same, from text already read; `path` names the file in errors and gives the default dag_id.
DagLoadResult LoadDagText(std::string_view text, const std::string& path, const DagLoadContext& context);

// "FILE:LINE:COLUMN: message", as validate prints and editors jump to.
std::string FormatImportError(const ImportError& error);

}  // namespace nightshift

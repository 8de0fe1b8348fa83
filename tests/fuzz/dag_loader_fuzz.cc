// A DAG file as a hostile user could save it into the DAGs folder. The loader must return a DAG
// or positioned errors (never both, never neither), and never crash, hang or leak.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dags/dag_loader.h"
#include "dags/yaml_reader.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = nightshift::fuzz::AsText(data, size);
  // The names the example config defines, so inputs seeded from examples/dags load fully.
  nightshift::DagLoadContext context;
  context.windows = {"nightly"};
  context.pools = {"default", "db"};

  const nightshift::DagLoadResult result = nightshift::LoadDagText(text, "/fuzz/dags/fuzzed.yaml", context);
  if (result.dag.has_value() == !result.errors.empty()) std::abort();
  for (const nightshift::ImportError& error : result.errors) {
    if (error.line < 1 || error.column < 1 || error.message.empty()) std::abort();
    (void)nightshift::FormatImportError(error);
  }
  // The DAGs folder reads this from every file to point a duplicate dag_id at its line.
  (void)nightshift::FindTopLevelValue(text, "dag_id");
  return 0;
}

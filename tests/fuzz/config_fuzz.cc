// nightshift.yaml as a hostile file could hold it: a Config or "FILE:LINE:COLUMN: message"
// lines, never a crash, hang or leak.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "app/config.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = nightshift::fuzz::AsText(data, size);
  const nightshift::Result<nightshift::Config> config =
      nightshift::LoadConfigText(text, "/fuzz/nightshift.yaml");
  if (!config.ok() && config.status().message().empty()) std::abort();
  return 0;
}

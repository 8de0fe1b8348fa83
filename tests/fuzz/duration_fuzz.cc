// ParseDuration on arbitrary text: a value or an error, never a crash, never a negative value,
// and every value reads back from the text FormatDuration gives it.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/duration.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = nightshift::fuzz::AsText(data, size);
  const nightshift::Result<nightshift::Duration> parsed = nightshift::ParseDuration(text);
  if (!parsed.ok()) return 0;
  if (parsed->count() < 0) std::abort();
  const nightshift::Result<nightshift::Duration> again =
      nightshift::ParseDuration(nightshift::FormatDuration(*parsed));
  if (!again.ok() || *again != *parsed) std::abort();
  return 0;
}

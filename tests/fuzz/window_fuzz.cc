// A config's batch window as a hostile file could write it. The input is lines:
//   TIME ZONE\nENTRY\nENTRY...
// Each entry is parsed on its own (the config loader's call) and all together as one window;
// when the window parses it is asked whether it is open and when it next changes, from a fixed
// instant near a DST switch. A change must lie after the instant and flip IsOpen().
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.h"
#include "core/window.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nightshift::TimePoint;
  using nightshift::Window;
  std::string_view rest = nightshift::fuzz::AsText(data, size);
  const std::string_view timezone = nightshift::fuzz::NextLine(rest);
  std::vector<std::string> entries;
  while (!rest.empty() && entries.size() < 16) {
    entries.emplace_back(nightshift::fuzz::NextLine(rest));
    (void)Window::ParseRange(entries.back());
  }

  nightshift::Result<Window> window = Window::Parse("fuzz", timezone, entries, nightshift::OnClose::kDrain);
  if (!window.ok()) return 0;
  const TimePoint at = *nightshift::ParseTimestamp("2026-10-25T00:30:00Z", "UTC");
  const bool open = window->IsOpen(at);
  if (std::optional<TimePoint> change = window->NextChange(at)) {
    if (*change <= at || window->IsOpen(*change) == open) std::abort();
  }
  if (std::optional<TimePoint> opens = window->NextOpen(at);
      opens && (*opens < at || !window->IsOpen(*opens))) {
    std::abort();
  }
  return 0;
}

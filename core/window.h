// Batch windows (contract section 2): named spans of the week when tasks may start.
// All window arithmetic lives in window.cc.
#pragma once

#include <bitset>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/time.h"

namespace nightshift {

enum class OnClose { kDrain, kKill };

// One "mon-fri 22:00-06:00" entry. Days name the day the range opens on; a range whose end is
// not after its start crosses midnight into the next day. "00:00-24:00" is a whole day.
struct WindowRange {
  std::bitset<7> days;  // 0 = Sunday; all set when the entry names no days ("22:00-06:00")
  int start_second = 0;  // seconds since local midnight, 0..86399
  int end_second = 0;    // 1..86400
};

class Window {
 public:
  // Parses the `open` entries of a window: "[DAYS ]HH:MM[:SS]-HH:MM[:SS]" where DAYS is a
  // comma list of day names or ranges (mon-fri, sat,sun; "daily" or none = every day).
  // Errors name the entry: `window nightly: bad range "mon-fri 25:00-06:00": hour 25 ...`.
  static Result<Window> Parse(std::string name, std::string_view timezone,
                              const std::vector<std::string>& open, OnClose on_close);
  // Parses one entry (exposed for the config loader's error positions and for tests).
  static Result<WindowRange> ParseRange(std::string_view entry);

  // Whether the window is open at `t`, judged on the local wall clock of its time zone.
  bool IsOpen(TimePoint t) const;
  // The first instant after `t` at which IsOpen changes; nullopt if it never does
  // (always open, or no ranges).
  std::optional<TimePoint> NextChange(TimePoint t) const;
  // `t` itself when open, else the next opening (nullopt if it never opens).
  std::optional<TimePoint> NextOpen(TimePoint t) const;

  const std::string& name() const { return name_; }
  const std::string& timezone() const { return timezone_; }
  OnClose on_close() const { return on_close_; }
  const std::vector<WindowRange>& ranges() const { return ranges_; }

 private:
  Window() = default;
  std::string name_;
  std::string timezone_;
  OnClose on_close_ = OnClose::kDrain;
  std::vector<WindowRange> ranges_;
};

}  // namespace nightshift

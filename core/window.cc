#include "core/window.h"

#include <date/tz.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>

#include "core/strings.h"

namespace nightshift {
namespace {

using std::chrono::seconds;

constexpr int kSecondsPerDay = 86400;

constexpr std::array<std::string_view, 7> kShortDays = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
constexpr std::array<std::string_view, 7> kLongDays = {"sunday",   "monday", "tuesday", "wednesday",
                                                       "thursday", "friday", "saturday"};

// 0 = Sunday, or -1.
int DayIndex(std::string_view name) {
  const std::string lower = Lower(Trim(name));
  for (int i = 0; i < 7; ++i) {
    if (lower == kShortDays[i] || lower == kLongDays[i]) return i;
  }
  return -1;
}

std::string UnknownDay(std::string_view name) {
  return "unknown day \"" + std::string(name) +
         "\" (use mon, tue, wed, thu, fri, sat, sun, a range like mon-fri, or daily)";
}

// Parses the DAYS part ("mon-fri", "sat,sun", "fri-mon", "daily"). Returns an error detail or "".
std::string ParseDays(std::string_view text, std::bitset<7>* days) {
  days->reset();
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string_view item =
        Trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (item.empty()) return "empty day in \"" + std::string(text) + "\"";
    if (Lower(item) == "daily") {
      days->set();
    } else if (const size_t dash = item.find('-'); dash != std::string_view::npos) {
      const std::string_view a = Trim(item.substr(0, dash));
      const std::string_view b = Trim(item.substr(dash + 1));
      const int from = DayIndex(a);
      const int to = DayIndex(b);
      if (from < 0) return UnknownDay(a);
      if (to < 0) return UnknownDay(b);
      // Ranges wrap around the week: fri-mon is fri, sat, sun, mon.
      for (int d = from;; d = (d + 1) % 7) {
        days->set(d);
        if (d == to) break;
      }
    } else {
      const int d = DayIndex(item);
      if (d < 0) return UnknownDay(item);
      days->set(d);
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return "";
}

// "HH:MM" or "HH:MM:SS" (hour may be one digit) to seconds since midnight; 24:00 gives 86400
// and is for the caller to reject as a start. Returns an error detail or "".
std::string ParseClock(std::string_view text, int* out) {
  const std::string shape_error = "\"" + std::string(text) + "\" is not a time; expected HH:MM or HH:MM:SS";
  int parts[3] = {0, 0, 0};
  int count = 0;
  size_t i = 0;
  while (true) {
    const size_t begin = i;
    int value = 0;
    // Three digits at most: that is already too wide, and reading on could overflow `value`.
    while (i < text.size() && i - begin < 3 && std::isdigit(static_cast<unsigned char>(text[i]))) {
      value = value * 10 + (text[i] - '0');
      ++i;
    }
    const size_t width = i - begin;
    // Hours may be written "6:00"; minutes and seconds always take two digits.
    if (width == 0 || width > 2 || (count > 0 && width != 2) || count == 3) return shape_error;
    parts[count++] = value;
    if (i == text.size()) break;
    if (text[i] != ':') return shape_error;
    ++i;
  }
  if (count < 2) return shape_error;
  const int h = parts[0], m = parts[1], s = parts[2];
  if (h == 24 && m == 0 && s == 0) {
    *out = kSecondsPerDay;
    return "";
  }
  if (h > 23) return "hour " + std::to_string(h) + " is out of range 0-23 (24:00 may end a range)";
  if (m > 59) return "minute " + std::to_string(m) + " is out of range 0-59";
  if (s > 59) return "second " + std::to_string(s) + " is out of range 0-59";
  *out = h * 3600 + m * 60 + s;
  return "";
}

const date::time_zone* FindZone(std::string_view name) {
  try {
    return date::locate_zone(name.empty() ? std::string_view("UTC") : name);
  } catch (const std::runtime_error&) {
    return nullptr;
  }
}

// Every instant at which the wall clock reads `local`: none in a spring-forward gap (then the
// end of the gap, where the clock resumes, stands in), two in an autumn repeat.
void AddInstants(const date::time_zone* zone, date::local_seconds local, std::vector<TimePoint>* out) {
  const date::local_info info = zone->get_info(local);
  switch (info.result) {
    case date::local_info::unique:
      out->push_back(TimePoint(local.time_since_epoch() - info.first.offset));
      break;
    case date::local_info::nonexistent:
      out->push_back(TimePoint(info.first.end));
      break;
    case date::local_info::ambiguous:
      out->push_back(TimePoint(local.time_since_epoch() - info.first.offset));
      out->push_back(TimePoint(local.time_since_epoch() - info.second.offset));
      break;
  }
}

date::local_seconds ToLocal(const date::time_zone* zone, TimePoint t) {
  const date::sys_seconds s = std::chrono::floor<seconds>(t);
  return date::local_seconds(s.time_since_epoch() + zone->get_info(s).offset);
}

}  // namespace

Result<WindowRange> Window::ParseRange(std::string_view entry) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("bad range \"" + std::string(entry) + "\": " + why);
  };
  const std::string_view text = Trim(entry);
  if (text.empty()) return bad("empty; expected [DAYS ]HH:MM-HH:MM, e.g. \"mon-fri 22:00-06:00\"");

  WindowRange range;
  // The times are the last word; everything before it names the days ("sat, sun" may hold blanks).
  // Times are checked before days: in "mon 22:00 - 06:00" the stray blank is the real mistake.
  std::string_view times = text;
  std::string_view days;
  const size_t blank = text.find_last_of(" \t");
  if (blank != std::string_view::npos) {
    times = text.substr(blank + 1);
    days = Trim(text.substr(0, blank));
  }

  const size_t dash = times.find('-');
  if (dash == std::string_view::npos || times.find('-', dash + 1) != std::string_view::npos) {
    return bad("expected HH:MM-HH:MM after the days, e.g. \"mon-fri 22:00-06:00\"");
  }
  int start = 0, end = 0;
  if (std::string e = ParseClock(times.substr(0, dash), &start); !e.empty()) return bad(e);
  if (std::string e = ParseClock(times.substr(dash + 1), &end); !e.empty()) return bad(e);
  if (start == kSecondsPerDay) return bad("24:00 can only end a range; start the next day at 00:00 instead");
  // "22:00-00:00" ends at midnight, the same as "22:00-24:00"; keeping end in 1..86400 means a
  // range crosses midnight exactly when end <= start.
  if (end == 0) end = kSecondsPerDay;
  if (days.empty()) {
    range.days.set();
  } else if (std::string e = ParseDays(days, &range.days); !e.empty()) {
    return bad(e);
  }
  range.start_second = start;
  range.end_second = end;
  return range;
}

Result<Window> Window::Parse(std::string name, std::string_view timezone,
                             const std::vector<std::string>& open, OnClose on_close) {
  Window w;
  w.timezone_ = timezone.empty() ? "UTC" : std::string(timezone);
  if (FindZone(w.timezone_) == nullptr) {
    return Status::InvalidArgument("window " + name + ": unknown time zone \"" + std::string(timezone) +
                                   "\" (expected an IANA name like Europe/Berlin or UTC)");
  }
  for (const std::string& entry : open) {
    Result<WindowRange> r = ParseRange(entry);
    if (!r.ok()) return Status::InvalidArgument("window " + name + ": " + r.status().message());
    w.ranges_.push_back(*r);
  }
  w.name_ = std::move(name);
  w.on_close_ = on_close;
  return w;
}

bool Window::IsOpen(TimePoint t) const {
  const date::time_zone* zone = FindZone(timezone_);
  if (zone == nullptr || ranges_.empty()) return false;
  const date::local_seconds local = ToLocal(zone, t);
  const date::local_days day = std::chrono::floor<date::days>(local);
  const int second_of_day = static_cast<int>((local - day).count());
  const int dow = static_cast<int>(date::weekday(day).c_encoding());
  const int yesterday = (dow + 6) % 7;
  for (const WindowRange& r : ranges_) {
    const bool crosses_midnight = r.end_second <= r.start_second;
    if (r.days[dow] && second_of_day >= r.start_second &&
        (crosses_midnight || second_of_day < r.end_second)) {
      return true;
    }
    // The tail of a range that opened yesterday evening.
    if (crosses_midnight && r.days[yesterday] && second_of_day < r.end_second) return true;
  }
  return false;
}

std::optional<TimePoint> Window::NextChange(TimePoint t) const {
  const date::time_zone* zone = FindZone(timezone_);
  if (zone == nullptr || ranges_.empty()) return std::nullopt;

  // IsOpen() only changes where the wall clock crosses a range boundary or where the wall clock
  // itself jumps (a DST transition). Collect every such instant for the next two weeks (every
  // weekly pattern repeats within that), then take the first one where the state really flips:
  // adjacent ranges (mon 00:00-24:00, tue 00:00-24:00) yield a boundary but no change.
  const date::local_days today = std::chrono::floor<date::days>(ToLocal(zone, t));
  std::vector<TimePoint> candidates;
  for (date::local_days day = today - date::days(1); day <= today + date::days(15); day += date::days(1)) {
    const int dow = static_cast<int>(date::weekday(day).c_encoding());
    for (const WindowRange& r : ranges_) {
      if (!r.days[dow]) continue;
      const int end = r.end_second <= r.start_second ? r.end_second + kSecondsPerDay : r.end_second;
      AddInstants(zone, day + seconds(r.start_second), &candidates);
      AddInstants(zone, day + seconds(end), &candidates);
    }
  }
  const date::sys_seconds horizon_end = std::chrono::floor<seconds>(t) + date::days(17);
  for (date::sys_info info = zone->get_info(std::chrono::floor<seconds>(t)); info.end <= horizon_end;
       info = zone->get_info(info.end)) {
    candidates.push_back(TimePoint(info.end));
  }
  std::sort(candidates.begin(), candidates.end());

  const bool open_now = IsOpen(t);
  for (TimePoint c : candidates) {
    if (c > t && IsOpen(c) != open_now) return c;
  }
  return std::nullopt;
}

std::optional<TimePoint> Window::NextOpen(TimePoint t) const {
  if (IsOpen(t)) return t;
  // While closed, the next change is an opening.
  return NextChange(t);
}

}  // namespace nightshift

#include "core/time.h"

#include <date/tz.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "core/strings.h"

namespace nightshift {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// nullptr for an unknown zone. date throws for unknown names; callers here only need a yes/no.
const date::time_zone* FindZone(std::string_view name) {
  if (name.empty()) return nullptr;
  try {
    return date::locate_zone(name);
  } catch (const std::runtime_error&) {
    return nullptr;
  }
}

// "YYYY-MM-DDTHH:MM:SS[.mmm]" of a wall-clock instant given as milliseconds since 1970-01-01
// (UTC or local, the caller decides). floor keeps instants before 1970 on the right day.
std::string FormatWallClock(milliseconds since_epoch) {
  const date::sys_days day = std::chrono::floor<date::days>(date::sys_time<milliseconds>(since_epoch));
  const date::year_month_day ymd(day);
  const milliseconds in_day = since_epoch - day.time_since_epoch();
  const auto h = std::chrono::duration_cast<std::chrono::hours>(in_day);
  const auto m = std::chrono::duration_cast<std::chrono::minutes>(in_day - h);
  const auto s = std::chrono::duration_cast<seconds>(in_day - h - m);
  const auto ms = in_day - h - m - s;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(h.count()), static_cast<int>(m.count()), static_cast<int>(s.count()));
  std::string out = buf;
  if (ms.count() != 0) {
    std::snprintf(buf, sizeof(buf), ".%03d", static_cast<int>(ms.count()));
    out += buf;
  }
  return out;
}

std::string FormatOffset(seconds offset) {
  char sign = '+';
  long long total = offset.count();
  if (total < 0) {
    sign = '-';
    total = -total;
  }
  // RFC 3339 offsets have minute precision; the only zones with second offsets are historic LMTs.
  const long long minutes = total / 60;
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%c%02lld:%02lld", sign, minutes / 60, minutes % 60);
  return buf;
}

// A tiny cursor over the timestamp text, so each syntax error can say what was expected where.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}
  bool done() const { return pos_ >= text_.size(); }
  char peek() const { return done() ? '\0' : text_[pos_]; }
  size_t pos() const { return pos_; }
  void skip() { ++pos_; }
  // Reads exactly `width` digits.
  bool Digits(int width, int* out) {
    int value = 0;
    for (int i = 0; i < width; ++i) {
      if (done() || !std::isdigit(static_cast<unsigned char>(text_[pos_]))) return false;
      value = value * 10 + (text_[pos_] - '0');
      ++pos_;
    }
    *out = value;
    return true;
  }
  bool Expect(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

std::string FormatRfc3339(TimePoint t) { return FormatWallClock(t.time_since_epoch()) + "Z"; }

std::string FormatRfc3339In(TimePoint t, std::string_view timezone) {
  const date::time_zone* zone = FindZone(timezone);
  seconds offset{0};
  if (zone != nullptr) offset = zone->get_info(std::chrono::floor<seconds>(t)).offset;
  return FormatWallClock(t.time_since_epoch() + offset) + FormatOffset(offset);
}

Result<TimePoint> ParseTimestamp(std::string_view text, std::string_view timezone) {
  // Surrounding blanks are YAML/CLI noise, not meaning.
  text = Trim(text);
  auto invalid = [&](const std::string& why) {
    return Status::InvalidArgument("invalid timestamp \"" + std::string(text) + "\": " + why);
  };
  const std::string kForms =
      "expected YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] or RFC 3339 like 2026-01-01T02:00:00+01:00";
  if (text.empty()) return invalid("empty; " + kForms);

  Scanner in(text);
  int year = 0, month = 0, day = 0;
  if (!in.Digits(4, &year) || !in.Expect('-') || !in.Digits(2, &month) || !in.Expect('-') ||
      !in.Digits(2, &day)) {
    return invalid(kForms);
  }
  if (month < 1 || month > 12) return invalid("month " + std::to_string(month) + " is out of range 1-12");
  const date::year_month_day ymd{date::year{year}, date::month{static_cast<unsigned>(month)},
                                 date::day{static_cast<unsigned>(day)}};
  if (day < 1 || !ymd.ok()) {
    char ym[16];
    std::snprintf(ym, sizeof(ym), "%04d-%02d", year, month);
    return invalid(std::string(ym) + " has no day " + std::to_string(day));
  }

  int hour = 0, minute = 0, second = 0;
  milliseconds fraction{0};
  bool has_time = false;
  if (!in.done()) {
    const char sep = in.peek();
    if (sep != 'T' && sep != 't' && sep != ' ') {
      return invalid("unexpected \"" + std::string(text.substr(in.pos())) + "\" after the date; " + kForms);
    }
    in.skip();
    has_time = true;
    if (!in.Digits(2, &hour) || !in.Expect(':') || !in.Digits(2, &minute)) {
      return invalid("expected HH:MM after the date; " + kForms);
    }
    if (in.Expect(':')) {
      if (!in.Digits(2, &second)) return invalid("expected two digits of seconds after HH:MM:");
      if (in.Expect('.') || in.Expect(',')) {
        // Any number of fraction digits; Nightshift keeps milliseconds.
        int digits = 0;
        long long ms = 0;
        while (std::isdigit(static_cast<unsigned char>(in.peek()))) {
          if (digits < 3) ms = ms * 10 + (in.peek() - '0');
          ++digits;
          in.skip();
        }
        if (digits == 0) return invalid("expected digits after the decimal point");
        for (int i = digits; i < 3; ++i) ms *= 10;
        fraction = milliseconds(ms);
      }
    }
    if (hour > 23) return invalid("hour " + std::to_string(hour) + " is out of range 0-23");
    if (minute > 59) return invalid("minute " + std::to_string(minute) + " is out of range 0-59");
    if (second > 59) return invalid("second " + std::to_string(second) + " is out of range 0-59");
  }

  const auto wall = date::sys_days(ymd).time_since_epoch() + std::chrono::hours(hour) +
                    std::chrono::minutes(minute) + seconds(second) + fraction;

  std::optional<seconds> offset;
  if (!in.done()) {
    if (!has_time) return invalid("an offset needs a time of day; " + kForms);
    const char c = in.peek();
    if (c == 'Z' || c == 'z') {
      in.skip();
      offset = seconds(0);
    } else if (c == '+' || c == '-') {
      in.skip();
      int oh = 0, om = 0;
      if (!in.Digits(2, &oh)) return invalid("expected an offset like +01:00");
      // "+0100" is common outside RFC 3339 (ISO 8601 basic); accept it rather than nag.
      in.Expect(':');
      if (!in.done() && !in.Digits(2, &om)) return invalid("expected an offset like +01:00");
      if (oh > 23 || om > 59) return invalid("offset out of range (at most +23:59)");
      offset = seconds((oh * 3600 + om * 60) * (c == '-' ? -1 : 1));
    }
    if (!offset || !in.done()) {
      return invalid("unexpected \"" + std::string(text.substr(in.pos())) + "\"; " + kForms);
    }
  }

  if (offset) return TimePoint(wall - *offset);

  const date::time_zone* zone = FindZone(timezone.empty() ? std::string_view("UTC") : timezone);
  if (zone == nullptr) {
    return invalid("unknown time zone \"" + std::string(timezone) +
                   "\" (expected an IANA name like Europe/Berlin)");
  }
  const date::local_seconds local_s{std::chrono::floor<seconds>(wall)};
  const milliseconds sub_second = wall - std::chrono::floor<seconds>(wall);
  const date::local_info info = zone->get_info(local_s);
  switch (info.result) {
    case date::local_info::unique:
    case date::local_info::ambiguous:
      // Ambiguous (autumn): the earliest instant, as users expect "02:30" to mean the first one.
      return TimePoint(local_s.time_since_epoch() - info.first.offset + sub_second);
    case date::local_info::nonexistent:
      // In a spring-forward gap: the first instant after the gap, where the clock resumes.
      return TimePoint(info.first.end);
  }
  return invalid("unreachable");
}

bool IsKnownTimeZone(std::string_view name) { return FindZone(name) != nullptr; }

TimePoint SystemClock::Now() const {
  return std::chrono::floor<milliseconds>(std::chrono::system_clock::now());
}

}  // namespace nightshift

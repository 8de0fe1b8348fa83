#include "core/cron.h"

#include <date/tz.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>
#include <vector>

#include "core/strings.h"

namespace nightshift {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// How far Next()/Previous() look before giving up, e.g. for "0 0 30 2 *". Five years covers
// every leap day ("0 0 29 2 *") with room to spare.
constexpr date::days kHorizon{5 * 366 + 2};

constexpr std::array<std::string_view, 12> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 12> kMonthFullNames = {
    "January", "February", "March",     "April",   "May",      "June",
    "July",    "August",   "September", "October", "November", "December"};
constexpr std::array<std::string_view, 7> kDayNames = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

struct FieldSpec {
  std::string_view name;  // as the error messages call the field
  int min;
  int max;
  // Names accepted instead of numbers; names[i] stands for first_name_value + i.
  const std::string_view* names;
  size_t name_count;
  int first_name_value;
  std::string_view name_hint;  // e.g. "JAN-DEC", shown in errors
};

const FieldSpec kFields[5] = {
    {"minute", 0, 59, nullptr, 0, 0, ""},
    {"hour", 0, 23, nullptr, 0, 0, ""},
    {"day-of-month", 1, 31, nullptr, 0, 0, ""},
    {"month", 1, 12, kMonthNames.data(), kMonthNames.size(), 1, "JAN-DEC"},
    // 7 is accepted as Sunday (folded to 0 by the caller), as every cron does.
    {"day-of-week", 0, 7, kDayNames.data(), kDayNames.size(), 0, "SUN-SAT"},
};

std::vector<std::string_view> SplitBlanks(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

bool AllDigits(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::string RangeText(const FieldSpec& spec) {
  std::string text = std::to_string(spec.min) + "-" + std::to_string(spec.max);
  if (!spec.name_hint.empty()) text += " (or " + std::string(spec.name_hint) + ")";
  return text;
}

// One value of a field: a number in range or (month/day-of-week) a name. Returns an error
// detail, or empty on success.
std::string ParseValue(std::string_view token, const FieldSpec& spec, int* out) {
  if (AllDigits(token)) {
    // Long digit strings are out of range anyway; don't let them overflow first.
    const int value = token.size() > 4 ? 99999 : std::stoi(std::string(token));
    if (value < spec.min || value > spec.max) {
      return std::string(spec.name) + " " + std::string(token) + " is out of range " + RangeText(spec);
    }
    *out = value;
    return "";
  }
  const std::string upper = Upper(token);
  for (size_t i = 0; i < spec.name_count; ++i) {
    if (spec.names[i] == upper) {
      *out = spec.first_name_value + static_cast<int>(i);
      return "";
    }
  }
  if (spec.name_count > 0) {
    return std::string(spec.name) + " \"" + std::string(token) + "\" is not a number or a name (" +
           std::string(spec.name_hint) + ")";
  }
  return std::string(spec.name) + " \"" + std::string(token) + "\" is not a number " + RangeText(spec);
}

// Parses one field ("*", "1,5", "1-30/5", "MON-FRI", ...) into a bit mask over spec.min..max.
// Returns an error detail, or empty on success.
std::string ParseField(std::string_view field, const FieldSpec& spec, uint64_t* mask, bool* unrestricted) {
  *mask = 0;
  *unrestricted = false;
  size_t start = 0;
  while (true) {
    const size_t comma = field.find(',', start);
    const std::string_view item =
        field.substr(start, comma == std::string_view::npos ? field.npos : comma - start);
    if (item.empty()) {
      return std::string(spec.name) + " field \"" + std::string(field) + "\" has an empty list item";
    }
    std::string_view range_part = item;
    int step = 1;
    const size_t slash = item.find('/');
    if (slash != std::string_view::npos) {
      range_part = item.substr(0, slash);
      const std::string_view step_text = item.substr(slash + 1);
      const int max_step = spec.max - spec.min + (spec.max == 7 ? 0 : 1);
      if (!AllDigits(step_text) || step_text.size() > 4 || std::stoi(std::string(step_text)) < 1 ||
          std::stoi(std::string(step_text)) > max_step) {
        return std::string(spec.name) + " step \"" + std::string(step_text) + "\" in \"" + std::string(item) +
               "\" must be a number from 1 to " + std::to_string(max_step);
      }
      step = std::stoi(std::string(step_text));
      if (range_part.empty()) {
        return std::string(spec.name) + " step \"" + std::string(item) +
               "\" needs a range before the slash, e.g. */" + std::string(step_text);
      }
    }
    int lo = 0, hi = 0;
    if (range_part == "*") {
      lo = spec.min;
      // "*" in day-of-week means 0-6; 7 is only an alias of Sunday.
      hi = spec.max == 7 ? 6 : spec.max;
      if (step == 1 && field == item) *unrestricted = true;
    } else {
      const size_t dash = range_part.find('-');
      if (dash == std::string_view::npos) {
        if (std::string e = ParseValue(range_part, spec, &lo); !e.empty()) return e;
        // "5/15" means 5, 20, 35, 50: from the value to the field's end, as most crons read it.
        hi = slash != std::string_view::npos ? (spec.max == 7 ? 6 : spec.max) : lo;
      } else {
        const std::string_view a = range_part.substr(0, dash);
        const std::string_view b = range_part.substr(dash + 1);
        if (a.empty() || b.empty()) {
          return std::string(spec.name) + " range \"" + std::string(range_part) +
                 "\" needs a start and an end";
        }
        if (std::string e = ParseValue(a, spec, &lo); !e.empty()) return e;
        if (std::string e = ParseValue(b, spec, &hi); !e.empty()) return e;
        if (lo > hi) {
          // Suggest the split the user most likely meant, e.g. 22-2 -> 22-23,0-2.
          const int top = spec.max == 7 ? 6 : spec.max;
          return std::string(spec.name) + " range " + std::string(range_part) +
                 " goes backwards; to wrap around write two ranges, e.g. " + std::string(a) + "-" +
                 std::to_string(top) + "," + std::to_string(spec.min) + "-" + std::string(b);
        }
      }
    }
    for (int v = lo; v <= hi; v += step) *mask |= uint64_t{1} << v;
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return "";
}

// Local wall clock -> instant. A wall time in a spring-forward gap maps to the end of the gap
// (where the clock resumes); a repeated autumn wall time maps to its first occurrence. This
// mapping never goes backwards as the wall time grows, which Next()/Previous() rely on to skip
// whole days and hours.
TimePoint ToSys(const date::time_zone* zone, date::local_seconds local) {
  const date::local_info info = zone->get_info(local);
  if (info.result == date::local_info::nonexistent) return TimePoint(info.first.end);
  return TimePoint(local.time_since_epoch() - info.first.offset);
}

date::local_days LocalDay(const date::time_zone* zone, TimePoint t) {
  const seconds offset = zone->get_info(std::chrono::floor<seconds>(t)).offset;
  return std::chrono::floor<date::days>(
      date::local_seconds(std::chrono::floor<seconds>(t).time_since_epoch() + offset));
}

const date::time_zone* FindZone(std::string_view name) {
  try {
    return date::locate_zone(name.empty() ? std::string_view("UTC") : name);
  } catch (const std::runtime_error&) {
    return nullptr;
  }
}

// The wall-clock reading at `t` when the zone's offset is `offset`, as CronSchedule's
// *WallMinute functions take it.
seconds WallClock(date::sys_seconds t, seconds offset) { return t.time_since_epoch() + offset; }

// Walks wall-clock days from `day` toward `bound` (forwards or backwards) and returns the first
// whose month is in `months` and for which matches(day_of_month, month, weekday) holds, or a
// day beyond `bound` when none does. A month not in `months` is crossed in one jump.
template <bool kForward, typename Matches>
date::local_days WalkToMatchingDay(date::local_days day, date::local_days bound,
                                   const std::bitset<13>& months, Matches matches) {
  while (kForward ? day <= bound : day >= bound) {
    const date::year_month_day ymd(day);
    const unsigned month = static_cast<unsigned>(ymd.month());
    if (!months[month]) {
      day = kForward ? date::local_days((ymd.year() / ymd.month() + date::months(1)) / 1)
                     : date::local_days(ymd.year() / ymd.month() / 1) - date::days(1);
      continue;
    }
    if (matches(static_cast<int>(static_cast<unsigned>(ymd.day())), static_cast<int>(month),
                static_cast<int>(date::weekday(day).c_encoding()))) {
      return day;
    }
    day += date::days(kForward ? 1 : -1);
  }
  return day;
}

// Floor division that rounds toward negative infinity, for instants before the anchor.
int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0); }

}  // namespace

Result<CronSchedule> CronSchedule::Parse(std::string_view expression, std::string_view timezone) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("bad cron expression \"" + std::string(expression) + "\": " + why);
  };
  CronSchedule s;
  s.expression_ = std::string(expression);
  s.timezone_ = timezone.empty() ? "UTC" : std::string(timezone);
  if (FindZone(s.timezone_) == nullptr) {
    return Status::InvalidArgument("unknown time zone \"" + std::string(timezone) +
                                   "\" (expected an IANA name like Europe/Berlin or UTC)");
  }

  const std::vector<std::string_view> words = SplitBlanks(expression);
  if (words.empty()) {
    return bad("empty; needs 5 fields MIN HOUR DOM MONTH DOW (e.g. \"0 2 * * *\") or a preset like @daily");
  }

  std::vector<std::string> fields;
  if (words[0].front() == '@') {
    const std::string preset = Lower(words[0]);
    if (preset == "@every") {
      if (words.size() != 2) {
        return bad("@every needs exactly one duration, e.g. \"@every 15m\"");
      }
      Result<Duration> d = ParseDuration(words[1]);
      if (!d.ok()) return bad(d.status().message());
      if (*d < std::chrono::seconds(1)) {
        return bad("@every interval " + FormatDuration(*d) + " is too short; the minimum is 1s");
      }
      s.interval_ = *d;
      return s;
    }
    if (words.size() != 1) return bad(std::string(words[0]) + " takes no fields after it");
    if (preset == "@once") {
      s.once_ = true;
      return s;
    }
    static const std::pair<std::string_view, std::string_view> kPresets[] = {
        {"@yearly", "0 0 1 1 *"},   {"@annually", "0 0 1 1 *"}, {"@quarterly", "0 0 1 */3 *"},
        {"@monthly", "0 0 1 * *"},  {"@weekly", "0 0 * * 0"},   {"@daily", "0 0 * * *"},
        {"@midnight", "0 0 * * *"}, {"@hourly", "0 * * * *"},
    };
    for (const auto& [name, expansion] : kPresets) {
      if (preset == name) {
        for (std::string_view f : SplitBlanks(expansion)) fields.emplace_back(f);
        break;
      }
    }
    if (fields.empty()) {
      return bad("unknown preset " + std::string(words[0]) +
                 " (known: @yearly, @annually, @quarterly, @monthly, @weekly, @daily, @midnight, @hourly, "
                 "@once, \"@every <duration>\")");
    }
  } else {
    if (words.size() != 5) {
      std::string why = "needs 5 fields MIN HOUR DOM MONTH DOW, got " + std::to_string(words.size());
      if (words.size() == 6 || words.size() == 7) why += " (seconds and year fields are not supported)";
      return bad(why);
    }
    for (std::string_view w : words) fields.emplace_back(w);
  }

  uint64_t masks[5] = {};
  bool unrestricted[5] = {};
  for (int i = 0; i < 5; ++i) {
    if (std::string e = ParseField(fields[i], kFields[i], &masks[i], &unrestricted[i]); !e.empty())
      return bad(e);
  }
  s.minutes_ = std::bitset<60>(masks[0]);
  s.hours_ = std::bitset<24>(masks[1]);
  s.days_of_month_ = std::bitset<32>(masks[2]);
  s.months_ = std::bitset<13>(masks[3]);
  // Fold day 7 into 0: both are Sunday.
  s.days_of_week_ = std::bitset<7>(masks[4] & 0x7f);
  if (masks[4] & (uint64_t{1} << 7)) s.days_of_week_.set(0);
  s.dom_restricted_ = !unrestricted[2];
  s.dow_restricted_ = !unrestricted[4];
  // "*", "*/2", "1-23/2": the schedule is about elapsed hours, not about one hour of the day.
  s.hours_follow_the_instant_ = fields[1].find_first_of("*/") != std::string::npos;
  if (std::string e = s.NeverFiresReason(); !e.empty()) {
    return Status::InvalidArgument("cron \"" + std::string(expression) + "\" never fires: " + e);
  }
  return s;
}

std::string CronSchedule::NeverFiresReason() const {
  // Any weekday comes round in every month, so only a day-of-month that no allowed month has
  // (with day-of-week left as "*") can never match. February counts 29 days: leap days happen.
  if (dow_restricted_) return "";
  static constexpr int kDaysIn[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int first_day = 0;
  for (int d = 31; d >= 1; --d) {
    if (days_of_month_[d]) first_day = d;
  }
  std::string months;
  for (int m = 1; m <= 12; ++m) {
    if (!months_[m]) continue;
    if (first_day <= kDaysIn[m]) return "";
    months += (months.empty() ? "" : ", ") + std::string(kMonthFullNames[m - 1]);
  }
  return (months.find(',') == std::string::npos ? months + " has no day " : months + " have no day ") +
         std::to_string(first_day);
}

bool CronSchedule::MatchesDay(int day_of_month, int month, int day_of_week) const {
  if (!months_[month]) return false;
  const bool dom = days_of_month_[day_of_month];
  const bool dow = days_of_week_[day_of_week];
  // Cron's historic rule: with both fields restricted, either one matching is enough.
  if (dom_restricted_ && dow_restricted_) return dom || dow;
  return dom && dow;
}

std::optional<TimePoint> CronSchedule::Next(TimePoint after) const {
  if (once_) {
    if (anchored_ && after < anchor_) return anchor_;
    return std::nullopt;
  }
  if (interval_) {
    const int64_t step = interval_->count();
    if (after < anchor_) return anchor_;
    const int64_t k = FloorDiv((after - anchor_).count(), step) + 1;
    return anchor_ + milliseconds(k * step);
  }
  const date::time_zone* zone = FindZone(timezone_);
  if (zone == nullptr) return std::nullopt;
  if (hours_follow_the_instant_) {
    // Within one span of constant UTC offset the wall clock is the instant plus that offset, so
    // the span's first matching wall-clock minute is the answer; without one, try the next span.
    const date::sys_seconds horizon = std::chrono::floor<seconds>(after) + kHorizon;
    date::sys_seconds lower = std::chrono::floor<seconds>(after);  // fire times are whole seconds
    while (lower < horizon) {
      const date::sys_info span = zone->get_info(lower + seconds(1));
      const date::sys_seconds span_end = std::min(span.end, horizon);
      const std::optional<seconds> wall =
          NextWallMinute(WallClock(lower, span.offset), WallClock(span_end - seconds(1), span.offset));
      if (wall) return TimePoint(*wall - span.offset);
      lower = span_end - seconds(1);
    }
    return std::nullopt;
  }

  // Walk local calendar days. Because ToSys() is monotonic, a day (or hour) whose end maps to
  // an instant <= after holds no candidate and is skipped with a single conversion; a month
  // that isn't allowed is skipped in one jump. An impossible expression costs ~1800 cheap steps.
  const auto day_ok = [this](int dom, int mon, int dow) { return MatchesDay(dom, mon, dow); };
  date::local_days day = LocalDay(zone, after) - date::days(1);
  const date::local_days limit = day + kHorizon;
  for (;; day += date::days(1)) {
    day = WalkToMatchingDay<true>(day, limit, months_, day_ok);
    if (day > limit) break;
    if (ToSys(zone, day + date::days(1)) <= after) continue;
    for (int h = 0; h < 24; ++h) {
      if (!hours_[h]) continue;
      const date::local_seconds hour_start = day + std::chrono::hours(h);
      if (ToSys(zone, hour_start + std::chrono::hours(1)) <= after) continue;
      for (int m = 0; m < 60; ++m) {
        if (!minutes_[m]) continue;
        const TimePoint t = ToSys(zone, hour_start + std::chrono::minutes(m));
        if (t > after) return t;
      }
    }
  }
  return std::nullopt;
}

std::optional<TimePoint> CronSchedule::Previous(TimePoint at) const {
  if (once_) {
    if (anchored_ && anchor_ <= at) return anchor_;
    return std::nullopt;
  }
  if (interval_) {
    if (at < anchor_) return std::nullopt;
    const int64_t step = interval_->count();
    return anchor_ + milliseconds(FloorDiv((at - anchor_).count(), step) * step);
  }
  const date::time_zone* zone = FindZone(timezone_);
  if (zone == nullptr) return std::nullopt;
  if (hours_follow_the_instant_) {
    // The mirror image of the span walk in Next().
    const date::sys_seconds horizon = std::chrono::floor<seconds>(at) - kHorizon;
    date::sys_seconds upper = std::chrono::floor<seconds>(at);
    while (upper >= horizon) {
      const date::sys_info span = zone->get_info(upper);
      const date::sys_seconds span_begin = std::max(span.begin, horizon);
      const std::optional<seconds> wall =
          PreviousWallMinute(WallClock(upper, span.offset), WallClock(span_begin, span.offset));
      if (wall) return TimePoint(*wall - span.offset);
      upper = span_begin - seconds(1);
    }
    return std::nullopt;
  }

  // The mirror image of Next(): walk days backwards, newest candidate first. Start one day
  // late because in an autumn fall-back a later wall time can map to an earlier instant.
  const auto day_ok = [this](int dom, int mon, int dow) { return MatchesDay(dom, mon, dow); };
  date::local_days day = LocalDay(zone, at) + date::days(1);
  const date::local_days limit = day - kHorizon;
  for (;; day -= date::days(1)) {
    day = WalkToMatchingDay<false>(day, limit, months_, day_ok);
    if (day < limit) break;
    if (ToSys(zone, day) > at) continue;
    for (int h = 23; h >= 0; --h) {
      if (!hours_[h]) continue;
      const date::local_seconds hour_start = day + std::chrono::hours(h);
      if (ToSys(zone, hour_start) > at) continue;
      for (int m = 59; m >= 0; --m) {
        if (!minutes_[m]) continue;
        const TimePoint t = ToSys(zone, hour_start + std::chrono::minutes(m));
        if (t <= at) return t;
      }
    }
  }
  return std::nullopt;
}

std::optional<seconds> CronSchedule::NextWallMinute(seconds after_wall, seconds last_wall) const {
  const date::local_seconds last(last_wall);
  const date::local_seconds first =
      std::chrono::floor<std::chrono::minutes>(date::local_seconds(after_wall)) + std::chrono::minutes(1);
  const auto day_ok = [this](int dom, int mon, int dow) { return MatchesDay(dom, mon, dow); };
  const date::local_days last_day = std::chrono::floor<date::days>(last);
  for (date::local_days day = std::chrono::floor<date::days>(first);; day += date::days(1)) {
    day = WalkToMatchingDay<true>(day, last_day, months_, day_ok);
    if (day > last_day) break;
    for (int h = 0; h < 24; ++h) {
      if (!hours_[h]) continue;
      const date::local_seconds hour_start = day + std::chrono::hours(h);
      if (hour_start + std::chrono::minutes(59) < first) continue;
      for (int m = 0; m < 60; ++m) {
        const date::local_seconds t = hour_start + std::chrono::minutes(m);
        if (!minutes_[m] || t < first) continue;
        if (t > last) return std::nullopt;
        return t.time_since_epoch();
      }
    }
  }
  return std::nullopt;
}

std::optional<seconds> CronSchedule::PreviousWallMinute(seconds at_wall, seconds first_wall) const {
  const date::local_seconds first(first_wall);
  const date::local_seconds last = std::chrono::floor<std::chrono::minutes>(date::local_seconds(at_wall));
  const auto day_ok = [this](int dom, int mon, int dow) { return MatchesDay(dom, mon, dow); };
  const date::local_days first_day = std::chrono::floor<date::days>(first);
  for (date::local_days day = std::chrono::floor<date::days>(last);; day -= date::days(1)) {
    day = WalkToMatchingDay<false>(day, first_day, months_, day_ok);
    if (day < first_day) break;
    for (int h = 23; h >= 0; --h) {
      if (!hours_[h]) continue;
      const date::local_seconds hour_start = day + std::chrono::hours(h);
      if (hour_start > last) continue;
      for (int m = 59; m >= 0; --m) {
        const date::local_seconds t = hour_start + std::chrono::minutes(m);
        if (!minutes_[m] || t > last) continue;
        if (t < first) return std::nullopt;
        return t.time_since_epoch();
      }
    }
  }
  return std::nullopt;
}

}  // namespace nightshift

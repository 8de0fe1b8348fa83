#include "scheduler/run_schedule.h"

#include "core/cron.h"

namespace nightshift {
namespace {

constexpr Duration kTick(1);

std::optional<CronSchedule> ScheduleOf(const Dag& dag) {
  if (!dag.schedule) return std::nullopt;
  auto schedule = CronSchedule::Parse(*dag.schedule, dag.timezone);
  if (!schedule.ok()) return std::nullopt;  // the loader rejects these; never owed anything
  if (dag.start_date) schedule->set_anchor(*dag.start_date);
  return *schedule;
}

}  // namespace

std::vector<DataInterval> DueIntervals(const Dag& dag, std::optional<TimePoint> last_logical_date,
                                       TimePoint now, size_t max) {
  std::vector<DataInterval> due;
  std::optional<CronSchedule> schedule = ScheduleOf(dag);
  if (!schedule || max == 0) return due;
  if (schedule->is_once()) {
    // One run ever, as in Airflow: at start_date, or at once without one. The newest scheduled
    // run is read back from the store, so a restart never makes a second.
    const TimePoint at = dag.start_date.value_or(now);
    if (last_logical_date || at > now || (dag.end_date && at > *dag.end_date)) return due;
    due.push_back(DataInterval{at, at});
    return due;
  }
  auto owed = [&](const DataInterval& i) {
    if (dag.start_date && i.start < *dag.start_date) return false;
    if (dag.end_date && i.start > *dag.end_date) return false;
    if (last_logical_date && i.start <= *last_logical_date) return false;
    return i.end <= now;
  };

  if (!dag.catchup) {
    // Only the most recent interval that has ended.
    std::optional<TimePoint> end = schedule->Previous(now);
    if (!end) return due;
    std::optional<TimePoint> start = schedule->Previous(*end - kTick);
    if (!start) return due;
    DataInterval interval{*start, *end};
    if (dag.end_date && interval.start > *dag.end_date) {
      // Past end_date: the last interval that starts by end_date, if not yet run.
      std::optional<TimePoint> last_start = schedule->Previous(*dag.end_date);
      if (!last_start) return due;
      std::optional<TimePoint> last_end = schedule->Next(*last_start);
      if (!last_end) return due;
      interval = {*last_start, *last_end};
    }
    if (owed(interval)) due.push_back(interval);
    return due;
  }

  // Catchup: walk forward from the interval after the last run (or from start_date).
  std::optional<TimePoint> start;
  if (last_logical_date) {
    start = schedule->Next(*last_logical_date);
  } else if (dag.start_date) {
    start = schedule->Next(*dag.start_date - kTick);
  } else {
    start = schedule->Previous(schedule->Previous(now).value_or(now) - kTick);
  }
  while (start && due.size() < max) {
    std::optional<TimePoint> end = schedule->Next(*start);
    if (!end || *end > now) break;
    if (dag.end_date && *start > *dag.end_date) break;
    DataInterval interval{*start, *end};
    if (owed(interval)) due.push_back(interval);
    start = end;
  }
  return due;
}

std::optional<TimePoint> NextIntervalEnd(const Dag& dag, TimePoint now) {
  std::optional<CronSchedule> schedule = ScheduleOf(dag);
  if (!schedule) return std::nullopt;
  if (schedule->is_once()) {
    if (dag.start_date && *dag.start_date > now) return dag.start_date;
    return std::nullopt;
  }
  TimePoint after = now;
  if (dag.start_date && *dag.start_date > after) after = *dag.start_date;
  return schedule->Next(after);
}

}  // namespace nightshift

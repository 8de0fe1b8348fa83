// Which scheduled runs a DAG is owed (Airflow's data-interval semantics).
//
// A cron schedule cuts time into intervals [fire_k, fire_k+1). The run for an interval has
// logical_date = the interval's start and is created once the interval has ended: the daily
// "0 2 * * *" run with logical_date 2026-11-27T02:00 starts at 2026-11-28T02:00 and processes
// the day that just ended (NIGHTSHIFT_DS = 2026-11-27). docs/scheduling.md explains it for users.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "core/dag.h"
#include "core/time.h"

namespace nightshift {

struct DataInterval {
  TimePoint start;  // the run's logical_date
  TimePoint end;    // when the run may start
};

// The intervals that have ended by `now` and come after `last_logical_date` (the newest
// scheduled run already created, if any), oldest first, at most `max` of them.
// catchup: every missed interval since start_date. Without catchup: only the most recent
// ended interval (and nothing when it is not newer than the last run).
// Intervals that start before start_date or after end_date are never owed. A DAG without a
// schedule is owed nothing. "@once" is owed one interval, start = end = start_date (or `now`
// without one), and nothing once any scheduled run exists.
std::vector<DataInterval> DueIntervals(const Dag& dag, std::optional<TimePoint> last_logical_date,
                                       TimePoint now, size_t max);

// The next instant after `now` at which DueIntervals may return something new (the next fire
// time), for the scheduler's timer. nullopt when the schedule has no more fire times.
std::optional<TimePoint> NextIntervalEnd(const Dag& dag, TimePoint now);

}  // namespace nightshift

// What the scheduler counts about itself, for GET /metrics. Plain data; web/ renders it.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

namespace nightshift {

// A Prometheus-style histogram over seconds with fixed buckets (1 ms .. 60 s).
struct Histogram {
  static constexpr std::array<double, 12> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,   0.25,   0.5,   1.0,  5.0,   60.0};
  std::array<uint64_t, kBuckets.size()> counts{};  // counts[i]: observations <= kBuckets[i]
  uint64_t count = 0;
  double sum = 0;

  void Observe(double seconds) {
    ++count;
    sum += seconds;
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      if (seconds <= kBuckets[i]) ++counts[i];
    }
  }
};

struct SchedulerMetrics {
  uint64_t tries_started = 0;
  uint64_t tries_finished = 0;  // ended in any way
  uint64_t tries_failed = 0;    // of those, failed (including lost and stopped)
  uint64_t passes = 0;
  // Standbys (docs/adr/0006) by what became of them: started in their holder's slot, or
  // declined and dispatched the usual way.
  uint64_t standbys_queued = 0;
  uint64_t standbys_started = 0;
  uint64_t standbys_declined = 0;
  // Task-instance moves the transition table (core/states.cc) forbids, refused: always 0 unless
  // the scheduler has a bug (the unit tests check it).
  uint64_t illegal_transitions = 0;
  Histogram pass_duration;      // seconds per scheduler pass
  Histogram dispatch_latency;   // seconds from a task instance becoming ready to its process starting
  std::map<std::string, int> pool_used;  // queued + running tries per pool, after the last pass
  // Filled in by the daemon from the Slurm executor: commands run ("sbatch", "squeue", ...)
  // and calls that found no controller.
  std::map<std::string, uint64_t> slurm_commands;
  uint64_t slurm_unreachable = 0;
};

}  // namespace nightshift

// Runs, task instances and tries as the store keeps them. Plain data.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/states.h"
#include "core/time.h"

namespace nightshift {

struct DagRecord {
  std::string dag_id;
  bool is_paused = false;
  std::string fileloc;
  std::optional<TimePoint> last_parsed;
};

struct DagRun {
  int64_t id = 0;  // the store's key
  std::string dag_id;
  std::string run_id;          // dag_run_id, e.g. "scheduled__2026-11-28T02:00:00+00:00"
  std::string run_type;        // "scheduled" | "manual"
  RunState state = RunState::kQueued;
  TimePoint logical_date{};
  std::optional<TimePoint> data_interval_start;
  std::optional<TimePoint> data_interval_end;
  std::optional<TimePoint> queued_at;
  std::optional<TimePoint> start_date;
  std::optional<TimePoint> end_date;
  std::string conf = "{}";      // JSON object text, as triggered
  std::string dag_snapshot;     // JSON of the DAG's tasks when the run started
  bool callback_done = false;   // on_success / on_failure has run
};

struct TaskInstance {
  int64_t id = 0;  // the store's key
  int64_t run_pk = 0;
  std::string task_id;
  int map_index = -1;  // -1: not mapped
  TaskState state = TaskState::kScheduled;
  int try_number = 0;  // tries started so far; the current or last try
  // Tries it may use: retries + 1 (after a clear, plus the tries made before it).
  int max_tries = 1;
  // Tries a closing batch window stopped: they do not use up a retry, so the instance may make
  // max_tries + window_kills tries in all.
  int window_kills = 0;
  std::optional<TimePoint> queued_at;
  std::optional<TimePoint> start_date;
  std::optional<TimePoint> end_date;
  std::optional<TimePoint> next_retry_at;
  std::string pool = "default";
  int priority_weight = 1;
  std::optional<int64_t> pid;
  std::optional<std::string> external_id;  // e.g. a Slurm job id
  std::optional<double> progress;          // 0..1
  std::optional<std::string> output;       // JSON text
  std::optional<std::string> waiting_reason;
  bool cached = false;

  // The tries it may make in all: its budget and one more for each try a window stopped.
  int TriesAllowed() const { return max_tries + window_kills; }
};

struct TaskTry {
  int64_t id = 0;
  int64_t ti_pk = 0;
  int try_number = 1;
  TaskState state = TaskState::kQueued;
  std::optional<TimePoint> start_date;
  std::optional<TimePoint> end_date;
  std::optional<int> exit_code;
  std::optional<int64_t> pid;
  std::optional<std::string> external_id;
  std::string log_path;
  std::optional<std::string> reason;  // why it failed, e.g. "execution_timeout 30m exceeded"
  std::optional<std::string> cache_key;  // for tasks with `cache:`: what the try ran under
};

// The newest successful try of a task (same DAG, task and map index, any run), for the cache.
struct CachedResult {
  std::string cache_key;
  std::optional<std::string> output;
  std::string run_id;
  int try_number = 0;
};

struct ImportError {
  std::string filename;
  int line = 0;
  int column = 0;
  std::string message;
};

}  // namespace nightshift

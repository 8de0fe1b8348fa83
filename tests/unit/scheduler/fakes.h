// Fakes for driving the real Scheduler without processes: a settable clock and an executor
// that records what it is asked to do. Shared by scheduler_test.cc and bench/sched_overhead.cc.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/time.h"
#include "executor/executor.h"

namespace nightshift {
namespace testing_fakes {

inline TimePoint T(const char* text) { return *ParseTimestamp(text, "UTC"); }

class FakeClock : public Clock {
 public:
  TimePoint Now() const override { return now; }
  TimePoint now = T("2026-11-28T12:00:00Z");
};

// Records what it is asked to do; the test decides what happens to each try.
class FakeExecutor : public Executor {
 public:
  size_t FreeSlots() const override { return 1000; }
  Status Submit(const TaskSpec& spec) override {
    if (!submit_status.ok()) return submit_status;
    submitted.push_back(spec);
    return Status::OK();
  }
  std::vector<ExecutorEvent> Drain() override { return std::exchange(events, {}); }
  Status Cancel(const TaskInstanceKey& key) override {
    cancelled.push_back(key);
    return cancel_status;
  }
  std::vector<TaskInstanceKey> Adopt(std::span<const RunningTask> tasks) override {
    std::vector<TaskInstanceKey> keys;
    for (const RunningTask& t : tasks) {
      adopted.push_back(t);
      keys.push_back(t.key);
    }
    return keys;
  }
  // Standbys (TaskSpec::after): taken only when the test says so, so that by default the
  // scheduler behaves as with an executor that has no standbys.
  bool TakesStandby(const TaskSpec& holder, const TaskSpec& /*standby*/) const override {
    standby_asked.push_back(holder.key);
    return takes_standbys;
  }
  void Withdraw(const TaskInstanceKey& key) override { withdrawn.push_back(key); }

  void Start(const TaskSpec& spec, int64_t pid = 100) {
    ExecutorEvent e;
    e.kind = ExecutorEvent::Kind::kStarted;
    e.key = spec.key;
    e.pid = pid;
    events.push_back(e);
  }
  void Finish(const TaskInstanceKey& key, int exit_code, bool handed_off = false) {
    ExecutorEvent e;
    e.kind = ExecutorEvent::Kind::kFinished;
    e.key = key;
    e.exit_code = exit_code;
    e.handed_off = handed_off;
    events.push_back(e);
  }
  // The holder ended (exit_code) and its standby started in its slot at once, as the
  // supervisor does: kFinished with handed_off, then the standby's kStarted.
  void HandOff(const TaskInstanceKey& holder, const TaskSpec& standby, int exit_code = 0, int64_t pid = 200) {
    Finish(holder, exit_code, /*handed_off=*/true);
    Start(standby, pid);
  }
  // A standby that did not start.
  void Decline(const TaskInstanceKey& key, std::string reason = "the try it waited on did not succeed") {
    ExecutorEvent e;
    e.kind = ExecutorEvent::Kind::kDeclined;
    e.key = key;
    e.reason = std::move(reason);
    events.push_back(e);
  }
  void Lose(const TaskInstanceKey& key, std::string reason) {
    ExecutorEvent e;
    e.kind = ExecutorEvent::Kind::kLost;
    e.key = key;
    e.reason = std::move(reason);
    events.push_back(e);
  }
  std::vector<std::string> TaskIds() const {
    std::vector<std::string> ids;
    for (const TaskSpec& s : submitted) ids.push_back(s.key.task_id);
    return ids;
  }

  bool takes_standbys = false;  // what TakesStandby answers
  Status submit_status;         // what Submit answers (an error: refused, nothing recorded)
  Status cancel_status;         // what Cancel answers (the stop is recorded either way)
  std::vector<TaskSpec> submitted;
  std::vector<TaskInstanceKey> cancelled;
  std::vector<TaskInstanceKey> withdrawn;
  mutable std::vector<TaskInstanceKey> standby_asked;  // the holders TakesStandby was asked about
  std::vector<RunningTask> adopted;
  std::vector<ExecutorEvent> events;
};

}  // namespace testing_fakes
}  // namespace nightshift

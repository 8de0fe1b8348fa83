// Standbys (docs/adr/0006), the one place the scheduler decides about them. Without them a slot
// that frees up sits idle for a whole round trip (the supervisor sees the try end, tells the
// daemon, the daemon runs a pass, commits it and sends the next try back). So each try that
// holds a slot may have one standby, handed to the executor ahead of time, which the supervisor
// starts in that slot the moment the holder ends:
//  - a downstream task whose last unfinished upstream is the holder, started only if the
//    holder succeeds (exit 0, no stop asked for, no output file for the scheduler to read);
//  - else the head of the ready queue, when it belongs to the same DAG and pool (so handing
//    the slot over changes no limit), started however the holder ends.
// A standby is queued, with its try recorded, before it is sent, like any try; it does not
// count against limits until its holder's slot is handed over (ActiveRun::slotless). One that
// does not start is declined and undone (Scheduler::Undo): its instance waits again and its
// try number is used again.
#include "scheduler/scheduler.h"

#include <algorithm>

namespace nightshift {

void Scheduler::StopDispatching() {
  dispatching_ = false;
  for (const auto& [key, at] : active_tries_) {
    auto run_it = runs_.find(at.run_pk);
    if (run_it == runs_.end() || !run_it->second.slotless.count(at.ti_index)) continue;
    SchedulerCommand withdraw;
    withdraw.kind = SchedulerCommand::Kind::kWithdraw;
    withdraw.key = key;
    commands_.push_back(std::move(withdraw));
  }
  // Nothing to commit: a withdrawn standby comes back as a declined event.
  CarryOut(clock_.Now());
}

bool Scheduler::MayStandBy(const ActiveRun& active, size_t index, const Task& task) const {
  // A window is judged when a try starts, which for a standby is not now; a cache hit would
  // not start anything.
  if (active.tis[index].state != TaskState::kScheduled || task.cache.enabled) return false;
  return !(options_.respect_windows && WindowOf(active, task));
}

std::optional<Scheduler::StandbyPick> Scheduler::StandbyFor(const ActiveTry& holder,
                                                            const TaskInstanceKey& holder_key) {
  auto run_it = runs_.find(holder.run_pk);
  if (run_it == runs_.end()) return std::nullopt;
  const ActiveRun& active = run_it->second;
  const TaskInstance& held = active.tis[holder.ti_index];
  const Task* held_task = active.TaskOf(held);
  if (!held_task) return std::nullopt;
  TaskSpec holder_probe;
  holder_probe.key = holder_key;
  holder_probe.executor = held_task->executor.value_or("");
  auto takes = [&](const Task& task) {
    TaskSpec probe;
    probe.executor = task.executor.value_or("");
    return executor_.TakesStandby(holder_probe, probe);
  };

  // A downstream task that waits only for the holder: a chain's next link.
  const TaskNode& node = active.nodes.at(held.task_id);
  if (node.instances.size() == 1) {
    for (const std::string& down : node.downstream) {
      const TaskNode& next = active.nodes.at(down);
      const Task& task = active.dag.tasks[next.task_index];
      if (next.instances.size() != 1 || task.trigger_rule != TriggerRule::kAllSuccess ||
          task.map.kind != MapSpec::Kind::kNone) {
        continue;
      }
      // Every upstream instance succeeded but one, which is the holder's (it has not).
      if (next.upstream.total != next.upstream.success + 1) continue;
      const size_t i = next.instances[0];
      if (active.tis[i].pool != held.pool || ready_.Contains(active.run.id, i) || !MayStandBy(active, i, task)) {
        continue;
      }
      if (takes(task)) return StandbyPick{active.run.id, i, true};
    }
  }

  // The next in line for a slot, if it can take this one as it is.
  const ReadyQueue::Queue& queue = ready_.queue();
  if (queue.empty()) return std::nullopt;
  const ReadyEntry& head = *queue.begin();
  auto head_run = runs_.find(head.run_pk);
  if (head_run == runs_.end() || head_run->second.run.state != RunState::kRunning) return std::nullopt;
  const ActiveRun& other = head_run->second;
  const TaskInstance& ti = other.tis[head.index];
  const Task* task = other.TaskOf(ti);
  if (!task || other.run.dag_id != active.run.dag_id || ti.pool != held.pool || !MayStandBy(other, head.index, *task)) {
    return std::nullopt;
  }
  if (!takes(*task)) return std::nullopt;
  return StandbyPick{head.run_pk, head.index, false};
}

int Scheduler::MaxStandbyDepth(int64_t run_pk) const {
  // A slot's holder, its standby and the standby's own: two tries of slack, so a slot stays busy
  // even when a try is shorter than the round trip that sends the next standby. Deeper lets more
  // tries jump ahead of work that becomes ready meanwhile (a higher priority_weight waits behind
  // every standby of a slot), so a third only while the run's tries are short, and a fourth
  // while they are very short: the supervisor then tells the daemon about three or four tries
  // at once instead of two (one pass and one commit for them), and the standbys ahead of a
  // later task take under 60 ms (three under kShortTryMs, or four under kVeryShortTryMs).
  constexpr double kShortTryMs = 20;
  constexpr double kVeryShortTryMs = 5;
  auto it = runs_.find(run_pk);
  if (it == runs_.end() || !it->second.typical_try_ms) return 2;
  const double typical = *it->second.typical_try_ms;
  return typical < kVeryShortTryMs ? 4 : typical < kShortTryMs ? 3 : 2;
}

void Scheduler::AssignStandbys(TimePoint now) {
  std::vector<TaskInstanceKey> holders;
  for (const auto& [key, at] : active_tries_) {
    const bool live = at.task_try.state == TaskState::kQueued || at.task_try.state == TaskState::kRunning;
    if (live && !at.standby && !at.cancel_reason && at.standby_depth < MaxStandbyDepth(at.run_pk)) {
      holders.push_back(key);
    }
  }
  while (!holders.empty()) {
    std::vector<TaskInstanceKey> assigned;
    for (const TaskInstanceKey& holder_key : holders) {
      ActiveTry& holder = active_tries_.at(holder_key);
      std::optional<StandbyPick> pick = StandbyFor(holder, holder_key);
      if (!pick) continue;
      ActiveRun& active = runs_.at(pick->run_pk);
      TaskInstance& ti = active.tis[pick->index];
      const Task* task = active.TaskOf(ti);
      Start(active, pick->index, *task, now);  // queued, its try recorded, its submit the last command
      TaskSpec& spec = commands_.back().spec;
      spec.after = holder_key;
      spec.after_success = pick->needs_success;
      // Counted when the holder's slot is handed over (StandbyTakesOver), not before.
      active.slotless.insert(pick->index);
      CountSlot(active.run.dag_id, ti.pool, -1);
      ti.waiting_reason = "starts in the slot of " + holder_key.ToString() +
                          (pick->needs_success ? " as soon as that succeeds" : " as soon as that ends");
      holder.standby = spec.key;
      holder.standby_needs_success = pick->needs_success;
      ActiveTry& standby = active_tries_.at(spec.key);
      standby.standby_depth = holder.standby_depth + 1;
      standby.sent_as_standby = true;
      ++metrics_.standbys_queued;
      if (standby.standby_depth < MaxStandbyDepth(standby.run_pk)) assigned.push_back(spec.key);
    }
    holders = std::move(assigned);
  }
}

void Scheduler::StandbyStarted(const ActiveTry& at) {
  if (at.sent_as_standby) ++metrics_.standbys_started;
}

bool Scheduler::StandbyTakesOver(ActiveTry& holder, int exit_code, bool handed_off, TimePoint now) {
  const bool success_started_standby = handed_off && holder.standby_needs_success && exit_code == 0;
  // How long the run's tries take decides how deep standbys queue (MaxStandbyDepth).
  auto holder_run = runs_.find(holder.run_pk);
  if (holder_run != runs_.end() && holder.task_try.start_date) {
    std::optional<double>& typical = holder_run->second.typical_try_ms;
    const double ms = std::chrono::duration<double, std::milli>(now - *holder.task_try.start_date).count();
    typical = typical ? *typical * 0.875 + ms * 0.125 : ms;
  }
  if (!holder.standby) return success_started_standby;
  const TaskInstanceKey key = *std::exchange(holder.standby, std::nullopt);
  auto it = active_tries_.find(key);
  if (it == active_tries_.end()) return success_started_standby;
  // Each try waiting behind it is one step closer to a slot.
  for (ActiveTry* next = &it->second; next;) {
    next->standby_depth = std::max(0, next->standby_depth - 1);
    auto after = next->standby ? active_tries_.find(*next->standby) : active_tries_.end();
    next = after == active_tries_.end() ? nullptr : &after->second;
  }
  auto run_it = runs_.find(it->second.run_pk);
  if (run_it == runs_.end() || !run_it->second.slotless.erase(it->second.ti_index)) return success_started_standby;
  CountSlot(run_it->second.run.dag_id, run_it->second.tis[it->second.ti_index].pool, +1);
  return success_started_standby;
}

void Scheduler::ForgetStandby(const TaskInstanceKey& key) {
  // The key may soon name another try of the instance. What waited on it was declined with it,
  // and holds no slot either.
  for (auto& [holder_key, holder] : active_tries_) {
    if (holder.standby == key) holder.standby.reset();
  }
}

bool Scheduler::WaitsForASlot(const ActiveRun& active, size_t index) const { return active.slotless.count(index) > 0; }

bool Scheduler::LeavesWithoutASlot(ActiveRun& active, size_t index) { return active.slotless.erase(index) > 0; }

}  // namespace nightshift

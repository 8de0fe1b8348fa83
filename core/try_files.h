// Where a try's files are on disk, in one place: the scheduler, both executors, the task
// wrapper's command line, retention and the API all take their paths from here. Pure: nothing
// here touches a file. Existing state folders depend on these names: they never change.
//
//   LOGS_DIR/DAG/RUN/                    a run's folder; retention removes it whole
//     tries.journal                      the local tries' starts and ends (executor/try_journal.h)
//     NAME.TRY.log                       a try's log; NAME is TASK, or TASK[MAP] for a mapped
//                                        instance ("[" cannot occur in a task id)
//     NAME.TRY.output.json               what the try wrote to $NIGHTSHIFT_OUTPUT
//     NAME.TRY.input.UPSTREAM.json       an upstream's output too big for a variable
//     NAME.TRY.log.status                the task wrapper's (Slurm tries): the exit code
//     NAME.TRY.log.pid                     its pid and start time
//     NAME.TRY.log.progress                the latest progress
//     NAME.TRY.log.slurm_job             the Slurm job id ("" until sbatch answered)
//     NAME.TRY.sbatch                    the Slurm batch script, without a shared folder
//     CALLBACK.log, CALLBACK.output.json the run's on_success / on_failure callback
//   LOGS_DIR/DAG/TASK.array/TRY.from-MAP.sbatch  a job array's script (TryFiles::ArrayScript):
//                                        next to the folder of its elements' scripts
//   With slurm.shared_dir, the batch scripts go to SHARED/DAG/RUN/TASK[.MAP]/TRY.sbatch instead,
//   and a job array's to SHARED/DAG/RUN/TASK.array/TRY.from-MAP.sbatch.
//
// A restarted daemon finds every file of a try from its log path alone, which the store
// records: so the others derive from the log path (TryFiles::OfLog).
#pragma once

#include <string>
#include <string_view>

namespace nightshift {

// Names one try (the fields of the executor's TaskInstanceKey).
struct TryId {
  std::string_view dag_id;
  std::string_view run_id;
  std::string_view task_id;
  int map_index = -1;
  int try_number = 1;
};

// LOGS_DIR/DAG/RUN
std::string RunFolder(std::string_view logs_dir, std::string_view dag_id, std::string_view run_id);

// LOGS_DIR/DAG/RUN/tries.journal
std::string TryJournalPath(std::string_view logs_dir, std::string_view dag_id, std::string_view run_id);

struct TryFiles {
  // A try's files in LOGS_DIR.
  static TryFiles For(std::string_view logs_dir, const TryId& id);
  // The files of the run's callback `name` (on_success, on_failure), which has no try number.
  static TryFiles ForCallback(std::string_view logs_dir, std::string_view dag_id, std::string_view run_id,
                              std::string_view name);
  // The files of the try whose log is `log_path`.
  static TryFiles OfLog(std::string_view log_path);

  std::string log;
  std::string output;
  std::string status;
  std::string pid;
  std::string progress;
  std::string slurm_job;
  std::string sbatch;  // the batch script without slurm.shared_dir

  // NAME.TRY.input.UPSTREAM.json
  std::string Input(std::string_view upstream) const;
  // The batch script: `sbatch`, or in `shared_dir` (when not empty)
  // SHARED/DAG/RUN/TASK[.MAP]/TRY.sbatch.
  std::string Script(std::string_view shared_dir, const TryId& id) const;
  // The script of a job array whose first element (lowest map index) is `first`: in the folder
  // TASK.array next to that of the element's Script(), named TRY.from-MAP.sbatch.
  std::string ArrayScript(std::string_view shared_dir, const TryId& first) const;

 private:
  std::string stem_;  // the log's path without ".log"
};

}  // namespace nightshift

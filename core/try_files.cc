#include "core/try_files.h"

#include <filesystem>

namespace nightshift {
namespace {

constexpr std::string_view kLogSuffix = ".log";

std::string Join(std::string_view a, std::string_view b) {
  std::string out;
  out.reserve(a.size() + 1 + b.size());
  out.append(a).append("/").append(b);
  return out;
}

}  // namespace

std::string RunFolder(std::string_view logs_dir, std::string_view dag_id, std::string_view run_id) {
  return Join(Join(logs_dir, dag_id), run_id);
}

std::string TryJournalPath(std::string_view logs_dir, std::string_view dag_id, std::string_view run_id) {
  return Join(RunFolder(logs_dir, dag_id, run_id), "tries.journal");
}

TryFiles TryFiles::For(std::string_view logs_dir, const TryId& id) {
  // One folder per run, one file per try, no folder per task: a try that prints nothing then
  // costs no file at all (the supervisor creates the log at its first byte).
  std::string name(id.task_id);
  if (id.map_index >= 0) name += "[" + std::to_string(id.map_index) + "]";
  name += "." + std::to_string(id.try_number);
  return OfLog(Join(RunFolder(logs_dir, id.dag_id, id.run_id), name) + std::string(kLogSuffix));
}

TryFiles TryFiles::ForCallback(std::string_view logs_dir, std::string_view dag_id, std::string_view run_id,
                               std::string_view name) {
  return OfLog(Join(RunFolder(logs_dir, dag_id, run_id), name) + std::string(kLogSuffix));
}

TryFiles TryFiles::OfLog(std::string_view log_path) {
  TryFiles files;
  files.log = std::string(log_path);
  files.stem_ = std::string(log_path.ends_with(kLogSuffix) ? log_path.substr(0, log_path.size() - kLogSuffix.size())
                                                           : log_path);
  files.output = files.stem_ + ".output.json";
  files.status = files.log + ".status";
  files.pid = files.log + ".pid";
  files.progress = files.log + ".progress";
  files.slurm_job = files.log + ".slurm_job";
  files.sbatch = files.stem_ + ".sbatch";
  return files;
}

std::string TryFiles::Input(std::string_view upstream) const {
  return stem_ + ".input." + std::string(upstream) + ".json";
}

std::string TryFiles::Script(std::string_view shared_dir, const TryId& id) const {
  if (shared_dir.empty()) return sbatch;
  std::string task_dir(id.task_id);
  if (id.map_index >= 0) task_dir += "." + std::to_string(id.map_index);
  return Join(Join(RunFolder(shared_dir, id.dag_id, id.run_id), task_dir), std::to_string(id.try_number) + ".sbatch");
}

std::string TryFiles::ArrayScript(std::string_view shared_dir, const TryId& first) const {
  namespace fs = std::filesystem;
  const fs::path beside = fs::path(Script(shared_dir, first)).parent_path().parent_path();
  return (beside / (std::string(first.task_id) + ".array") /
          (std::to_string(first.try_number) + ".from-" + std::to_string(first.map_index) + ".sbatch"))
      .string();
}

}  // namespace nightshift

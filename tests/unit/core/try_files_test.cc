#include "core/try_files.h"

#include <gtest/gtest.h>

#include <string>

namespace nightshift {
namespace {

// These are the names existing state folders hold: a change here strands every try an upgraded
// daemon should adopt, and every log the API should serve.

TEST(TryFilesTest, RunFolderAndJournal) {
  EXPECT_EQ(RunFolder("/state/logs", "etl", "manual__1"), "/state/logs/etl/manual__1");
  EXPECT_EQ(TryJournalPath("/state/logs", "etl", "manual__1"), "/state/logs/etl/manual__1/tries.journal");
}

TEST(TryFilesTest, EveryFileOfATry) {
  const TryFiles files = TryFiles::For("/state/logs", TryId{"etl", "run1", "load", -1, 2});
  EXPECT_EQ(files.log, "/state/logs/etl/run1/load.2.log");
  EXPECT_EQ(files.output, "/state/logs/etl/run1/load.2.output.json");
  EXPECT_EQ(files.status, "/state/logs/etl/run1/load.2.log.status");
  EXPECT_EQ(files.pid, "/state/logs/etl/run1/load.2.log.pid");
  EXPECT_EQ(files.progress, "/state/logs/etl/run1/load.2.log.progress");
  EXPECT_EQ(files.slurm_job, "/state/logs/etl/run1/load.2.log.slurm_job");
  EXPECT_EQ(files.sbatch, "/state/logs/etl/run1/load.2.sbatch");
  EXPECT_EQ(files.Input("extract"), "/state/logs/etl/run1/load.2.input.extract.json");
}

TEST(TryFilesTest, AMappedInstanceHasItsIndexInBrackets) {
  const TryFiles files = TryFiles::For("/l", TryId{"d", "r", "t", 7, 1});
  EXPECT_EQ(files.log, "/l/d/r/t[7].1.log");
  EXPECT_EQ(files.output, "/l/d/r/t[7].1.output.json");
  EXPECT_EQ(files.status, "/l/d/r/t[7].1.log.status");
  EXPECT_EQ(files.Input("up"), "/l/d/r/t[7].1.input.up.json");
  EXPECT_EQ(TryFiles::For("/l", TryId{"d", "r", "t", 0, 3}).log, "/l/d/r/t[0].3.log");
}

TEST(TryFilesTest, CallbacksHaveNoTryNumber) {
  const TryFiles files = TryFiles::ForCallback("/l", "d", "r", "on_failure");
  EXPECT_EQ(files.log, "/l/d/r/on_failure.log");
  EXPECT_EQ(files.output, "/l/d/r/on_failure.output.json");
}

TEST(TryFilesTest, TheLogPathAloneGivesTheRest) {
  // What a restarted daemon has: the log path the store recorded.
  const TryFiles files = TryFiles::OfLog("/l/d/r/t[2].4.log");
  EXPECT_EQ(files.log, "/l/d/r/t[2].4.log");
  EXPECT_EQ(files.output, "/l/d/r/t[2].4.output.json");
  EXPECT_EQ(files.slurm_job, "/l/d/r/t[2].4.log.slurm_job");
  // Not ending in .log (a store row written by hand): the suffixes go on the whole path.
  EXPECT_EQ(TryFiles::OfLog("/x/odd").sbatch, "/x/odd.sbatch");
  EXPECT_EQ(TryFiles::OfLog("/x/odd").status, "/x/odd.status");
}

TEST(TryFilesTest, SlurmScriptsWithAndWithoutASharedFolder) {
  const TryId plain{"d", "r", "t", -1, 2};
  const TryId mapped{"d", "r", "t", 5, 1};
  const TryFiles plain_files = TryFiles::For("/l", plain);
  const TryFiles mapped_files = TryFiles::For("/l", mapped);
  EXPECT_EQ(plain_files.Script("", plain), "/l/d/r/t.2.sbatch");
  EXPECT_EQ(plain_files.Script("/shared", plain), "/shared/d/r/t/2.sbatch");
  EXPECT_EQ(mapped_files.Script("/shared", mapped), "/shared/d/r/t.5/1.sbatch");
  EXPECT_EQ(mapped_files.ArrayScript("/shared", mapped), "/shared/d/r/t.array/1.from-5.sbatch");
  EXPECT_EQ(mapped_files.ArrayScript("", mapped), "/l/d/t.array/1.from-5.sbatch");
}

}  // namespace
}  // namespace nightshift

// The tries journal's format: what the supervisor writes, a restarted daemon reads back.
#include "executor/try_journal.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

namespace nightshift {
namespace {

namespace fs = std::filesystem;

class TryJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ns-journal-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/tries.journal";
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& text) {
    std::ofstream out(path_, std::ios::binary | std::ios::app);
    out << text;
  }

  std::map<std::string, JournalTry> Read() {
    auto read = ReadTryJournal(path_);
    EXPECT_TRUE(read.ok()) << read.status().ToString();
    return read.ok() ? *read : std::map<std::string, JournalTry>{};
  }

  std::string dir_;
  std::string path_;
};

TEST_F(TryJournalTest, PathIsNextToTheRunsLogs) {
  EXPECT_EQ(TryJournalPath("/var/logs", "dag", "run_1"), "/var/logs/dag/run_1/tries.journal");
}

TEST_F(TryJournalTest, FormatsOneLinePerRecord) {
  EXPECT_EQ(FormatJournalStart("/l/a.log", JournalStart{12, 345, 6, 78}), "S\t/l/a.log\t12\t345\t6\t78\n");
  EXPECT_EQ(FormatJournalEnd("/l/a.log", JournalEnd{3, "exit code 3", TimePoint(std::chrono::milliseconds(1700000000123))}),
            "E\t/l/a.log\t3\t1700000000123\texit code 3\n");
  EXPECT_EQ(FormatJournalEnd("/l/a.log", JournalEnd{0, "", TimePoint(std::chrono::milliseconds(5))}), "E\t/l/a.log\t0\t5\t\n");
}

TEST_F(TryJournalTest, RoundTrip) {
  const JournalStart start{4242, 987654321, 4000, 123456};
  const JournalEnd end{137, "killed by signal 9 (Killed) (stopped)", TimePoint(std::chrono::milliseconds(1700000000123))};
  Write(FormatJournalStart("/logs/a/1.log", start));
  Write(FormatJournalStart("/logs/b/1.log", JournalStart{7, 8, 4000, 123456}));
  Write(FormatJournalEnd("/logs/a/1.log", end));
  Write(FormatJournalEnd("/logs/c/1.log", JournalEnd{0, "", TimePoint(std::chrono::milliseconds(99))}));

  auto tries = Read();
  ASSERT_EQ(tries.size(), 3u);
  const JournalTry& a = tries["/logs/a/1.log"];
  ASSERT_TRUE(a.start && a.end);
  EXPECT_EQ(a.start->pid, 4242);
  EXPECT_EQ(a.start->start_time, 987654321u);
  EXPECT_EQ(a.start->supervisor_pid, 4000);
  EXPECT_EQ(a.start->supervisor_start_time, 123456u);
  EXPECT_EQ(a.end->exit_code, 137);
  EXPECT_EQ(a.end->reason, end.reason);
  EXPECT_EQ(a.end->at, end.at);
  const JournalTry& b = tries["/logs/b/1.log"];
  ASSERT_TRUE(b.start);
  EXPECT_FALSE(b.end);  // still running
  EXPECT_EQ(b.start->pid, 7);
  const JournalTry& c = tries["/logs/c/1.log"];  // an end without a start is still an end
  EXPECT_FALSE(c.start);
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->exit_code, 0);
  EXPECT_EQ(c.end->reason, "");
}

TEST_F(TryJournalTest, ATornLastLineIsIgnored) {
  Write(FormatJournalStart("/logs/a/1.log", JournalStart{1, 2, 3, 4}));
  std::string end = FormatJournalEnd("/logs/a/1.log", JournalEnd{5, "exit code 5", TimePoint(std::chrono::milliseconds(6))});
  end.pop_back();  // no newline: still being written, or torn
  Write(end);
  auto tries = Read();
  ASSERT_EQ(tries.size(), 1u);
  EXPECT_TRUE(tries["/logs/a/1.log"].start);
  EXPECT_FALSE(tries["/logs/a/1.log"].end);

  // A torn start names no try at all.
  fs::remove(path_);
  Write("S\t/logs/x/1.log\t12");
  EXPECT_TRUE(Read().empty());
}

TEST_F(TryJournalTest, MalformedLinesAreSkipped) {
  Write("garbage\n");
  Write("S\t/logs/a/1.log\tnot-a-pid\t2\t3\t4\n");
  Write("E\t/logs/a/1.log\t1\n");  // too few fields
  Write("X\t/logs/a/1.log\t1\t2\t3\n");
  Write("\n");
  Write(FormatJournalStart("/logs/b/1.log", JournalStart{1, 2, 3, 4}));
  auto tries = Read();
  ASSERT_EQ(tries.size(), 1u);
  EXPECT_TRUE(tries.count("/logs/b/1.log"));
}

TEST_F(TryJournalTest, AMissingFileIsAnEmptyJournal) {
  auto read = ReadTryJournal(dir_ + "/no/such/tries.journal");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_TRUE(read->empty());
}

TEST_F(TryJournalTest, AnUnreadableFileIsAnError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads everything";
  Write(FormatJournalStart("/logs/a/1.log", JournalStart{1, 2, 3, 4}));
  ASSERT_EQ(::chmod(path_.c_str(), 0), 0);
  EXPECT_FALSE(ReadTryJournal(path_).ok());
}

TEST_F(TryJournalTest, AReasonWithTabsAndNewlinesIsFlattened) {
  const std::string line = FormatJournalEnd(
      "/logs/a/1.log", JournalEnd{1, "line one\nline\ttwo\r\nthree", TimePoint(std::chrono::milliseconds(10))});
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1);
  EXPECT_EQ(line.back(), '\n');
  Write(line);
  Write(FormatJournalStart("/logs/b/1.log", JournalStart{1, 2, 3, 4}));  // the next record is intact
  auto tries = Read();
  ASSERT_EQ(tries.size(), 2u);
  ASSERT_TRUE(tries["/logs/a/1.log"].end);
  EXPECT_EQ(tries["/logs/a/1.log"].end->reason, "line one line two  three");
  EXPECT_EQ(tries["/logs/a/1.log"].end->exit_code, 1);
  EXPECT_TRUE(tries["/logs/b/1.log"].start);
}

TEST_F(TryJournalTest, JournalSafePaths) {
  EXPECT_TRUE(IsJournalSafe("/logs/dag/run/task/1.log"));
  EXPECT_TRUE(IsJournalSafe("/logs/with space/1.log"));
  EXPECT_FALSE(IsJournalSafe("/logs/a\tb/1.log"));
  EXPECT_FALSE(IsJournalSafe("/logs/a\nb/1.log"));
}

}  // namespace
}  // namespace nightshift

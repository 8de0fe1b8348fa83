// A try's environment: the daemon's, with the try's variables set over it.
#include "executor/environment.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <string>
#include <vector>

namespace nightshift {
namespace {

std::vector<std::string> Merged(std::vector<std::string> base, std::vector<std::string> over) {
  std::vector<std::string> out;
  for (char* e : MergedEnvironment(base, over)) {
    if (e == nullptr) break;
    out.emplace_back(e);
  }
  return out;
}

TEST(EnvironmentTest, TheTrysVariablesWinAndAreAddedInOrder) {
  EXPECT_EQ(Merged({"HOME=/root", "PATH=/bin", "TERM=xterm"}, {"A=1", "PATH=/opt/bin", "Z=2"}),
            (std::vector<std::string>{"A=1", "HOME=/root", "PATH=/opt/bin", "TERM=xterm", "Z=2"}));
  EXPECT_EQ(Merged({"HOME=/root"}, {}), (std::vector<std::string>{"HOME=/root"}));
  EXPECT_EQ(Merged({}, {"A=1"}), (std::vector<std::string>{"A=1"}));
}

TEST(EnvironmentTest, ANameThatPrefixesAnotherIsStillReplacedOnce) {
  // Sorted as whole strings "PATH2=x" comes before "PATH=/bin" ('2' < '='); sorted by name it
  // comes after, which is what the merge needs to see that the try sets PATH.
  std::vector<std::string> base = {"PATH=/bin", "PATH2=x", "PATH_EXTRA=y"};
  SortByName(&base);
  EXPECT_EQ(base, (std::vector<std::string>{"PATH=/bin", "PATH2=x", "PATH_EXTRA=y"}));
  EXPECT_EQ(Merged(base, {"PATH=/opt/bin"}),
            (std::vector<std::string>{"PATH=/opt/bin", "PATH2=x", "PATH_EXTRA=y"}));
}

TEST(EnvironmentTest, SortedEnvironmentIsThisProcesssSortedByName) {
  ASSERT_EQ(::setenv("NIGHTSHIFT_ENV_TEST", "a b", 1), 0);
  ASSERT_EQ(::setenv("NIGHTSHIFT_ENV_TEST0", "c", 1), 0);
  std::vector<std::string> env = SortedEnvironment();
  std::vector<std::string> sorted = env;
  SortByName(&sorted);
  EXPECT_EQ(env, sorted);
  auto at = [&](const std::string& s) { return std::find(env.begin(), env.end(), s) - env.begin(); };
  ASSERT_LT(at("NIGHTSHIFT_ENV_TEST=a b"), static_cast<long>(env.size()));
  EXPECT_LT(at("NIGHTSHIFT_ENV_TEST=a b"), at("NIGHTSHIFT_ENV_TEST0=c"));
  ::unsetenv("NIGHTSHIFT_ENV_TEST");
  ::unsetenv("NIGHTSHIFT_ENV_TEST0");
}

}  // namespace
}  // namespace nightshift

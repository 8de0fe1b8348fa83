#include "app/progress_bar.h"

#include <cstdio>

namespace nightshift {

std::string ProgressBarLine(int done, int total, int running, int failed, double elapsed_seconds) {
  constexpr int kWidth = 30;
  const int filled = total > 0 ? done * kWidth / total : 0;
  char counts[160];
  std::snprintf(counts, sizeof(counts), "] %d/%d done, %d running, %d failed, %.1fs", done, total, running, failed,
                elapsed_seconds);
  std::string line = "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + counts;
  if (done > 0 && done < total) {
    line += ", ~" + std::to_string(static_cast<int>(elapsed_seconds / done * (total - done) + 0.5)) + "s left";
  }
  return line;
}

}  // namespace nightshift

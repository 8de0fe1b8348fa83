// The one-line progress bar `nightshift run` and `nightshift dags trigger --wait` draw.
#pragma once

#include <string>

namespace nightshift {

// "[#######.......] 3/10 done, 2 running, 0 failed, 12.3s, ~28s left": the time left assumes
// the rest goes at the pace so far and is left out until something has finished.
std::string ProgressBarLine(int done, int total, int running, int failed, double elapsed_seconds);

}  // namespace nightshift

#include <string_view>

#include "app/cli.h"
#include "executor/task_protocol.h"
#include "executor/task_wrapper.h"

int main(int argc, char** argv) {
  // The task wrapper is this same binary; it must start before anything else is set up.
  if (argc > 1 && argv[1] == nightshift::kTaskWrapperCommand) {
    return nightshift::RunTaskWrapper(argc, argv);
  }
  return nightshift::RunCli(argc, argv);
}

#include <string_view>

#include "app/cli.h"
#include "executor/task_protocol.h"
#include "executor/task_wrapper.h"
#include "executor/supervisor.h"

int main(int argc, char** argv) {
  // The task wrapper is this same binary; it must start before anything else is set up.
  if (argc > 1 && argv[1] == nightshift::kTaskWrapperCommand) {
    return nightshift::RunTaskWrapper(argc, argv);
  }
  // `serve` and `run` start tries through a supervisor process: fork it now, while this process
  // is still small and has no threads (see executor/supervisor.h).
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "serve" || arg == "run") {
      nightshift::SupervisorClient::Prestart();  // without it, the executor forks one later
      break;
    }
  }
  return nightshift::RunCli(argc, argv);
}

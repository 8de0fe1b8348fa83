#include <string_view>

#include "app/cli.h"
#include "executor/task_protocol.h"
#include "executor/task_wrapper.h"
#include "executor/wrapper_spawner.h"

int main(int argc, char** argv) {
  // The task wrapper is this same binary; it must start before anything else is set up.
  if (argc > 1 && argv[1] == nightshift::kTaskWrapperCommand) {
    return nightshift::RunTaskWrapper(argc, argv);
  }
  // `serve` and `run` start many task wrappers: fork the small helper that starts them now,
  // while this process is still small and has no threads (see executor/wrapper_spawner.h).
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "serve" || arg == "run") {
      (void)nightshift::WrapperSpawner::Start();  // without it, wrappers are exec'ed
      break;
    }
  }
  return nightshift::RunCli(argc, argv);
}

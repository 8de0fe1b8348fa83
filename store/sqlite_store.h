// The Store on one SQLite database file (raw SQLite C API).
//
// Durability: WAL journal, synchronous=NORMAL by default (see SqliteStoreOptions). Every write
// is committed before the call returns, so it survives kill -9 of the process.
//
// Threads: one SqliteStore may be shared by several threads. Calls are serialized on one
// connection, and an InTransaction body holds that connection until it returns, so other
// threads wait for the whole transaction rather than interleave with it.
//
// Processes: several processes may open the same file (the daemon and `nightshift db check`);
// a writer that finds the database locked waits up to busy_timeout_ms before failing with Busy.
#pragma once

#include <memory>
#include <string>

#include "store/migrations.h"
#include "store/store.h"

namespace nightshift {

struct SqliteStoreOptions {
  // How long a call waits for another connection's write lock before returning Busy.
  // Default: 5000 ms.
  int busy_timeout_ms = 5000;
  // false (default): synchronous=NORMAL: a commit survives a crash of the process; a power
  // loss or kernel panic may forget the last few commits but never corrupts the file.
  // true: synchronous=FULL: also survives power loss, at the cost of an fsync per commit.
  bool sync_every_commit = false;
  // true (default): WAL checkpoints run on a thread of the store's own, with a connection of
  // its own, started when the WAL first passes 1000 pages; the committing thread only wakes it.
  // false: SQLite's auto-checkpoint, inside the commit that passes 1000 pages.
  bool background_checkpoint = true;
};

// Opens (creating if missing, parent folders included) the database at `path`; ":memory:" for
// a private in-memory database. Does not migrate; call Migrate().
// Error codes: IOError (cannot create or open), Corruption (not a database), Busy.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, const SqliteStoreOptions& options);

}  // namespace nightshift

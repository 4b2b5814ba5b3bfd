import { Worker } from 'node:worker_threads';

/**
 * Copies a SQLite file's write-ahead log back into the file from a thread of its own.
 * SQLite otherwise does it inside whichever commit fills the log past 1,000 pages, and with
 * better-sqlite3 that commit blocks the event loop for the copy and its fsync: tens of
 * milliseconds every few thousand charges, straight into the latency tail. The connections
 * the service writes with turn that off (`wal_autocheckpoint = 0`) and this thread runs a
 * PASSIVE checkpoint every `everyMs`: it never waits for a writer or makes one wait.
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private stopped?: Promise<void>;

  constructor(filenames: readonly string[], everyMs = 200) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { filenames, everyMs, driver: require.resolve('better-sqlite3') },
    });
    // A checkpoint that fails is retried on the next tick; the log only grows meanwhile.
    this.worker.on('error', () => undefined);
    this.worker.unref();
  }

  stop(): Promise<void> {
    this.stopped ??= this.worker.terminate().then(() => undefined);
    return this.stopped;
  }
}

/** Plain CommonJS: an eval worker runs as is, under Jest as under node. */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const connections = workerData.filenames.map((filename) => {
  const db = new Database(filename);
  db.pragma('busy_timeout = 0');
  return db;
});
setInterval(() => {
  for (const db of connections) {
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {}
  }
}, workerData.everyMs);
`;

import { Worker } from 'node:worker_threads';
import { THREAD_NAMES } from '../../threads/thread-name';

/**
 * Copies SQLite files' write-ahead logs back into the files from a thread of their own.
 * SQLite otherwise does it inside whichever commit fills the log past 1,000 pages, and with
 * better-sqlite3 that commit blocks the event loop for the copy and its fsync. The
 * connections the service writes with raise that mark (`SAFETY_VALVE_PAGES`) and register
 * their file here; one thread (one per process: each costs memory) runs a PASSIVE checkpoint
 * of every registered file every 200 ms. PASSIVE never waits for a writer nor makes one wait.
 *
 * Under a steady stream of writes a PASSIVE checkpoint never quite catches up, and the log
 * only starts over once one has: the raised mark is the valve for that. By the time the log
 * reaches it this thread has copied nearly all of it, so the commit that runs SQLite's own
 * checkpoint copies only the last few pages and the log starts over.
 */
export const SAFETY_VALVE_PAGES = 4_000;

export class WalCheckpointer {
  private static worker?: Worker;
  private static readonly files = new Map<string, number>();

  /** Starts checkpointing `filename`; the returned function stops it again. */
  static register(filename: string): () => Promise<void> {
    WalCheckpointer.files.set(filename, (WalCheckpointer.files.get(filename) ?? 0) + 1);
    const worker = (WalCheckpointer.worker ??= WalCheckpointer.start());
    worker.postMessage({ add: filename });
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      const left = (WalCheckpointer.files.get(filename) ?? 1) - 1;
      if (left > 0) {
        WalCheckpointer.files.set(filename, left);
        return;
      }
      WalCheckpointer.files.delete(filename);
      if (WalCheckpointer.files.size > 0) {
        worker.postMessage({ remove: filename });
        return;
      }
      WalCheckpointer.worker = undefined;
      await worker.terminate();
    };
  }

  private static start(): Worker {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        everyMs: 200,
        driver: require.resolve('better-sqlite3'),
        name: THREAD_NAMES.walCheckpointer,
      },
    });
    // A checkpoint that fails is retried on the next tick; the log only grows meanwhile.
    worker.on('error', () => undefined);
    worker.unref();
    return worker;
  }
}

/** Plain CommonJS: an eval worker runs as is, under Jest as under node. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
// As nameThisThread does (this source is not compiled, so it cannot import it).
try {
  require('node:fs').writeFileSync('/proc/thread-self/comm', workerData.name);
} catch {}
const connections = new Map();
parentPort.on('message', ({ add, remove }) => {
  if (add !== undefined && !connections.has(add)) {
    const db = new Database(add);
    db.pragma('busy_timeout = 0');
    connections.set(add, db);
  }
  if (remove !== undefined) {
    connections.get(remove)?.close();
    connections.delete(remove);
  }
});
setInterval(() => {
  for (const db of connections.values()) {
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {}
  }
}, workerData.everyMs).unref();
`;

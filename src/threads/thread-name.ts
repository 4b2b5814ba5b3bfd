import { writeFileSync } from 'node:fs';

/** What the service's own threads are called (Linux keeps at most 15 bytes of a name). */
export const THREAD_NAMES = {
  readSide: 'ledger-read',
  eventStoreWriter: 'ledger-writer',
  walCheckpointer: 'ledger-wal',
} as const;

/**
 * Names the calling thread, so that `top -H`, `ps -L` and the bench tell the service's
 * threads apart (Node names every thread `node`). Linux only; elsewhere the thread keeps
 * its name.
 */
export function nameThisThread(name: string): void {
  try {
    writeFileSync('/proc/thread-self/comm', name);
  } catch {
    // Not Linux, or no /proc: only the name is lost.
  }
}

import type { LedgerConfig } from '../config/config';

/**
 * Named places where a crash would hurt most (between the two writes of a transfer...).
 * The crash tests set LEDGER_CRASH_AT to one of them and the process dies there, as a
 * power cut would; without it this does nothing. Plain (no NestJS) for the worker threads.
 */
export type CrashPointName =
  | 'transfer:after-out'
  | 'sign-up:after-user'
  | 'projection:before-checkpoint'
  | 'group-commit:after-append';

/** Kills the whole process, from any of its threads, if `name` is the configured point. */
export function crashAt(config: Pick<LedgerConfig, 'crashAt'>, name: CrashPointName): void {
  if (config.crashAt === name) process.kill(process.pid, 'SIGKILL');
}

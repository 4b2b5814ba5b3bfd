import { Inject, Injectable } from '@nestjs/common';
import { LEDGER_CONFIG, type LedgerConfig } from '../config/config';

/**
 * Named places where a crash would hurt most (between the two writes of a transfer...).
 * The crash tests set LEDGER_CRASH_AT to one of them and the process dies there, as a
 * power cut would; without it this does nothing.
 */
export type CrashPointName =
  | 'transfer:after-out'
  | 'sign-up:after-user'
  | 'projection:before-checkpoint'
  | 'group-commit:after-append';

@Injectable()
export class CrashPoints {
  constructor(@Inject(LEDGER_CONFIG) private readonly config: LedgerConfig) {}

  reach(name: CrashPointName): void {
    if (this.config.crashAt === name) process.kill(process.pid, 'SIGKILL');
  }
}

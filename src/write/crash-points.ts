import { Inject, Injectable } from '@nestjs/common';
import { LEDGER_CONFIG, type LedgerConfig } from '../config/config';
import { crashAt, type CrashPointName } from './crash-at';

/** The crash points (`crash-at.ts`) for the providers of the service's own thread. */
@Injectable()
export class CrashPoints {
  constructor(@Inject(LEDGER_CONFIG) private readonly config: LedgerConfig) {}

  reach(name: CrashPointName): void {
    crashAt(this.config, name);
  }
}

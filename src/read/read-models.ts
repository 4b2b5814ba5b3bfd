import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { PROJECTIONS } from '../../projections';
import { HealthChecks } from '../api/http/health.controller';
import { EVENT_STORE, type EventStore } from '../event-store/event-store';
import { unavailable } from '../ledger/errors';
import { CrashPoints } from '../write/crash-points';
import { SAFETY_VALVE_PAGES, WalCheckpointer } from '../event-store/sqlite/wal-checkpointer';
import { ProjectionRunner } from './projection-runner';
import { dialectOf } from './read-model-database';

export const READ_MODEL_DATABASE = Symbol('READ_MODEL_DATABASE');

/** How long a read with `?minPosition=` waits for the read models (API.md). */
export const READ_YOUR_WRITES_TIMEOUT_MS = 5000;

/** The read models: their database, the projection runner, and read-your-writes. */
@Injectable()
export class ReadModels implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(ReadModels.name);
  readonly runner: ProjectionRunner;
  private stopCheckpoints?: () => Promise<void>;

  constructor(
    @Inject(READ_MODEL_DATABASE) readonly database: DataSource,
    @Inject(EVENT_STORE) store: EventStore,
    crashPoints: CrashPoints,
    health: HealthChecks,
  ) {
    this.runner = new ProjectionRunner(store, database, PROJECTIONS, {
      beforeCheckpoint: () => crashPoints.reach('projection:before-checkpoint'),
      onError: (error) =>
        this.logger.error(`projection batch failed, will retry: ${String(error)}`),
    });
    health.register('readModels', async () => {
      await database.query('SELECT 1');
    });
  }

  async onApplicationBootstrap() {
    if (dialectOf(this.database) === 'sqlite') {
      // As for the events: the log is copied back from a thread of its own, not mid-batch.
      await this.database.query(`PRAGMA wal_autocheckpoint = ${SAFETY_VALVE_PAGES}`);
      this.stopCheckpoints = WalCheckpointer.register(String(this.database.options.database));
    }
    await this.runner.start();
  }

  async onApplicationShutdown() {
    await this.runner.stop();
    await this.stopCheckpoints?.();
    if (this.database.isInitialized) await this.database.destroy();
  }

  /** Read-your-writes: waits until the read models have reached `position`, else 503. */
  async reach(position: bigint | undefined): Promise<void> {
    if (position === undefined) return;
    if (!(await this.runner.waitFor(position, READ_YOUR_WRITES_TIMEOUT_MS))) {
      throw unavailable(`the read models have not reached position ${position} yet`, {
        position: this.runner.position.toString(),
      });
    }
  }
}

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
import { LEDGER_CONFIG, type LedgerConfig } from '../config/config';
import { EVENT_STORE, type EventStore } from '../event-store/event-store';
import { unavailable } from '../ledger/errors';
import { CrashPoints } from '../write/crash-points';
import type { Progress } from './progress';
import { ProjectionRunner } from './projection-runner';
import { checkpointReadModels, raiseCheckpointValve } from './read-model-database';
import { ReadSideThread } from './read-side-thread';

export const READ_MODEL_DATABASE = Symbol('READ_MODEL_DATABASE');

/** How long a read with `?minPosition=` waits for the read models (API.md). */
export const READ_YOUR_WRITES_TIMEOUT_MS = 5000;

/**
 * The read models: the database queries read, the projections that write it (in the read
 * side's thread, or inline), and read-your-writes.
 */
@Injectable()
export class ReadModels implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(ReadModels.name);
  private readonly runner?: ProjectionRunner;
  private readonly thread?: ReadSideThread;
  private readonly progress: Progress;
  private stopCheckpoints?: () => Promise<void>;

  constructor(
    @Inject(READ_MODEL_DATABASE) readonly database: DataSource,
    @Inject(EVENT_STORE) store: EventStore,
    @Inject(LEDGER_CONFIG) config: LedgerConfig,
    crashPoints: CrashPoints,
    health: HealthChecks,
  ) {
    if (config.readSide === 'inline') {
      this.runner = new ProjectionRunner(store, database, PROJECTIONS, {
        beforeCheckpoint: () => crashPoints.reach('projection:before-checkpoint'),
        onError: (error) =>
          this.logger.error(`projection batch failed, will retry: ${String(error)}`),
      });
      this.progress = this.runner.progress;
    } else {
      this.thread = new ReadSideThread(config, new Logger('ReadSide'));
      this.progress = this.thread.progress;
    }
    health.register('readModels', async () => {
      await database.query('SELECT 1');
    });
  }

  /** The position every projection has reached. */
  get position(): bigint {
    return this.progress.position;
  }

  async onApplicationBootstrap() {
    // Wherever the projections write from, this process's checkpointer thread copies the log.
    this.stopCheckpoints = checkpointReadModels(this.database);
    if (this.runner) {
      await raiseCheckpointValve(this.database);
      await this.runner.start();
    }
    await this.thread?.start();
  }

  async onApplicationShutdown() {
    await this.runner?.stop();
    await this.thread?.stop();
    await this.stopCheckpoints?.();
    if (this.database.isInitialized) await this.database.destroy();
  }

  /** Read-your-writes: waits until the read models have reached `position`, else 503. */
  async reach(position: bigint | undefined): Promise<void> {
    if (position === undefined) return;
    if (!(await this.progress.waitFor(position, READ_YOUR_WRITES_TIMEOUT_MS))) {
      throw unavailable(`the read models have not reached position ${position} yet`, {
        position: this.progress.position.toString(),
      });
    }
  }
}

import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { DataSource } from 'typeorm';
import { READ_MODEL_ENTITIES } from '../../projections/entities';
import { ReadModels1764300000000 } from '../../projections/migrations/1764300000000-read-models';
import { WidePositions1764400000000 } from '../../projections/migrations/1764400000000-wide-positions';
import type { LedgerConfig } from '../config/config';

export type Dialect = 'sqlite' | 'postgres';

/**
 * The read models' database: PostgreSQL when DATABASE_URL is set, else a SQLite file beside
 * the event store. Schema changes are migrations, run at start (never `synchronize`).
 */
export function readModelDataSource(
  config: Pick<LedgerConfig, 'dataDir' | 'databaseUrl'>,
): DataSource {
  const common = {
    entities: READ_MODEL_ENTITIES,
    migrations: [ReadModels1764300000000, WidePositions1764400000000],
    migrationsRun: true,
    synchronize: false,
    logging: false,
  };
  if (config.databaseUrl) {
    return new DataSource({ type: 'postgres', url: config.databaseUrl, ...common });
  }
  mkdirSync(config.dataDir, { recursive: true });
  return new DataSource({
    type: 'better-sqlite3',
    database: join(config.dataDir, 'read-models.sqlite'),
    // Read models can always be rebuilt from the streams; a batch and its checkpoint still
    // commit together, so NORMAL (not FULL) syncing loses at most work to redo.
    prepareDatabase: (db: { pragma(text: string): unknown }) => {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
    },
    ...common,
  });
}

export const dialectOf = (dataSource: DataSource): Dialect =>
  dataSource.options.type === 'postgres' ? 'postgres' : 'sqlite';

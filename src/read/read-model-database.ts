import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { DataSource } from 'typeorm';
import { READ_MODEL_ENTITIES } from '../../projections/entities';
import { ReadModels1764300000000 } from '../../projections/migrations/1764300000000-read-models';
import { WidePositions1764400000000 } from '../../projections/migrations/1764400000000-wide-positions';
import type { LedgerConfig } from '../config/config';
import { SAFETY_VALVE_PAGES, WalCheckpointer } from '../event-store/sqlite/wal-checkpointer';

export type Dialect = 'sqlite' | 'postgres';

/**
 * The read models' database: PostgreSQL when DATABASE_URL is set, else a SQLite file beside
 * the event store. Schema changes are migrations, run at start (never `synchronize`).
 */
export function readModelDataSource(
  config: Pick<LedgerConfig, 'dataDir' | 'databaseUrl'>,
  { migrate = true }: { migrate?: boolean } = {},
): DataSource {
  const common = {
    entities: READ_MODEL_ENTITIES,
    migrations: [ReadModels1764300000000, WidePositions1764400000000],
    // The read side's own connection opens after the service's has migrated.
    migrationsRun: migrate,
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
      // A multi-row upsert keeps the pages it changes in a statement journal, in case it
      // fails halfway; past 64 KiB SQLite spilled that to a temporary file, with a write
      // for every page and its number: as many system calls as the log itself took.
      db.pragma('temp_store = MEMORY');
    },
    ...common,
  });
}

/**
 * On SQLite, the read models' write-ahead log is copied back by the process's checkpointer
 * thread, not inside a projection's commit: the connection that writes them keeps SQLite's
 * own checkpoint only as a valve (see WalCheckpointer).
 */
export async function raiseCheckpointValve(writer: DataSource): Promise<void> {
  if (dialectOf(writer) === 'sqlite') {
    await writer.query(`PRAGMA wal_autocheckpoint = ${SAFETY_VALVE_PAGES}`);
  }
}

/** Hands the read models' file to the process's checkpointer thread; returns the stop. */
export function checkpointReadModels(dataSource: DataSource): () => Promise<void> {
  if (dialectOf(dataSource) !== 'sqlite') return async () => undefined;
  return WalCheckpointer.register(String(dataSource.options.database));
}

export const dialectOf = (dataSource: DataSource): Dialect =>
  dataSource.options.type === 'postgres' ? 'postgres' : 'sqlite';

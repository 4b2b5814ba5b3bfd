import { join } from 'node:path';
import type { LedgerConfig } from '../config/config';
import type { EventStore, SnapshotStore } from './event-store';

/* eslint-disable @typescript-eslint/no-require-imports -- loaded only when chosen */
const adapters = {
  sqlite: () =>
    require('./sqlite/sqlite-event-store') as typeof import('./sqlite/sqlite-event-store'),
  postgres: () =>
    require('./postgres/postgres-event-store') as typeof import('./postgres/postgres-event-store'),
  eventstoredb: () =>
    require('./eventstoredb/eventstoredb-event-store') as typeof import('./eventstoredb/eventstoredb-event-store'),
};
/* eslint-enable @typescript-eslint/no-require-imports */

/**
 * Opens the event store the config names. The one place that chooses an adapter; usable
 * without NestJS (operator commands, the read side's thread). Only the chosen adapter's
 * code is loaded: each thread that opens a store pays for the
 * modules it loads. A `reader` is a second connection beside the service's own, for the read
 * side: it never appends, so it leaves the file's checks and its write-ahead log to the
 * service's connection.
 */
export async function openEventStore(
  config: LedgerConfig,
  { reader = false }: { reader?: boolean } = {},
): Promise<EventStore & SnapshotStore> {
  switch (config.eventStore) {
    case 'sqlite': {
      const { SqliteEventStore } = adapters.sqlite();
      return new SqliteEventStore(
        join(config.dataDir, 'events.sqlite'),
        reader ? { integrityCheck: false } : { walCheckpoints: 'background', writes: 'thread' },
      );
    }
    case 'postgres': {
      const { PostgresEventStore } = adapters.postgres();
      // loadConfig refuses postgres without DATABASE_URL.
      return PostgresEventStore.open(config.databaseUrl!);
    }
    case 'eventstoredb': {
      const { EventStoreDbEventStore } = adapters.eventstoredb();
      const store = EventStoreDbEventStore.open(config.eventStoreUrl);
      // Fail at start, with the reason, rather than on the first charge.
      await store.ping().catch(async (error: unknown) => {
        await store.close();
        throw new Error(
          `EventStoreDB at ${config.eventStoreUrl} does not answer: ${error instanceof Error ? error.message : String(error)}`,
        );
      });
      return store;
    }
  }
}

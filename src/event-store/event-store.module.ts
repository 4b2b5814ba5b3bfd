import { join } from 'node:path';
import { Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { LEDGER_CONFIG, type LedgerConfig } from '../config/config';
import { EVENT_STORE, type EventStore, SNAPSHOT_STORE, type SnapshotStore } from './event-store';
import { EventStoreDbEventStore } from './eventstoredb/eventstoredb-event-store';
import { PostgresEventStore } from './postgres/postgres-event-store';
import { SqliteEventStore } from './sqlite/sqlite-event-store';

/**
 * Opens the event store the config names. The one place that chooses an adapter; usable
 * without NestJS (operator commands). A `reader` is a second connection beside the service's
 * own, for the read side: it never appends, so it leaves the file's checks and its write-ahead
 * log to the service's connection.
 */
export async function openEventStore(
  config: LedgerConfig,
  { reader = false }: { reader?: boolean } = {},
): Promise<EventStore & SnapshotStore> {
  switch (config.eventStore) {
    case 'sqlite':
      return new SqliteEventStore(
        join(config.dataDir, 'events.sqlite'),
        reader ? { integrityCheck: false } : { walCheckpoints: 'background', writes: 'thread' },
      );
    case 'postgres':
      // loadConfig refuses postgres without DATABASE_URL.
      return PostgresEventStore.open(config.databaseUrl!);
    case 'eventstoredb': {
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

/**
 * Provides EVENT_STORE and SNAPSHOT_STORE to the whole application from LEDGER_CONFIG, and
 * closes the store last on shutdown, after every other provider has stopped using it.
 */
@Global()
@Module({
  providers: [
    {
      provide: EVENT_STORE,
      inject: [LEDGER_CONFIG],
      useFactory: (config: LedgerConfig) => openEventStore(config),
    },
    // Every adapter keeps its snapshots beside its events.
    { provide: SNAPSHOT_STORE, useExisting: EVENT_STORE },
  ],
  exports: [EVENT_STORE, SNAPSHOT_STORE],
})
export class EventStoreModule implements OnApplicationShutdown {
  constructor(@Inject(EVENT_STORE) private readonly eventStore: EventStore) {}

  async onApplicationShutdown(): Promise<void> {
    await this.eventStore.close();
  }
}

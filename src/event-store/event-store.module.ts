import { join } from 'node:path';
import { Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { LEDGER_CONFIG, type LedgerConfig } from '../config/config';
import { EVENT_STORE, type EventStore, SNAPSHOT_STORE, type SnapshotStore } from './event-store';
import { SqliteEventStore } from './sqlite/sqlite-event-store';

/**
 * Opens the event store the config names. The one place that chooses an adapter; usable
 * without NestJS (operator commands).
 */
export function openEventStore(config: LedgerConfig): EventStore & SnapshotStore {
  switch (config.eventStore) {
    case 'sqlite':
      return new SqliteEventStore(join(config.dataDir, 'events.sqlite'));
    case 'postgres':
    case 'eventstoredb':
      throw new Error(`LEDGER_EVENT_STORE=${config.eventStore} is not available in this build yet`);
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
    // The SQLite file holds the snapshots too; other adapters may provide a separate store.
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

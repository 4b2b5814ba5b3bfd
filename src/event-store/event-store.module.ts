import { Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { LEDGER_CONFIG, type LedgerConfig } from '../config/config';
import { EVENT_STORE, type EventStore, SNAPSHOT_STORE } from './event-store';
import { openEventStore } from './open-event-store';

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

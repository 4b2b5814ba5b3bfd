/**
 * A second process for the contract suite's race: started with `fork`, it opens the store
 * described in argv[2] on its own connection and appends on each request from its parent.
 */
import { randomUUID } from 'node:crypto';
import type { EventStore } from '../../src/event-store/event-store';
import { EventStoreDbEventStore } from '../../src/event-store/eventstoredb/eventstoredb-event-store';
import { PostgresEventStore } from '../../src/event-store/postgres/postgres-event-store';
import { SqliteEventStore } from '../../src/event-store/sqlite/sqlite-event-store';

export type StoreLocation =
  | { adapter: 'sqlite'; file: string }
  | { adapter: 'postgres'; url: string }
  | { adapter: 'eventstoredb'; connectionString: string };

export interface RaceRequest {
  streamId: string;
  expected: string;
  tag: string;
  count: number;
}

export type RaceReply =
  { ok: true; revision: string } | { ok: false; name: string; actual: string };

async function openStore(location: StoreLocation): Promise<EventStore> {
  switch (location.adapter) {
    case 'sqlite':
      return new SqliteEventStore(location.file);
    case 'postgres':
      return PostgresEventStore.open(location.url);
    case 'eventstoredb':
      return EventStoreDbEventStore.open(location.connectionString);
  }
}

async function main(): Promise<void> {
  const store = await openStore(JSON.parse(process.argv[2]) as StoreLocation);
  process.on('message', (request: RaceRequest) => {
    const events = Array.from({ length: request.count }, (_, index) => {
      const eventId = randomUUID();
      return {
        eventId,
        type: 'CreditsGranted',
        data: { tag: request.tag, index },
        metadata: {
          eventId,
          occurredAt: new Date().toISOString(),
          actor: { kind: 'service' as const, id: 'racer' },
          correlationId: eventId,
          causationId: eventId,
        },
      };
    });
    void store
      .appendToStream(request.streamId, events, BigInt(request.expected))
      .then(
        (result): RaceReply => ({ ok: true, revision: String(result.nextExpectedRevision) }),
        (error: { name?: string; actual?: unknown }): RaceReply => ({
          ok: false,
          name: String(error.name),
          actual: String(error.actual),
        }),
      )
      .then((reply) => process.send!(reply));
  });
  process.on('disconnect', () => void store.close().finally(() => process.exit(0)));
  process.send!('ready');
}

void main();

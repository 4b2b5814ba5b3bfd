import { setTimeout as delay } from 'node:timers/promises';
import { Client } from 'pg';
import type { RecordedEvent } from '../../src/event-store/event-store';
import { PostgresEventStore } from '../../src/event-store/postgres/postgres-event-store';
import { createTestDatabase } from '../support/postgres';
import { describeEventStoreContract, newEvents, waitFor } from './event-store.contract';

let database: { url: string; drop: () => Promise<void> };

beforeAll(async () => {
  database = await createTestDatabase();
});

afterAll(async () => {
  await database.drop();
});

describeEventStoreContract('PostgresEventStore', () => PostgresEventStore.open(database.url), {
  locate: () => ({ adapter: 'postgres', url: database.url }),
  storedSnapshotParts: async (_store, streamId) => {
    const client = new Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ part_key: string }>(
        'SELECT part_key FROM ledger_snapshot_parts WHERE stream_id = $1',
        [streamId],
      );
      return rows.map((row) => row.part_key);
    } finally {
      await client.end();
    }
  },
});

describe('PostgresEventStore', () => {
  const opened: PostgresEventStore[] = [];
  const open = async (options?: Parameters<typeof PostgresEventStore.open>[1]) => {
    const store = await PostgresEventStore.open(database.url, options);
    opened.push(store);
    return store;
  };

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((store) => store.close()));
  });

  it('never lets a subscriber skip an append that commits after a later one', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let holding = false;
    const slow = await open({
      beforeCommit: async (streamId) => {
        if (!streamId.endsWith('-slow')) return;
        holding = true;
        await held;
      },
    });
    const fast = await open();
    const watcher = await open();
    const ns = `late${Date.now()}`;
    const start = await watcher.headPosition();

    const received: RecordedEvent[] = [];
    watcher.subscribeToAll((event) => void received.push(event), {
      fromPosition: start,
      streamPrefixes: [ns],
    });

    // The first append takes its transaction id, then waits before COMMIT...
    const first = slow.appendToStream(`${ns}-slow`, newEvents(2), 'no_stream');
    await waitFor(() => holding, 'the first append to hold its transaction open');
    // ...while a later one commits.
    const second = await fast.appendToStream(`${ns}-fast`, newEvents(1), 'no_stream');
    await delay(600);
    // Delivering the later event now would move a checkpoint past the one still open.
    expect(received).toEqual([]);
    expect(
      (await fast.readAll({ fromPosition: start })).filter((e) => e.streamId.startsWith(ns)),
    ).toEqual([]);

    release();
    const firstResult = await first;
    expect(firstResult.position < second.position).toBe(true);
    await waitFor(() => received.length >= 3, 'both appends');
    await delay(300);
    expect(received.map((event) => event.streamId)).toEqual([
      `${ns}-slow`,
      `${ns}-slow`,
      `${ns}-fast`,
    ]);
    // The same order for every reader, and each event once.
    const fromScratch = (await watcher.readAll({ fromPosition: start })).filter((event) =>
      event.streamId.startsWith(ns),
    );
    expect(received.map((event) => event.position)).toEqual(
      fromScratch.map((event) => event.position),
    );
  });

  it('wakes a subscriber in another process by NOTIFY, without waiting for the poll', async () => {
    const writer = await open();
    const reader = await open({ pollIntervalMs: 60_000 });
    const ns = `notify${Date.now()}`;
    const received: bigint[] = [];
    let caughtUp = false;
    reader.subscribeToAll((event) => void received.push(event.revision), {
      fromPosition: await reader.headPosition(),
      streamPrefixes: [ns],
      onCaughtUp: () => void (caughtUp = true),
    });
    await waitFor(() => caughtUp, 'the subscription to go live');
    await delay(200); // the LISTEN connection is up
    await writer.appendToStream(`${ns}-a`, newEvents(2), 'no_stream');
    await waitFor(() => received.length === 2, 'the notified events', 5000);
    expect(received).toEqual([0n, 1n]);
  });

  it('keeps positions as bigints beyond 2^53 without rounding', async () => {
    const store = await open();
    const { position } = await store.appendToStream(`big${Date.now()}`, newEvents(3), 'no_stream');
    // Transaction id << 20: already past Number's exact range on any real server.
    const [event] = await store.readAll({ fromPosition: position - 1n });
    expect(event.position).toBe(position);
    expect(event.position.toString()).toBe(String(position));
  });

  it('records its schema version, brings an older database up to it, and refuses a newer one', async () => {
    await open();
    const client = new Client({ connectionString: database.url });
    await client.connect();
    const version = async () =>
      (await client.query('SELECT version FROM ledger_event_store_schema')).rows;
    try {
      expect(await version()).toEqual([{ version: 3 }]);
      // Version 1 notified listeners from the append itself, without the trigger, and its
      // snapshots had no parts.
      await client.query('DROP TRIGGER ledger_events_appended ON ledger_events');
      await client.query('DROP FUNCTION ledger_events_appended()');
      await client.query('DROP TABLE ledger_snapshot_parts');
      await client.query(
        `INSERT INTO ledger_snapshots VALUES ('organization-v1', 9, 10, 1, '{}')
         ON CONFLICT (stream_id) DO NOTHING`,
      );
      await client.query('UPDATE ledger_event_store_schema SET version = 1');
      const upgraded = await PostgresEventStore.open(database.url);
      try {
        expect(await upgraded.loadSnapshot('organization-v1')).toEqual({
          streamId: 'organization-v1',
          revision: 9n,
          position: 10n,
          schemaVersion: 1,
          state: '{}',
          parts: [],
        });
      } finally {
        await upgraded.close();
      }
      expect(await version()).toEqual([{ version: 3 }]);
      const triggers = await client.query(
        `SELECT tgname FROM pg_trigger WHERE tgrelid = 'ledger_events'::regclass AND NOT tgisinternal`,
      );
      expect(triggers.rows).toEqual([{ tgname: 'ledger_events_appended' }]);

      await client.query('UPDATE ledger_event_store_schema SET version = 99');
      await expect(PostgresEventStore.open(database.url)).rejects.toThrow(/schema version 99/);
    } finally {
      await client.query('UPDATE ledger_event_store_schema SET version = 3');
      await client.end();
    }
  });

  it('keeps snapshots per stream, the newest replacing the older', async () => {
    const store = await open();
    expect(await store.loadSnapshot('organization-none')).toBeUndefined();
    const snapshot = {
      streamId: 'organization-snap',
      revision: 9_007_199_254_740_993n,
      position: 2n ** 62n,
      schemaVersion: 3,
      state: '{"a":1}',
      parts: [],
    };
    await store.saveSnapshot(snapshot);
    await store.saveSnapshot({ ...snapshot, revision: snapshot.revision + 1n, state: '{"a":2}' });
    expect(await store.loadSnapshot('organization-snap')).toEqual({
      ...snapshot,
      revision: snapshot.revision + 1n,
      state: '{"a":2}',
    });
  });

  it('fails clearly when the server cannot be reached', async () => {
    await expect(
      PostgresEventStore.open('postgres://postgres@127.0.0.1:1/nothing'),
    ).rejects.toThrow(/ECONNREFUSED/);
  });
});

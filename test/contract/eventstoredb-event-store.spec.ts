import { setTimeout as delay } from 'node:timers/promises';
import { BACKWARDS, END, EventStoreDBClient, jsonEvent } from '@eventstore/db-client';
import { type Snapshot, SnapshotPartsMissingError } from '../../src/event-store/event-store';
import {
  EventStoreDbEventStore,
  toPortPosition,
  toServerPosition,
} from '../../src/event-store/eventstoredb/eventstoredb-event-store';
import { type EventStoreDbDouble, startEventStoreDbDouble } from '../support/eventstoredb-double';
import { describeEventStoreContract, newEvents, waitFor } from './event-store.contract';

/**
 * The contract on a real EventStoreDB when EVENTSTORE_URL is set, else on the protocol-level
 * double (test/support/eventstoredb-double), which the real client talks to over gRPC.
 */
const realServer = process.env.EVENTSTORE_URL;
let double: EventStoreDbDouble | undefined;
let connectionString: string;

beforeAll(async () => {
  if (realServer) {
    connectionString = realServer;
  } else {
    double = await startEventStoreDbDouble();
    connectionString = double.connectionString;
  }
});

afterAll(async () => {
  await double?.stop();
});

describeEventStoreContract(
  `EventStoreDbEventStore (${realServer ? 'EventStoreDB at EVENTSTORE_URL' : 'protocol double'})`,
  async () => EventStoreDbEventStore.open(connectionString),
  { locate: () => ({ adapter: 'eventstoredb', connectionString }), uniqueEventIds: false },
);

describe('EventStoreDbEventStore', () => {
  const opened: EventStoreDbEventStore[] = [];
  const open = () => {
    const store = EventStoreDbEventStore.open(connectionString);
    opened.push(store);
    return store;
  };
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((store) => store.close()));
  });

  it('keeps both halves of a {commit, prepare} position, and their order', () => {
    const positions = [
      { commit: 0n, prepare: 0n },
      { commit: 1n, prepare: 0n },
      { commit: 1n, prepare: 2n ** 64n - 1n },
      { commit: 2n ** 63n + 5n, prepare: 2n ** 63n + 4n },
      { commit: 2n ** 64n - 1n, prepare: 2n ** 64n - 1n },
    ];
    const encoded = positions.map(toPortPosition);
    expect(encoded.map(toServerPosition)).toEqual(positions);
    for (let i = 1; i < encoded.length; i += 1) expect(encoded[i] > encoded[i - 1]).toBe(true);
  });

  // Only the double can be told to drop its subscriptions.
  const onTheDouble = realServer ? () => undefined : it;
  onTheDouble(
    'resubscribes from the last handled event when the server drops the subscription',
    async () => {
      if (double === undefined) throw new Error('the double is not running');
      const store = open();
      const ns = `drop${Date.now()}-`;
      await store.appendToStream(`${ns}a`, newEvents(3), 'no_stream');
      const received: bigint[] = [];
      let caughtUp = 0;
      const subscription = store.subscribeToAll((event) => void received.push(event.revision), {
        streamPrefixes: [ns],
        onCaughtUp: () => void (caughtUp += 1),
      });
      try {
        await waitFor(() => received.length === 3, 'the history');
        expect(await double.dropSubscriptions()).toBeGreaterThanOrEqual(1);
        await store.appendToStream(`${ns}a`, newEvents(2), 2n);
        await waitFor(() => received.length >= 5, 'the events after the drop');
        expect(await double.dropSubscriptions()).toBeGreaterThanOrEqual(1);
        await store.appendToStream(`${ns}a`, newEvents(1), 4n);
        await waitFor(() => received.length >= 6, 'the events after the second drop');
        await delay(100);
        expect(received).toEqual([0n, 1n, 2n, 3n, 4n, 5n]);
        expect(caughtUp).toBe(1);
      } finally {
        await subscription.stop();
      }
    },
  );

  /** A snapshot event written straight to the server, as earlier versions of the adapter did. */
  const saveHeadAsBefore = async (streamId: string, data: Record<string, unknown>) => {
    const client = EventStoreDBClient.connectionString(connectionString);
    try {
      await client.appendToStream(
        `ledger-snapshot-${streamId}`,
        jsonEvent({ type: 'LedgerSnapshot', data }),
      );
    } finally {
      await client.dispose();
    }
  };

  it('keeps the newest snapshot per stream, hidden from readers of all streams', async () => {
    const store = open();
    const streamId = `organization-snap${Date.now()}`;
    const before = await store.headPosition();
    expect(await store.loadSnapshot(streamId)).toBeUndefined();
    const snapshot = {
      streamId,
      revision: 41n,
      position: 2n ** 70n + 3n,
      schemaVersion: 2,
      state: '{"balance":1}',
      parts: [],
    };
    await store.saveSnapshot(snapshot);
    await store.saveSnapshot({ ...snapshot, revision: 42n, state: '{"balance":2}' });
    expect(await store.loadSnapshot(streamId)).toEqual({
      ...snapshot,
      revision: 42n,
      state: '{"balance":2}',
    });
    expect(await store.readAll({ fromPosition: before })).toEqual([]);
    expect(await store.headPosition()).toBe(before);
  });

  it('loads a snapshot event saved before snapshots had parts with no parts', async () => {
    const store = open();
    const streamId = `organization-old${Date.now()}`;
    // As the adapter wrote snapshot events before parts existed.
    await saveHeadAsBefore(streamId, {
      revision: '41',
      position: '7',
      schemaVersion: 2,
      state: '{}',
    });
    expect(await store.loadSnapshot(streamId)).toEqual({
      streamId,
      revision: 41n,
      position: 7n,
      schemaVersion: 2,
      state: '{}',
      parts: [],
    });
    // A later snapshot can keep no part of it, and adds its own.
    await expect(
      store.saveSnapshot({
        streamId,
        revision: 42n,
        position: 8n,
        schemaVersion: 2,
        state: '{}',
        parts: [{ key: 'tier-0' }],
      }),
    ).rejects.toThrow(SnapshotPartsMissingError);
    const next = {
      streamId,
      revision: 42n,
      position: 8n,
      schemaVersion: 2,
      state: '{}',
      parts: [{ key: 'tier-0', text: 'zero' }],
    };
    await store.saveSnapshot(next);
    expect(await store.loadSnapshot(streamId)).toEqual(next);
  });

  it('saves a snapshot whose parts are far over the 1 MiB an append may carry, and keeps them', async () => {
    const store = open();
    const streamId = `organization-large${Date.now()}`;
    // Quotes, escapes, a control character, and text of three UTF-16 units a repeat with a
    // pair of surrogates in it: wherever the text is cut into chunks, some cut splits a pair.
    const textOf = (seed: string, characters: number) =>
      `${seed} "\\\n\u0001 ${'😀é'.repeat(characters / 3)}`.slice(0, characters);
    const large = {
      streamId,
      revision: 499n,
      position: 9n,
      schemaVersion: 7,
      state: '{"head":true}',
      parts: [
        { key: 'tier-0', text: textOf('zero', 2_500_000) },
        { key: 'tier-1', text: textOf('one', 700_000) },
        { key: 'tier-2', text: textOf('two', 700_000) },
        { key: 'tier-3', text: '' },
      ],
    };
    await store.saveSnapshot(large);
    const sorted = (snapshot: Snapshot | undefined) =>
      snapshot && {
        ...snapshot,
        parts: [...snapshot.parts].sort((a, b) => (a.key < b.key ? -1 : 1)),
      };
    expect(sorted(await store.loadSnapshot(streamId))).toEqual(large);

    // The next one keeps three without their text, drops one and adds one.
    const next = {
      ...large,
      revision: 999n,
      parts: [
        { key: 'tier-0' },
        { key: 'tier-2' },
        { key: 'tier-3' },
        { key: 'tier-4', text: textOf('four', 1_200_000) },
      ],
    };
    await store.saveSnapshot(next);
    expect(sorted(await store.loadSnapshot(streamId))).toEqual({
      ...next,
      parts: [large.parts[0], large.parts[2], large.parts[3], next.parts[3]],
    });
    await expect(
      store.saveSnapshot({ ...next, revision: 1499n, parts: [{ key: 'tier-1' }] }),
    ).rejects.toMatchObject({ name: 'SnapshotPartsMissingError', keys: ['tier-1'] });
  });

  it('keeps the parts stream from growing when an old part is kept by every save', async () => {
    const store = open();
    const streamId = `organization-kept${Date.now()}`;
    const saveOf = (i: number): Snapshot => ({
      streamId,
      revision: BigInt(i),
      position: BigInt(i),
      schemaVersion: 7,
      state: `state ${i}`,
      parts: [
        { key: 'old', ...(i === 0 ? { text: 'kept from the first save' } : {}) },
        { key: 'new', text: `part of save ${i}` },
      ],
    });
    // Each save writes one chunk and names two: 199 of 201 chunks are no longer named.
    for (let i = 0; i < 200; i += 1) await store.saveSnapshot(saveOf(i));
    expect((await store.loadSnapshot(streamId))?.parts).toEqual([
      { key: 'old', text: 'kept from the first save' },
      { key: 'new', text: 'part of save 199' },
    ]);
    // What the server must keep: from the oldest chunk the head names to the end (it trims
    // below with $tb). Writing the old part again moved that up; else it would be 200.
    const client = EventStoreDBClient.connectionString(connectionString);
    try {
      const last = async (stream: string) => {
        const events = [];
        for await (const resolved of client.readStream(stream, {
          direction: BACKWARDS,
          fromRevision: END,
          maxCount: 1,
        }))
          events.push(resolved.event!);
        return events[0];
      };
      const head = (await last(`ledger-snapshot-${streamId}`)).data as {
        partRefs: { from: string }[];
      };
      const oldest = Math.min(...head.partRefs.map((ref) => Number(ref.from)));
      const end = Number((await last(`ledger-snapshot-parts/${streamId}`)).revision) + 1;
      expect(end).toBeGreaterThan(200);
      expect(end - oldest).toBeLessThan(80);
      // The server is told to trim below that chunk, and told again only when it moves.
      const parts = `ledger-snapshot-parts/${streamId}`;
      expect((await client.getStreamMetadata(parts)).metadata?.truncateBefore).toBe(oldest);
      let trims = 0;
      for await (const _ of client.readStream(`$$${parts}`, { maxCount: 1000 })) trims += 1;
      expect(trims).toBeGreaterThanOrEqual(2);
      expect(trims).toBeLessThan(10);
    } finally {
      await client.dispose();
    }
  });

  it('keeps a part of a snapshot event that held its parts inline', async () => {
    const store = open();
    const streamId = `organization-inline${Date.now()}`;
    // As the adapter wrote snapshots with parts before they had a stream of their own.
    await saveHeadAsBefore(streamId, {
      revision: '41',
      position: '7',
      schemaVersion: 7,
      state: '{}',
      parts: [
        { key: 'tier-0', text: 'zero' },
        { key: 'tier-1', text: 'one' },
      ],
    });
    expect((await store.loadSnapshot(streamId))?.parts).toEqual([
      { key: 'tier-0', text: 'zero' },
      { key: 'tier-1', text: 'one' },
    ]);
    const next = {
      streamId,
      revision: 42n,
      position: 8n,
      schemaVersion: 7,
      state: '{}',
      parts: [{ key: 'tier-1' }, { key: 'tier-2', text: 'two' }],
    };
    await store.saveSnapshot(next);
    expect(await store.loadSnapshot(streamId)).toEqual({
      ...next,
      parts: [
        { key: 'tier-1', text: 'one' },
        { key: 'tier-2', text: 'two' },
      ],
    });
  });
});

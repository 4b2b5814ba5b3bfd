// The EventStoreDB double's self-check, driven by the real EventStoreDBClient.
import { randomUUID } from 'node:crypto';
import {
  BACKWARDS,
  END,
  EventStoreDBClient,
  FORWARDS,
  jsonEvent,
  NO_STREAM,
  type Position,
  type ResolvedEvent,
  START,
  StreamNotFoundError,
  streamNameFilter,
  WrongExpectedVersionError,
} from '@eventstore/db-client';
import { type EventStoreDbDouble, startEventStoreDbDouble } from '../support/eventstoredb-double';

let double: EventStoreDbDouble;
let client: EventStoreDBClient;

beforeAll(async () => {
  double = await startEventStoreDbDouble();
  client = EventStoreDBClient.connectionString(double.connectionString);
});

afterAll(async () => {
  await client?.dispose();
  await double?.stop();
});

const charge = (amount: number, id: string = randomUUID()) =>
  jsonEvent({ id, type: 'CreditsCharged', data: { amount } });
const newStream = (prefix = 'organization') => `${prefix}-${randomUUID()}`;

async function collect(events: AsyncIterable<ResolvedEvent>) {
  const out: ResolvedEvent[] = [];
  for await (const resolved of events) out.push(resolved);
  return out;
}
const revisions = (events: ResolvedEvent[]) => events.map((e) => e.event!.revision);

async function until(condition: () => boolean, what: string, ms = 5_000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('EventStoreDB double', () => {
  it('appends with NO_STREAM once, then reports the stream as existing', async () => {
    const stream = newStream();
    const first = await client.appendToStream(stream, [charge(1), charge(2)], {
      expectedRevision: NO_STREAM,
    });
    expect(first.success).toBe(true);
    expect(first.nextExpectedRevision).toBe(1n);
    expect(first.position!.commit).toBe(first.position!.prepare);

    const error: unknown = await client
      .appendToStream(stream, charge(3), { expectedRevision: NO_STREAM })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WrongExpectedVersionError);
    expect(error).toMatchObject({
      streamName: stream,
      actualVersion: 1n,
      expectedVersion: NO_STREAM,
    });
  });

  it('appends at an exact revision and rejects a stale one with the actual revision', async () => {
    const stream = newStream();
    await client.appendToStream(stream, charge(1), { expectedRevision: NO_STREAM });
    const next = await client.appendToStream(stream, charge(2), { expectedRevision: 0n });
    expect(next.nextExpectedRevision).toBe(1n);

    const error: unknown = await client
      .appendToStream(stream, charge(3), { expectedRevision: 0n })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WrongExpectedVersionError);
    expect(error).toMatchObject({ actualVersion: 1n, expectedVersion: 0n });

    const ahead: unknown = await client
      .appendToStream(newStream(), charge(1), { expectedRevision: 4n })
      .catch((e: unknown) => e);
    expect(ahead).toMatchObject({ actualVersion: NO_STREAM, expectedVersion: 4n });
  });

  it('gives strictly increasing, non-consecutive positions across streams', async () => {
    const a = await client.appendToStream(newStream(), charge(1));
    const b = await client.appendToStream(newStream(), charge(2));
    expect(b.position!.commit).toBeGreaterThan(a.position!.commit + 1n);
  });

  it('reads a stream forwards, backwards, from a revision and with a max count', async () => {
    const stream = newStream();
    const written = [0, 1, 2, 3, 4].map((n) => charge(n));
    await client.appendToStream(stream, written, { expectedRevision: NO_STREAM });

    const forwards = await collect(client.readStream(stream));
    expect(revisions(forwards)).toEqual([0n, 1n, 2n, 3n, 4n]);
    expect(forwards.map((e) => e.event!.id)).toEqual(written.map((e) => e.id));
    expect(forwards[2].event).toMatchObject({
      streamId: stream,
      type: 'CreditsCharged',
      data: { amount: 2 },
      isJson: true,
    });
    expect(Math.abs(forwards[0].event!.created.getTime() - Date.now())).toBeLessThan(60_000);

    const backwards = await collect(
      client.readStream(stream, { direction: BACKWARDS, fromRevision: END }),
    );
    expect(revisions(backwards)).toEqual([4n, 3n, 2n, 1n, 0n]);
    const page = await collect(client.readStream(stream, { fromRevision: 1n, maxCount: 2 }));
    expect(revisions(page)).toEqual([1n, 2n]);
    const before = await collect(
      client.readStream(stream, { direction: BACKWARDS, fromRevision: 3n, maxCount: 2 }),
    );
    expect(revisions(before)).toEqual([3n, 2n]);
    expect(await collect(client.readStream(stream, { fromRevision: END }))).toEqual([]);
  });

  it('throws StreamNotFoundError when reading a missing stream', async () => {
    await expect(collect(client.readStream(newStream()))).rejects.toThrow(StreamNotFoundError);
  });

  it('reads $all forwards from a position, inclusive of the event at it', async () => {
    const stream = newStream('readall');
    await client.appendToStream(stream, [charge(1), charge(2), charge(3)]);
    const [first] = await collect(client.readStream(stream, { maxCount: 1 }));
    const from = first.event!.position!;

    const events = await collect(client.readAll({ fromPosition: from, direction: FORWARDS }));
    const mine = events.filter((e) => e.event!.streamId === stream);
    expect(revisions(mine)).toEqual([0n, 1n, 2n]);
    const positions = events.map((e) => e.event!.position!.commit);
    expect(positions[0]).toBe(from.commit);
    expect(positions).toEqual([...positions].sort((x, y) => (x < y ? -1 : 1)));

    const last = await collect(
      client.readAll({ fromPosition: END, direction: BACKWARDS, maxCount: 1 }),
    );
    expect(last[0].event!.id).toBe(mine[2].event!.id);
  });

  it('treats a retry of the same events at the same expected revision as already written', async () => {
    const stream = newStream();
    await client.appendToStream(stream, charge(0), { expectedRevision: NO_STREAM });
    const batch = [charge(1), charge(2)];
    const first = await client.appendToStream(stream, batch, { expectedRevision: 0n });
    const retry = await client.appendToStream(stream, batch, { expectedRevision: 0n });
    expect(retry).toEqual(first);
    expect(revisions(await collect(client.readStream(stream)))).toEqual([0n, 1n, 2n]);

    // Only part of the batch matching is not a retry.
    await expect(
      client.appendToStream(stream, [batch[0], charge(3)], { expectedRevision: 0n }),
    ).rejects.toThrow(WrongExpectedVersionError);
  });

  it('subscribes to $all with a prefix filter: catch-up, caught up, live, no repeats', async () => {
    const prefix = `sub${randomUUID().slice(0, 8)}-`;
    const ours = `${prefix}a`;
    await client.appendToStream(ours, [charge(1), charge(2)], { expectedRevision: NO_STREAM });
    const [from] = await collect(client.readStream(ours, { maxCount: 1 }));
    await client.appendToStream(newStream('other'), charge(99));

    const received: ResolvedEvent[] = [];
    const checkpoints: Position[] = [];
    let caughtUpAfter = -1;
    const subscription = client.subscribeToAll({
      fromPosition: from.event!.position!,
      filter: streamNameFilter({
        prefixes: [prefix],
        maxSearchWindow: 1,
        checkpointInterval: 1,
        checkpointReached: (_s, position) => {
          checkpoints.push(position);
        },
      }),
    });
    subscription.on('data', (e: ResolvedEvent) => received.push(e));
    subscription.on('caughtUp', () => (caughtUpAfter = received.length));
    try {
      await until(() => caughtUpAfter >= 0, 'caught up');
      // Exclusive of the start position: revision 0 is not delivered again.
      expect(revisions(received)).toEqual([1n]);
      expect(caughtUpAfter).toBe(1);

      await client.appendToStream(newStream('other'), charge(98));
      await client.appendToStream(ours, charge(3), { expectedRevision: 1n });
      await client.appendToStream(`${prefix}b`, charge(4));
      await until(() => received.length === 3, 'live events');
      expect(received.map((e) => e.event!.streamId)).toEqual([ours, ours, `${prefix}b`]);
      expect(revisions(received)).toEqual([1n, 2n, 0n]);
      // Every considered event (matching or not) reaches the checkpoint interval of 1.
      await until(() => checkpoints.length >= 5, 'checkpoints');
      const commits = checkpoints.map((c) => c.commit);
      expect(commits).toEqual([...commits].sort((x, y) => (x < y ? -1 : 1)));
      expect(commits).toContain(received[2].event!.position!.commit);
    } finally {
      await subscription.unsubscribe();
    }
  });

  it('subscribes to a stream after a revision', async () => {
    const stream = newStream();
    await client.appendToStream(stream, [charge(1), charge(2)]);
    const received: ResolvedEvent[] = [];
    const subscription = client.subscribeToStream(stream, { fromRevision: 0n });
    subscription.on('data', (e: ResolvedEvent) => received.push(e));
    try {
      await client.appendToStream(stream, charge(3));
      await until(() => received.length === 2, 'stream events');
      expect(revisions(received)).toEqual([1n, 2n]);
    } finally {
      await subscription.unsubscribe();
    }
  });

  it('drops live subscriptions on request, and the client sees an error', async () => {
    const subscription = client.subscribeToAll({ fromPosition: START });
    const errors: unknown[] = [];
    let caughtUp = false;
    subscription.on('error', (error) => errors.push(error));
    subscription.on('caughtUp', () => (caughtUp = true));
    subscription.on('data', () => undefined);
    await until(() => caughtUp, 'caught up');

    expect(await double.dropSubscriptions()).toBe(1);
    await until(() => errors.length > 0, 'the dropped subscription to fail');
    expect(errors[0]).toMatchObject({ type: 'unavailable' });
    expect(await double.dropSubscriptions()).toBe(0);

    // The server is still there: subscribing again catches up and goes live.
    const again = client.subscribeToAll({ fromPosition: START });
    let liveAgain = false;
    again.on('caughtUp', () => (liveAgain = true));
    again.on('data', () => undefined);
    try {
      await until(() => liveAgain, 'the new subscription to catch up');
    } finally {
      await again.unsubscribe();
    }
  });
});

import { type ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { setTimeout as delay, setImmediate as nextTurn } from 'node:timers/promises';
import {
  type EventStore,
  type NewEvent,
  NO_REVISION,
  type RecordedEvent,
  type Snapshot,
  type SnapshotPart,
  SnapshotPartsMissingError,
  type SnapshotStore,
  type SubscribeOptions,
  type Subscription,
  WrongExpectedRevisionError,
} from '../../src/event-store/event-store';
import type { RaceReply, RaceRequest, StoreLocation } from '../support/append-racer';
import { compileForChild, type CompiledTree } from '../support/compile-for-child';

/**
 * The behaviour every event-store adapter must have. Each test works in its own stream-name
 * namespace and compares against what it wrote, so the suite also runs against a store shared
 * with other tests (a PostgreSQL database, an EventStoreDB node).
 */
export type ContractStore = EventStore & SnapshotStore;

export function newEvent(type = 'CreditsGranted', data: unknown = { amount: 1 }): NewEvent {
  const eventId = randomUUID();
  return {
    eventId,
    type,
    data,
    metadata: {
      eventId,
      occurredAt: new Date().toISOString(),
      actor: { kind: 'service', id: 'contract-test' },
      correlationId: eventId,
      causationId: eventId,
    },
  };
}

export function newEvents(count: number, type = 'CreditsGranted'): NewEvent[] {
  return Array.from({ length: count }, (_, index) => newEvent(type, { index }));
}

/** Polls until `condition` holds, failing with `what` after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject, but it resolved');
}

export interface ContractOptions {
  cleanup?: (store: ContractStore) => Promise<void>;
  /** Where other processes find the same store, for the race between processes. */
  locate: (store: ContractStore) => StoreLocation;
  /**
   * Whether an event id may appear only once in the whole store (SQLite, PostgreSQL).
   * EventStoreDB only makes a retried append idempotent; ids are unique per stream there.
   */
  uniqueEventIds?: boolean;
  /**
   * The keys of the parts stored for a stream, read from the store's own tables, where it
   * keeps parts apart from the snapshot (SQLite, PostgreSQL): dropped parts must not stay.
   */
  storedSnapshotParts?: (store: ContractStore, streamId: string) => Promise<string[]>;
}

export function describeEventStoreContract(
  name: string,
  makeStore: () => Promise<ContractStore>,
  {
    cleanup = (store) => store.close(),
    locate,
    uniqueEventIds = true,
    storedSnapshotParts,
  }: ContractOptions,
): void {
  describe(`${name}: event store contract`, () => {
    let store: ContractStore;
    /** Prefix of every stream this test writes. */
    let ns: string;
    let subscriptions: Subscription[];

    beforeEach(async () => {
      store = await makeStore();
      ns = `contract${randomUUID().replaceAll('-', '').slice(0, 12)}-`;
      subscriptions = [];
    });

    afterEach(async () => {
      await Promise.all(subscriptions.map((subscription) => subscription.stop()));
      await cleanup(store);
    });

    const append = (stream: string, events: NewEvent[], expected: 'no_stream' | 'any' | bigint) =>
      store.appendToStream(ns + stream, events, expected);

    const mine = (event: RecordedEvent) => event.streamId.startsWith(ns);

    /** Everything this test wrote after `fromPosition`, in global order. */
    const readMine = async (fromPosition = 0n) =>
      (await store.readAll({ fromPosition })).filter(mine);

    const subscribe = (
      handler: (event: RecordedEvent) => void | Promise<void>,
      options: SubscribeOptions = {},
    ) => {
      const subscription = store.subscribeToAll(handler, options);
      subscriptions.push(subscription);
      return subscription;
    };

    describe('appendToStream', () => {
      it('creates a stream with no_stream; a second no_stream append conflicts with the actual revision', async () => {
        const first = await append('org', newEvents(1), 'no_stream');
        expect(first.nextExpectedRevision).toBe(0n);

        const error = await rejectionOf(append('org', newEvents(1), 'no_stream'));
        expect(error).toBeInstanceOf(WrongExpectedRevisionError);
        expect(error).toMatchObject({ streamId: ns + 'org', expected: 'no_stream', actual: 0n });
        expect(await store.readStream(ns + 'org')).toHaveLength(1);
      });

      it('rejects a wrong expected revision with the actual revision, writing nothing', async () => {
        await append('org', newEvents(3), 'no_stream');
        const headBefore = await store.headPosition();

        const error = await rejectionOf(append('org', newEvents(2), 1n));
        expect(error).toBeInstanceOf(WrongExpectedRevisionError);
        expect(error).toMatchObject({ streamId: ns + 'org', expected: 1n, actual: 2n });

        expect(await store.readStream(ns + 'org')).toHaveLength(3);
        expect(await store.headPosition()).toBe(headBefore);
      });

      it('an expected revision on a missing stream conflicts with NO_REVISION', async () => {
        const error = await rejectionOf(append('missing', newEvents(1), 0n));
        expect(error).toBeInstanceOf(WrongExpectedRevisionError);
        expect((error as WrongExpectedRevisionError).actual).toBe(NO_REVISION);
        expect(await store.readStream(ns + 'missing')).toEqual([]);
      });

      it('appends after the correct expected revision and reports revision and position', async () => {
        const first = await append('org', newEvents(2), 'no_stream');
        expect(first.nextExpectedRevision).toBe(1n);

        const second = await append('org', newEvents(3), first.nextExpectedRevision);
        expect(second.nextExpectedRevision).toBe(4n);
        expect(second.position > first.position).toBe(true);

        const events = await store.readStream(ns + 'org');
        expect(events.map((event) => event.revision)).toEqual([0n, 1n, 2n, 3n, 4n]);
        expect(events[1].position).toBe(first.position);
        expect(events[4].position).toBe(second.position);
      });

      it("'any' appends to a new and to an existing stream", async () => {
        expect((await append('org', newEvents(1), 'any')).nextExpectedRevision).toBe(0n);
        expect((await append('org', newEvents(2), 'any')).nextExpectedRevision).toBe(2n);
        expect(await store.readStream(ns + 'org')).toHaveLength(3);
      });

      it('appending no events checks the expectation and writes nothing', async () => {
        const onMissing = await append('org', [], 'no_stream');
        expect(onMissing.nextExpectedRevision).toBe(NO_REVISION);
        expect(await store.readStream(ns + 'org')).toEqual([]);

        const written = await append('org', newEvents(2), 'no_stream');
        const headBefore = await store.headPosition();
        const onExisting = await append('org', [], 1n);
        expect(onExisting.nextExpectedRevision).toBe(1n);
        expect(typeof onExisting.position).toBe('bigint');
        expect(onExisting.position >= written.position).toBe(true);
        expect(onExisting.position <= (await store.headPosition())).toBe(true);

        const error = await rejectionOf(append('org', [], 5n));
        expect(error).toMatchObject({ name: 'WrongExpectedRevisionError', actual: 1n });
        expect(await rejectionOf(append('org', [], 'no_stream'))).toBeInstanceOf(
          WrongExpectedRevisionError,
        );
        expect(await store.readStream(ns + 'org')).toHaveLength(2);
        expect(await store.headPosition()).toBe(headBefore);
      });

      it('never writes a retried append twice', async () => {
        const batch = newEvents(3);
        const first = await append('org', batch, 'no_stream');
        // The retry either repeats the answer (idempotent) or is refused; it never writes.
        const retry = await append('org', batch, 'no_stream').catch((error: unknown) => error);
        if (retry instanceof Error) {
          expect(retry).not.toBeInstanceOf(TypeError);
        } else {
          expect(retry).toEqual(first);
        }
        const events = await store.readStream(ns + 'org');
        expect(events.map((event) => event.eventId)).toEqual(batch.map((event) => event.eventId));
      });

      const ifUniqueIds = uniqueEventIds ? it : () => undefined;
      ifUniqueIds('rejects a duplicate eventId and writes nothing of that append', async () => {
        const original = newEvent();
        await append('first', [original], 'no_stream');
        const headBefore = await store.headPosition();

        const innocent = newEvent();
        const copy: NewEvent = { ...newEvent(), eventId: original.eventId };
        const error = await rejectionOf(append('second', [innocent, copy], 'no_stream'));
        expect(error).toBeInstanceOf(Error);
        expect(error).not.toBeInstanceOf(WrongExpectedRevisionError);

        const twice = newEvent();
        const sameBatch = await rejectionOf(append('third', [twice, twice], 'no_stream'));
        expect(sameBatch).toBeInstanceOf(Error);
        expect(sameBatch).not.toBeInstanceOf(WrongExpectedRevisionError);

        expect(await store.readStream(ns + 'second')).toEqual([]);
        expect(await store.readStream(ns + 'third')).toEqual([]);
        expect(await store.headPosition()).toBe(headBefore);
        const all = await readMine();
        expect(all.map((event) => event.eventId)).toEqual([original.eventId]);
        // The failed appends left no stream behind: no_stream still holds.
        expect((await append('second', [innocent], 'no_stream')).nextExpectedRevision).toBe(0n);
      });
    });

    describe('readStream', () => {
      let written: NewEvent[];
      beforeEach(async () => {
        written = [newEvent('OrganizationCreated', { name: 'Acme', nested: { list: [1, 'x'] } })];
        written.push(...newEvents(4, 'CreditsGranted'));
        await append('org', written.slice(0, 2), 'no_stream');
        await append('other', newEvents(2), 'no_stream');
        await append('org', written.slice(2), 1n);
      });

      it('reads forwards everything that was appended, as it was appended', async () => {
        const events = await store.readStream(ns + 'org');
        expect(events.map((event) => event.revision)).toEqual([0n, 1n, 2n, 3n, 4n]);
        events.forEach((event, index) => {
          expect(event).toMatchObject({
            eventId: written[index].eventId,
            type: written[index].type,
            streamId: ns + 'org',
            data: written[index].data,
            metadata: written[index].metadata,
          });
          expect(typeof event.position).toBe('bigint');
        });
        for (let i = 1; i < events.length; i += 1) {
          expect(events[i].position > events[i - 1].position).toBe(true);
        }
      });

      it('reads backwards from the last event', async () => {
        const events = await store.readStream(ns + 'org', { direction: 'backwards' });
        expect(events.map((event) => event.revision)).toEqual([4n, 3n, 2n, 1n, 0n]);
        expect(events.map((event) => event.eventId)).toEqual(
          [...written].reverse().map((event) => event.eventId),
        );
      });

      it('reads from a revision, inclusive, in both directions', async () => {
        const forwards = await store.readStream(ns + 'org', { fromRevision: 2n });
        expect(forwards.map((event) => event.revision)).toEqual([2n, 3n, 4n]);
        const backwards = await store.readStream(ns + 'org', {
          direction: 'backwards',
          fromRevision: 2n,
        });
        expect(backwards.map((event) => event.revision)).toEqual([2n, 1n, 0n]);
      });

      it('reads at most maxCount events', async () => {
        const forwards = await store.readStream(ns + 'org', { fromRevision: 1n, maxCount: 2 });
        expect(forwards.map((event) => event.revision)).toEqual([1n, 2n]);
        const last = await store.readStream(ns + 'org', { direction: 'backwards', maxCount: 1 });
        expect(last.map((event) => event.revision)).toEqual([4n]);
      });

      it('reads nothing past the end, and nothing of a missing stream', async () => {
        expect(await store.readStream(ns + 'org', { fromRevision: 5n })).toEqual([]);
        expect(await store.readStream(ns + 'nobody')).toEqual([]);
        expect(await store.readStream(ns + 'nobody', { direction: 'backwards' })).toEqual([]);
      });
    });

    describe('readAll and positions', () => {
      it('reads all streams in global (append) order with strictly increasing bigint positions', async () => {
        const start = await store.headPosition();
        const order: string[] = [];
        const results: bigint[] = [];
        for (let i = 0; i < 6; i += 1) {
          const batch = newEvents(1 + (i % 3));
          const stream = ['a', 'b', 'c'][i % 3];
          results.push((await append(stream, batch, 'any')).position);
          order.push(...batch.map((event) => event.eventId));
        }

        const events = await readMine(start);
        expect(events.map((event) => event.eventId)).toEqual(order);
        for (const event of events) expect(typeof event.position).toBe('bigint');
        for (let i = 1; i < events.length; i += 1) {
          expect(events[i].position > events[i - 1].position).toBe(true);
        }
        // Each append reports exactly the position of its last event.
        const lastOfEachAppend = [1, 3, 6, 7, 9, 12].map((count) => events[count - 1].position);
        expect(results).toEqual(lastOfEachAppend);
        expect(await store.headPosition()).toBe(results[results.length - 1]);
      });

      it('reads strictly after fromPosition, and at most maxCount', async () => {
        await append('a', newEvents(5), 'no_stream');
        const all = await readMine();
        const from = all[1].position;

        const after = await store.readAll({ fromPosition: from });
        expect(after.filter(mine).map((event) => event.position)).toEqual(
          all.slice(2).map((event) => event.position),
        );
        const page = await store.readAll({ fromPosition: from, maxCount: 2 });
        expect(page.map((event) => event.position)).toEqual(
          all.slice(2, 4).map((event) => event.position),
        );
        expect(await store.readAll({ fromPosition: await store.headPosition() })).toEqual([]);
      });
    });

    describe('subscribeToAll', () => {
      it('resumes strictly after a checkpoint, then delivers live events', async () => {
        await append('org', newEvents(5), 'no_stream');
        const history = await readMine();
        const checkpoint = history[2].position;

        const received: bigint[] = [];
        subscribe((event) => void received.push(event.position), {
          fromPosition: checkpoint,
          streamPrefixes: [ns],
        });
        await waitFor(() => received.length === 2, 'the events after the checkpoint');
        await append('org', newEvents(2), 4n);

        const expected = (await readMine(checkpoint)).map((event) => event.position);
        expect(expected).toHaveLength(4);
        await waitFor(() => received.length >= 4, 'the live events');
        await delay(50);
        expect(received).toEqual(expected);
      });

      it('delivers only the event types asked for, in order, through the history and live', async () => {
        const start = await store.headPosition();
        // Rare types among many others, as the follow-ups see a ledger's history.
        await append(
          'org',
          [...newEvents(30, 'CharmRunCharged'), ...newEvents(1, 'MemberAdded')],
          'no_stream',
        );
        await append('other', newEvents(2, 'MemberRemoved'), 'no_stream');
        await append('org', newEvents(40, 'CharmRunCharged'), 30n);
        const expected = (await readMine(start))
          .filter((event) => event.type !== 'CharmRunCharged')
          .map((event) => `${event.type} ${event.position}`);
        expect(expected).toHaveLength(3);

        const seen: string[] = [];
        subscribe((event) => void seen.push(`${event.type} ${event.position}`), {
          fromPosition: start,
          streamPrefixes: [ns],
          eventTypes: ['MemberAdded', 'MemberRemoved'],
          onCaughtUp: () => void seen.push('caught up'),
        });
        await waitFor(() => seen.includes('caught up'), 'onCaughtUp');
        expect(seen).toEqual([...expected, 'caught up']);

        // Live: other types in between are passed over, the wanted ones arrive in order.
        await append('org', newEvents(5, 'CharmRunCharged'), 70n);
        const { position } = await append('org', newEvents(1, 'MemberAdded'), 75n);
        await waitFor(() => seen.length === 5, 'the live event');
        await delay(50);
        expect(seen).toEqual([...expected, 'caught up', `MemberAdded ${position}`]);
      });

      it('calls onCaughtUp once, after the history and before live events', async () => {
        const start = await store.headPosition();
        await append('org', newEvents(3), 'no_stream');
        const seen: string[] = [];
        subscribe((event) => void seen.push(`event ${event.revision}`), {
          fromPosition: start,
          streamPrefixes: [ns],
          onCaughtUp: () => void seen.push('caught up'),
        });
        await waitFor(() => seen.includes('caught up'), 'onCaughtUp');
        await append('org', newEvents(1), 2n);
        await waitFor(() => seen.length === 5, 'the live event');
        await delay(50);
        expect(seen).toEqual(['event 0', 'event 1', 'event 2', 'caught up', 'event 3']);
      });

      it('catches up and goes live with no gap and no repeat at the seam', async () => {
        const start = await store.headPosition();
        for (let i = 0; i < 6; i += 1) await append(`s${i % 3}`, newEvents(50), 'any');

        const received: bigint[] = [];
        let caughtUp = 0;
        subscribe(
          async (event) => {
            if (mine(event)) received.push(event.position);
            // Slow enough that the writer below appends while the history is being read.
            await nextTurn();
          },
          { fromPosition: start, onCaughtUp: () => void (caughtUp += 1) },
        );
        for (let i = 0; i < 60; i += 1) {
          await append(`s${i % 3}`, newEvents(5), 'any');
          await nextTurn();
        }
        await waitFor(() => caughtUp === 1, 'onCaughtUp');
        for (let i = 0; i < 20; i += 1) {
          await append(`s${i % 3}`, newEvents(1 + (i % 4)), 'any');
          if (i % 5 === 0) await delay(1);
        }

        const expected = (await readMine(start)).map((event) => event.position);
        expect(expected).toHaveLength(300 + 300 + 50);
        await waitFor(() => received.length >= expected.length, 'every event');
        await delay(50);
        expect(received).toEqual(expected);
        expect(caughtUp).toBe(1);
      });

      it('never runs the handler concurrently', async () => {
        await append('org', newEvents(20), 'no_stream');
        let active = 0;
        let mostActive = 0;
        let handled = 0;
        subscribe(
          async () => {
            active += 1;
            mostActive = Math.max(mostActive, active);
            await delay(handled % 3);
            active -= 1;
            handled += 1;
          },
          { streamPrefixes: [ns] },
        );
        let revision = 19n;
        for (let i = 0; i < 10; i += 1) {
          revision = (await append('org', newEvents(3), revision)).nextExpectedRevision;
          await delay(1);
        }
        await waitFor(() => handled === 50, 'every event');
        expect(mostActive).toBe(1);
      });

      it('delivers only the streams with the given prefixes', async () => {
        const start = await store.headPosition();
        await append('alpha-1', newEvents(2), 'no_stream');
        await append('beta-1', newEvents(2), 'no_stream');
        await append('alpha-2', newEvents(1), 'no_stream');
        await append('gamma-1', newEvents(1), 'no_stream');

        const received: RecordedEvent[] = [];
        subscribe((event) => void received.push(event), {
          fromPosition: start,
          streamPrefixes: [ns + 'alpha-', ns + 'gamma-'],
        });
        await waitFor(() => received.length === 4, 'the history of alpha and gamma');
        await append('beta-1', newEvents(3), 1n);
        await append('alpha-1', newEvents(1), 1n);
        await waitFor(() => received.length >= 5, 'the live alpha event');
        await delay(50);

        const expected = (await readMine(start)).filter(
          (event) =>
            event.streamId.startsWith(ns + 'alpha-') || event.streamId.startsWith(ns + 'gamma-'),
        );
        expect(received.map((event) => event.position)).toEqual(
          expected.map((event) => event.position),
        );
        expect(received.map((event) => event.streamId)).toEqual([
          ns + 'alpha-1',
          ns + 'alpha-1',
          ns + 'alpha-2',
          ns + 'gamma-1',
          ns + 'alpha-1',
        ]);
      });

      it('stop() waits for the handler in progress, and nothing is delivered after it', async () => {
        await append('org', newEvents(2), 'no_stream');
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        const received: bigint[] = [];
        let finished = 0;
        const subscription = subscribe(
          async (event) => {
            received.push(event.revision);
            await gate;
            finished += 1;
          },
          { streamPrefixes: [ns] },
        );
        await waitFor(() => received.length === 1, 'the first event');

        let stopped = false;
        const stopping = subscription.stop().then(() => (stopped = true));
        await delay(30);
        expect(stopped).toBe(false);
        release();
        await stopping;
        expect(finished).toBe(1);

        await append('org', newEvents(1), 1n);
        await delay(100);
        expect(received).toEqual([0n]);
        await subscription.stop();
      });

      it('stop() called from inside the handler ends delivery without deadlock', async () => {
        await append('org', newEvents(3), 'no_stream');
        const received: bigint[] = [];
        let stopReturned = false;
        const subscription: Subscription = subscribe(
          async (event) => {
            received.push(event.revision);
            await subscription.stop();
            stopReturned = true;
          },
          { streamPrefixes: [ns] },
        );
        await waitFor(() => stopReturned, 'stop() inside the handler to return');
        await subscription.stop();
        await delay(50);
        expect(received).toEqual([0n]);
      });

      it('stop() awaited inside the handler after an await of its own still returns', async () => {
        await append('org', newEvents(1), 'no_stream');
        const received: bigint[] = [];
        let stopReturned = false;
        const subscription: Subscription = subscribe(
          async (event) => {
            received.push(event.revision);
            if (event.revision === 0n) return;
            await delay(1);
            await subscription.stop();
            stopReturned = true;
          },
          { streamPrefixes: [ns] },
        );
        await waitFor(() => received.length === 1, 'the first event');
        await append('org', newEvents(2), 0n);
        await waitFor(() => stopReturned, 'stop() inside the handler to return');
        await subscription.stop();
        await delay(50);
        expect(received).toEqual([0n, 1n]);
      });

      it('reports a failing handler through onError, stops, and skips nothing', async () => {
        await append('org', newEvents(3), 'no_stream');
        const boom = new Error('projection failed');
        const received: bigint[] = [];
        const errors: unknown[] = [];
        subscribe(
          (event) => {
            received.push(event.revision);
            if (event.revision === 1n) throw boom;
          },
          { streamPrefixes: [ns], onError: (error) => errors.push(error) },
        );
        await waitFor(() => errors.length === 1, 'onError');
        expect(errors[0]).toBe(boom);
        await append('org', newEvents(1), 2n);
        await delay(100);
        expect(received).toEqual([0n, 1n]);

        // A new subscription from the last checkpoint gets the failed event again.
        const checkpoint = (await store.readStream(ns + 'org'))[0].position;
        const retried: bigint[] = [];
        subscribe((event) => void retried.push(event.revision), {
          fromPosition: checkpoint,
          streamPrefixes: [ns],
        });
        await waitFor(() => retried.length === 3, 'the redelivery');
        expect(retried).toEqual([1n, 2n, 3n]);
      });
    });

    describe('snapshots', () => {
      const snapshotOf = (stream: string, revision: bigint, parts: SnapshotPart[]): Snapshot => ({
        streamId: ns + stream,
        revision,
        // Past 2^53, so that a position that went through a number would show.
        position: 2n ** 62n + revision,
        schemaVersion: 1,
        state: JSON.stringify({ revision: revision.toString() }),
        parts,
      });

      /** The stored snapshot, its parts in key order: the port promises no order of parts. */
      const load = async (stream: string) => {
        const loaded = await store.loadSnapshot(ns + stream);
        if (loaded === undefined) return undefined;
        const parts = [...loaded.parts].sort((a, b) => (a.key < b.key ? -1 : 1));
        return { ...loaded, parts };
      };

      /** What the store keeps of the stream's parts, where it can be looked at. */
      const expectStoredParts = async (stream: string, keys: string[]) => {
        if (storedSnapshotParts === undefined) return;
        expect((await storedSnapshotParts(store, ns + stream)).sort()).toEqual(keys);
      };

      it('saves a snapshot with its parts and loads every part with its text', async () => {
        expect(await store.loadSnapshot(ns + 'org')).toBeUndefined();
        const saved = snapshotOf('org', 99n, [
          { key: 'tier-0', text: '[{"run":1},{"run":2}]' },
          { key: 'tier-1', text: `"quoted", ünïcode \\ and a long tail ${'x'.repeat(100_000)}` },
        ]);
        await store.saveSnapshot(saved);
        expect(await load('org')).toEqual(saved);

        // A snapshot without parts loads with none.
        const bare = snapshotOf('bare', 5n, []);
        await store.saveSnapshot(bare);
        expect(await store.loadSnapshot(ns + 'bare')).toEqual(bare);
      });

      it('saves a part of megabytes exactly, characters of two UTF-16 units included, and keeps it without its text', async () => {
        // 3,000,000 UTF-16 units, a surrogate pair every third: a store that cuts a long text
        // (SQLite into pieces, EventStoreDB into chunks) meets one at most of its cuts.
        const long = `${'a😀'.repeat(1_000_000)}ends here`;
        const first = snapshotOf('org', 99n, [
          { key: 'tier-0', text: long },
          { key: 'tier-1', text: 'short' },
        ]);
        await store.saveSnapshot(first);
        expect(await load('org')).toEqual(first);

        const second = snapshotOf('org', 199n, [
          { key: 'tier-0' },
          { key: 'tier-2', text: long.slice(1) },
        ]);
        await store.saveSnapshot(second);
        expect(await load('org')).toEqual({
          ...second,
          parts: [
            { key: 'tier-0', text: long },
            { key: 'tier-2', text: long.slice(1) },
          ],
        });
        await expectStoredParts('org', ['tier-0', 'tier-2']);
      });

      it('keeps the parts a later snapshot lists without text, replaces those given again and drops the rest', async () => {
        await store.saveSnapshot(
          snapshotOf('org', 99n, [
            { key: 'tier-0', text: 'zero' },
            { key: 'tier-1', text: 'one' },
            { key: 'tier-2', text: 'two' },
          ]),
        );
        const second = snapshotOf('org', 199n, [
          { key: 'tier-0' },
          { key: 'tier-1', text: 'one, again' },
          { key: 'tier-3', text: 'three' },
        ]);
        await store.saveSnapshot(second);
        expect(await load('org')).toEqual({
          ...second,
          parts: [
            { key: 'tier-0', text: 'zero' },
            { key: 'tier-1', text: 'one, again' },
            { key: 'tier-3', text: 'three' },
          ],
        });
        await expectStoredParts('org', ['tier-0', 'tier-1', 'tier-3']);

        // The dropped part is gone: it can no longer be kept without its text.
        const error = await rejectionOf(
          store.saveSnapshot(snapshotOf('org', 299n, [{ key: 'tier-0' }, { key: 'tier-2' }])),
        );
        expect(error).toBeInstanceOf(SnapshotPartsMissingError);
        expect(error).toMatchObject({ streamId: ns + 'org', keys: ['tier-2'] });

        // A snapshot that lists no parts drops them all.
        const third = snapshotOf('org', 399n, []);
        await store.saveSnapshot(third);
        expect(await load('org')).toEqual(third);
        await expectStoredParts('org', []);
      });

      it('refuses a snapshot listing a part the stream does not hold, and keeps the stored one as it was', async () => {
        const first = await rejectionOf(
          store.saveSnapshot(snapshotOf('org', 9n, [{ key: 'tier-0' }])),
        );
        expect(first).toBeInstanceOf(SnapshotPartsMissingError);
        expect(first).toMatchObject({ streamId: ns + 'org', keys: ['tier-0'] });
        expect(await store.loadSnapshot(ns + 'org')).toBeUndefined();

        const stored = snapshotOf('org', 99n, [
          { key: 'tier-0', text: 'zero' },
          { key: 'tier-1', text: 'one' },
        ]);
        await store.saveSnapshot(stored);
        const error = await rejectionOf(
          store.saveSnapshot(
            snapshotOf('org', 199n, [
              { key: 'tier-0' },
              { key: 'tier-1', text: 'changed' },
              { key: 'tier-5' },
              { key: 'tier-6', text: 'six' },
              { key: 'tier-7' },
            ]),
          ),
        );
        expect(error).toBeInstanceOf(SnapshotPartsMissingError);
        expect(error).toMatchObject({ streamId: ns + 'org', keys: ['tier-5', 'tier-7'] });
        // Nothing of it was saved: not the head, not the part it gave, not a dropped part.
        expect(await load('org')).toEqual(stored);
        await expectStoredParts('org', ['tier-0', 'tier-1']);
      });

      it('keeps the parts of each stream apart, even under the same key', async () => {
        const a = snapshotOf('a', 9n, [{ key: 'tier-0', text: 'of a' }]);
        const b = snapshotOf('b', 9n, [{ key: 'tier-0', text: 'of b' }]);
        await store.saveSnapshot(a);
        await store.saveSnapshot(b);
        expect(await load('a')).toEqual(a);
        expect(await load('b')).toEqual(b);

        // a drops its part: b keeps its own, and neither a nor a new stream can borrow it.
        await store.saveSnapshot(snapshotOf('a', 19n, []));
        await store.saveSnapshot(snapshotOf('b', 19n, [{ key: 'tier-0' }]));
        expect((await load('b'))?.parts).toEqual([{ key: 'tier-0', text: 'of b' }]);
        for (const stream of ['a', 'c']) {
          const error = await rejectionOf(
            store.saveSnapshot(snapshotOf(stream, 29n, [{ key: 'tier-0' }])),
          );
          expect(error).toMatchObject({ name: 'SnapshotPartsMissingError', keys: ['tier-0'] });
        }
        await expectStoredParts('a', []);
        await expectStoredParts('b', ['tier-0']);
      });

      it('stores a whole snapshot when two saves of one stream race, one dropping a part the other keeps', async () => {
        for (let round = 0; round < 20; round += 1) {
          const base = BigInt(round * 10);
          await store.saveSnapshot(snapshotOf('org', base, [{ key: 'a', text: `a ${round}` }]));
          const drop = snapshotOf('org', base + 1n, []);
          const keep = snapshotOf('org', base + 2n, [
            { key: 'a' },
            { key: 'b', text: `b ${round}` },
          ]);
          const [dropped, kept] = await Promise.allSettled([
            store.saveSnapshot(drop),
            store.saveSnapshot(keep),
          ]);
          expect(dropped.status).toBe('fulfilled');
          if (kept.status === 'rejected') {
            expect(kept.reason).toBeInstanceOf(SnapshotPartsMissingError);
          }
          // Whichever is stored, it is stored whole: never the head of one with a part missing.
          const loaded = await load('org');
          if (loaded?.revision === keep.revision) {
            expect(kept.status).toBe('fulfilled');
            expect(loaded.parts).toEqual([
              { key: 'a', text: `a ${round}` },
              { key: 'b', text: `b ${round}` },
            ]);
          } else {
            expect(loaded).toEqual(drop);
          }
        }
      });

      it('loads the head and the parts of one and the same save while saves go on', async () => {
        // Each save lists a part of its own (its text the state) and one kept from the first.
        const saveOf = (i: number): Snapshot => ({
          ...snapshotOf('org', BigInt(i), [
            { key: 'kept', ...(i === 0 ? { text: 'kept' } : {}) },
            { key: `own-${i}`, text: `state ${i}` },
          ]),
          state: `state ${i}`,
        });
        await store.saveSnapshot(saveOf(0));
        let saving = true;
        const saves = (async () => {
          try {
            for (let i = 1; i <= 40; i += 1) await store.saveSnapshot(saveOf(i));
          } finally {
            saving = false;
          }
        })();
        const loaded: Snapshot[] = [];
        while (saving) {
          const snapshot = await load('org');
          if (snapshot !== undefined) loaded.push(snapshot);
          // A store that answers from memory would otherwise never let its writes run.
          await nextTurn();
        }
        await saves;
        for (const snapshot of loaded) {
          expect(snapshot.parts).toEqual([
            { key: 'kept', text: 'kept' },
            { key: `own-${snapshot.revision}`, text: snapshot.state },
          ]);
        }
        expect(loaded.length).toBeGreaterThan(0);
        expect((await load('org'))?.revision).toBe(40n);
      });
    });

    describe('two processes appending to one stream at once', () => {
      let compiled: CompiledTree;
      let racers: ChildProcess[] = [];

      beforeAll(async () => {
        compiled = await compileForChild([
          'src/event-store',
          'src/threads',
          'test/support/append-racer.ts',
        ]);
      });
      afterAll(() => compiled?.remove());
      afterEach(async () => {
        await Promise.all(
          racers.map(async (racer) => {
            const exited = new Promise((resolve) => racer.once('exit', resolve));
            if (racer.connected) racer.disconnect();
            const timer = setTimeout(() => racer.kill('SIGKILL'), 5000);
            await exited;
            clearTimeout(timer);
          }),
        );
        racers = [];
      });

      const ask = (racer: ChildProcess, request: RaceRequest) =>
        new Promise<RaceReply>((resolve, reject) => {
          const onError = (error: Error) => reject(error);
          racer.once('error', onError);
          racer.once('message', (reply) => {
            racer.off('error', onError);
            resolve(reply as RaceReply);
          });
          racer.send(request);
        });

      it('exactly one process wins each revision, and no two appends interleave', async () => {
        await append('hot', newEvents(1), 'no_stream');
        racers = Array.from({ length: 4 }, () =>
          fork(compiled.pathOf('test/support/append-racer.ts'), [JSON.stringify(locate(store))], {
            stdio: 'inherit',
          }),
        );
        await Promise.all(
          racers.map(
            (racer) =>
              new Promise<void>((resolve, reject) => {
                racer.once('message', () => resolve());
                racer.once('exit', (code) => reject(new Error(`racer exited with ${code}`)));
              }),
          ),
        );

        const batch = 3;
        const rounds = 12;
        let revision = 0n;
        for (let round = 1; round <= rounds; round += 1) {
          // Every process appends at the same expected revision at once.
          const replies = await Promise.all(
            racers.map((racer, index) =>
              ask(racer, {
                streamId: ns + 'hot',
                expected: String(revision),
                tag: `${round}:${index}`,
                count: batch,
              }),
            ),
          );
          revision += BigInt(batch);
          expect(replies.filter((reply) => reply.ok)).toEqual([
            { ok: true, revision: String(revision) },
          ]);
          for (const loser of replies.filter((reply) => !reply.ok)) {
            expect(loser).toEqual({
              ok: false,
              name: 'WrongExpectedRevisionError',
              actual: String(revision),
            });
          }
        }

        const stream = await store.readStream(ns + 'hot');
        expect(stream.map((event) => event.revision)).toEqual(
          Array.from({ length: 1 + rounds * batch }, (_, index) => BigInt(index)),
        );
        // Each winner's events sit together, in its own order.
        const tags = stream.slice(1).map((event) => event.data as { tag: string; index: number });
        for (let start = 0; start < tags.length; start += batch) {
          const group = tags.slice(start, start + batch);
          expect(group.map((tag) => tag.tag)).toEqual(new Array(batch).fill(group[0].tag));
          expect(group.map((tag) => tag.index)).toEqual([0, 1, 2]);
        }
      }, 60_000);
    });

    it('reads and delivers 10,000 events appended in batches, once each and in order', async () => {
      const start = await store.headPosition();
      const streams = 10;
      const revisions = new Array<bigint | 'no_stream'>(streams).fill('no_stream');
      for (let batch = 0; batch < 100; batch += 1) {
        const stream = batch % streams;
        const result = await append(`bulk-${stream}`, newEvents(100), revisions[stream]);
        revisions[stream] = result.nextExpectedRevision;
      }
      expect(revisions).toEqual(new Array(streams).fill(999n));

      // Read in pages, as a rebuild would.
      const read: RecordedEvent[] = [];
      let from = start;
      // Bounded, so that a store that repeats events fails here instead of looping forever.
      for (let pages = 0; pages < 100; pages += 1) {
        const page = await store.readAll({ fromPosition: from, maxCount: 1000 });
        if (page.length === 0) break;
        read.push(...page.filter(mine));
        from = page[page.length - 1].position;
      }
      expect(read).toHaveLength(10_000);
      for (let i = 1; i < read.length; i += 1) {
        expect(read[i].position > read[i - 1].position).toBe(true);
      }
      const oneStream = await store.readStream(ns + 'bulk-3');
      expect(oneStream.map((event) => event.revision)).toEqual(
        Array.from({ length: 1000 }, (_, index) => BigInt(index)),
      );

      const delivered: bigint[] = [];
      let caughtUp = 0;
      subscribe((event) => void (mine(event) && delivered.push(event.position)), {
        fromPosition: start,
        onCaughtUp: () => void (caughtUp += 1),
      });
      await waitFor(() => caughtUp === 1, 'the catch-up of 10,000 events', 60_000);
      expect(delivered).toEqual(read.map((event) => event.position));
      expect(new Set(delivered).size).toBe(10_000);
    }, 120_000);
  });
}

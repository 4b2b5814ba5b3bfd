import { randomBytes, randomUUID } from 'node:crypto';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { EventStore } from '../../src/event-store/event-store';
import { SqliteEventStore } from '../../src/event-store/sqlite/sqlite-event-store';
import { InboxRequests } from '../../src/nats/inbox-requests';
import { publishChained, publishToJetStream } from '../../src/nats/jetstream-acks';
import {
  JetStreamPublisher,
  LEDGER_EVENTS_STREAM,
  messageOf,
  subjectOf,
} from '../../src/nats/jetstream-publisher';

const NATS_URL = process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

/** The publisher against the real NATS server (JetStream) of this machine. */
describe('JetStream publisher', () => {
  let nats: NatsConnection;
  let store: SqliteEventStore;
  const organization = `o${randomBytes(5).toString('hex')}`;

  beforeAll(async () => {
    nats = await connect({ servers: NATS_URL });
    store = new SqliteEventStore(':memory:');
  });
  afterAll(async () => {
    await store.close();
    await nats.close();
  });

  const append = (count: number, from: number) =>
    store.appendToStream(
      `organization-${organization}`,
      Array.from({ length: count }, (_, i) => {
        const eventId = randomUUID();
        return {
          eventId,
          type: 'CharmRunCharged',
          data: { runId: `r${from + i}`, amount: 1 },
          metadata: {
            eventId,
            occurredAt: new Date().toISOString(),
            actor: { kind: 'service' as const, id: 't' },
            correlationId: 'c',
            causationId: 'c',
          },
        };
      }),
      'any',
    );

  /** Everything JetStream holds for this test's organization, in stream order. */
  async function published() {
    const jsm = await jetstreamManager(nats);
    const consumer = await jsm.consumers.add(LEDGER_EVENTS_STREAM, {
      filter_subject: `ledger.events.organization.${organization}.>`,
      ack_policy: AckPolicy.None,
      inactive_threshold: 5_000_000_000,
    });
    const messages: {
      id: string | undefined;
      body: { eventId: string; position: string; data: { runId: string } };
    }[] = [];
    const fetched = await jetstream(nats).consumers.get(LEDGER_EVENTS_STREAM, consumer.name);
    // The loop stops at the last message; the long expiry only matters on a loaded machine.
    const batch = await fetched.fetch({ max_messages: 1000, expires: 10_000 });
    for await (const message of batch) {
      messages.push({ id: message.headers?.get('Nats-Msg-Id'), body: message.json() });
      if (message.info.pending === 0) break;
    }
    return messages;
  }

  it('publishes every event once, in order, with the event id as Nats-Msg-Id, from its checkpoint', async () => {
    let saved = 0n;
    const checkpoint = {
      load: async () => saved,
      save: async (position: bigint) => void (saved = position),
    };
    const publisher = new JetStreamPublisher(store, checkpoint, () => nats, {
      idleMs: 10,
      maxInFlight: 16,
    });
    await append(40, 0);
    await publisher.start();
    const head = await store.headPosition();
    for (let i = 0; i < 200 && publisher.position < head; i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(saved).toBe(head);

    await append(10, 40);
    for (let i = 0; i < 200 && publisher.position < (await store.headPosition()); i++)
      await new Promise((r) => setTimeout(r, 25));
    await publisher.stop();

    // A publisher that lost its checkpoint sends everything again: JetStream drops the repeats.
    saved = 0n;
    const again = new JetStreamPublisher(store, checkpoint, () => nats, { idleMs: 10 });
    await again.start();
    for (let i = 0; i < 200 && again.position < (await store.headPosition()); i++)
      await new Promise((r) => setTimeout(r, 25));
    await again.stop();

    const messages = await published();
    expect(messages.map((message) => message.body.data.runId)).toEqual(
      Array.from({ length: 50 }, (_, i) => `r${i}`),
    );
    for (const message of messages) expect(message.id).toBe(message.body.eventId);
    expect(messages.map((message) => message.body.position)).toEqual(
      (await store.readStream(`organization-${organization}`)).map((event) =>
        event.position.toString(),
      ),
    );
  });

  it('sends a window again one ack at a time when JetStream drops one of its events', async () => {
    let saved = await store.headPosition();
    const publisher = new JetStreamPublisher(
      store,
      { load: async () => saved, save: async (position) => void (saved = position) },
      () => nats,
      { idleMs: 10, maxInFlight: 8 },
    );
    await append(12, 100);
    // Another publisher (a second instance, say) already sent the sixth: JetStream drops it.
    const events = await store.readAll({ fromPosition: saved, maxCount: 12 });
    const requests = new InboxRequests(nats, 5000);
    await publishToJetStream(
      requests,
      subjectOf(events[5]),
      JSON.stringify(messageOf(events[5])),
      events[5].eventId,
    );
    requests.close();
    await publisher.start();
    for (let i = 0; i < 200 && publisher.position < (await store.headPosition()); i++)
      await new Promise((r) => setTimeout(r, 25));
    await publisher.stop();
    expect(saved).toBe(await store.headPosition());
    const runIds = (await published()).map((message) => message.body.data.runId).slice(-12);
    expect([...runIds].sort()).toEqual(Array.from({ length: 12 }, (_, i) => `r${100 + i}`));
    expect(runIds[0]).toBe('r105');
  });

  /** What a test started, stopped even when it fails (a running publisher keeps Jest up). */
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  /** The store, counting the reads that returned events and where each started. */
  function countingReads(reads: bigint[]): EventStore {
    return new Proxy(store, {
      get(target, property) {
        if (property === 'readAll') {
          return async (options: { fromPosition?: bigint; maxCount?: number }) => {
            const page = await target.readAll(options);
            if (page.length > 0) reads.push(options.fromPosition ?? 0n);
            return page;
          };
        }
        const value: unknown = Reflect.get(target, property);
        return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
      },
    });
  }

  /** Every publish of this organization's events, repeats included (JetStream drops those). */
  function everyPublish(): { runIds: string[]; stop: () => void } {
    const runIds: string[] = [];
    const subscription = nats.subscribe(`ledger.events.organization.${organization}.>`, {
      callback: (_error, message) => {
        runIds.push((message.json() as { data: { runId: string } }).data.runId);
      },
    });
    cleanups.push(() => subscription.unsubscribe());
    return { runIds, stop: () => subscription.unsubscribe() };
  }

  const runIdsFrom = (first: number, count: number) =>
    Array.from({ length: count }, (_, i) => `r${first + i}`);

  /** A publisher from the store's head, its reads of the store counted, every publish seen. */
  async function watchedPublisher(idleMs: number) {
    let saved = await store.headPosition();
    const reads: bigint[] = [];
    const publishes = everyPublish();
    const publisher = new JetStreamPublisher(
      countingReads(reads),
      { load: async () => saved, save: async (position) => void (saved = position) },
      () => nats,
      { idleMs },
    );
    cleanups.push(() => publisher.stop());
    await publisher.start();
    return { publisher, reads, publishes };
  }

  async function untilPublished(publisher: JetStreamPublisher) {
    for (let i = 0; i < 200 && publisher.position < (await store.headPosition()); i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(publisher.position).toBe(await store.headPosition());
  }

  it("publishes the pages offered to it without reading them again, a page's tail after its checkpoint only", async () => {
    // No wait ends by itself here: only offers wake the publisher.
    const { publisher, reads, publishes } = await watchedPublisher(60_000);

    await append(30, 200);
    const start = publisher.position;
    publisher.offer(start, await store.readAll({ fromPosition: start }));
    await untilPublished(publisher);
    // A page that starts before the checkpoint: only its events after it are new.
    const checkpoint = publisher.position;
    const before = (await store.readAll({ fromPosition: checkpoint - 10n }))[0].position - 1n;
    await append(20, 230);
    publisher.offer(before, await store.readAll({ fromPosition: before }));
    await untilPublished(publisher);
    await publisher.stop();
    publishes.stop();

    expect(reads).toEqual([]);
    expect(publishes.runIds).toEqual(runIdsFrom(200, 50));
    expect((await published()).map((message) => message.body.data.runId).slice(-50)).toEqual(
      runIdsFrom(200, 50),
    );
  });

  it('reads the store for events no page offered, and when the offers stop', async () => {
    const { publisher, reads, publishes } = await watchedPublisher(20);

    // A page that starts after events nobody offered is not enough: they come first.
    const unoffered = publisher.position;
    await append(10, 300);
    const after = await store.headPosition();
    await append(10, 310);
    publisher.offer(after, await store.readAll({ fromPosition: after }));
    await untilPublished(publisher);
    expect(reads).toContain(unoffered);
    // Offers stop (projections failing, say): the store is read after a wait.
    await append(5, 320);
    await untilPublished(publisher);
    await publisher.stop();
    publishes.stop();

    expect(publishes.runIds).toEqual(runIdsFrom(300, 25));
    expect((await published()).map((message) => message.body.data.runId).slice(-25)).toEqual(
      runIdsFrom(300, 25),
    );
  });

  it('does not wait for the pages of a reader behind it', async () => {
    // No wait ends by itself here: only offers wake the publisher.
    const { publisher, publishes } = await watchedPublisher(60_000);
    await append(10, 400);
    publisher.offer(publisher.position, await store.readAll({ fromPosition: publisher.position }));
    await untilPublished(publisher);

    // Projections rebuilding from further back offer pages the publisher is past.
    const behind = await store.readAll({ fromPosition: publisher.position - 8n, maxCount: 4 });
    await append(5, 410);
    publisher.offer(publisher.position - 8n, behind);
    await untilPublished(publisher);
    publishes.stop();
    expect(publishes.runIds).toEqual(runIdsFrom(400, 15));
  });

  it('waits without NATS and catches up once it is there', async () => {
    let saved = await store.headPosition();
    const natsWhenUp: { current?: NatsConnection } = {};
    const publisher = new JetStreamPublisher(
      store,
      { load: async () => saved, save: async (position) => void (saved = position) },
      () => natsWhenUp.current,
      { idleMs: 10 },
    );
    await publisher.start();
    await append(5, 50);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const before = saved;
    natsWhenUp.current = nats;
    for (let i = 0; i < 200 && publisher.position < (await store.headPosition()); i++)
      await new Promise((r) => setTimeout(r, 25));
    await publisher.stop();
    expect(before).toBeLessThan(await store.headPosition());
    expect(saved).toBe(await store.headPosition());
    expect((await published()).map((message) => message.body.data.runId).slice(-5)).toEqual([
      'r50',
      'r51',
      'r52',
      'r53',
      'r54',
    ]);
  });
});

/** Requests answered on one inbox, and JetStream publishes through them, on the real server. */
describe('requests on one inbox', () => {
  let nats: NatsConnection;
  const name = `ACKS_${randomBytes(4).toString('hex').toUpperCase()}`;
  const subject = `acks-test.${name}`;

  beforeAll(async () => {
    nats = await connect({ servers: NATS_URL });
    const jsm = await jetstreamManager(nats);
    await jsm.streams.add({ name, subjects: [`${subject}.>`], duplicate_window: 60_000_000_000 });
  });
  afterAll(async () => {
    await (await jetstreamManager(nats)).streams.delete(name);
    await nats.close();
  });

  it('gives each request its own reply', async () => {
    const echo = nats.subscribe(`echo-${name}`, {
      callback: (_, message) => void message.respond(`re: ${message.string()}`),
    });
    const requests = new InboxRequests(nats, 5000);
    try {
      const replies = await Promise.all(
        Array.from({ length: 50 }, (_, i) => requests.request(`echo-${name}`, `m${i}`)),
      );
      expect(replies.map((reply) => reply.string())).toEqual(
        Array.from({ length: 50 }, (_, i) => `re: m${i}`),
      );
    } finally {
      requests.close();
      echo.unsubscribe();
    }
  });

  it('fails a request nobody listens to, and one whose reply does not come in time', async () => {
    // A plain subscriber takes the subject and never answers: no reply, no "no responders".
    const silent = nats.subscribe(`silent-${name}`);
    const requests = new InboxRequests(nats, 200);
    try {
      await expect(requests.request(`nobody-${name}`, 'lost')).rejects.toThrow(/status 503/);
      const started = performance.now();
      await expect(requests.request(`silent-${name}`, 'unheard')).rejects.toThrow(
        'no reply within 200 ms',
      );
      expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    } finally {
      requests.close();
      silent.unsubscribe();
    }
  });

  it('publishes to JetStream with the message id, and reads a repeat from its ack', async () => {
    const requests = new InboxRequests(nats, 5000);
    try {
      const [first, second, repeat] = await Promise.all([
        publishToJetStream(requests, `${subject}.a`, 'one', 'id-1'),
        publishToJetStream(requests, `${subject}.b`, 'two', 'id-2'),
        publishToJetStream(requests, `${subject}.a`, 'one again', 'id-1'),
      ]);
      expect([first.stream, first.seq, first.duplicate]).toEqual([name, 1, false]);
      expect([second.seq, second.duplicate]).toEqual([2, false]);
      expect([repeat.seq, repeat.duplicate]).toEqual([1, true]);
      const info = await (await jetstreamManager(nats)).streams.info(name);
      expect(info.state.messages).toBe(2);
      // A subject no stream takes: the publish fails, as js.publish would.
      await expect(
        publishToJetStream(requests, `nostream-${name}.x`, 'x', 'id-3'),
      ).rejects.toThrow();
    } finally {
      requests.close();
    }
  });

  it('publishes a chain with two acks, and stores nothing after a message JetStream drops', async () => {
    const jsm = await jetstreamManager(nats);
    const requests = new InboxRequests(nats, 5000);
    const message = (id: string, to = `${subject}.chain`) => ({
      subject: to,
      payload: id,
      messageId: id,
    });
    const held = async () => {
      const { first_seq, last_seq } = (await jsm.streams.info(name)).state;
      const bodies: string[] = [];
      for (let seq = first_seq; seq <= last_seq; seq++) {
        const stored = await jsm.streams.getMessage(name, { seq });
        bodies.push(new TextDecoder().decode(stored!.data));
      }
      return bodies.filter((body) => body.startsWith('c'));
    };
    try {
      expect(
        await publishChained(
          nats,
          requests,
          ['c1', 'c2', 'c3'].map((id) => message(id)),
        ),
      ).toBe(true);
      expect(await held()).toEqual(['c1', 'c2', 'c3']);

      // A repeated id in the middle is dropped: the messages after it are refused.
      expect(
        await publishChained(
          nats,
          requests,
          ['c4', 'c2', 'c5', 'c6'].map((id) => message(id)),
        ),
      ).toBe(false);
      // So is one no stream takes.
      expect(
        await publishChained(nats, requests, [
          message('c7'),
          message('c8', `nowhere-${name}.x`),
          message('c9'),
        ]),
      ).toBe(false);
      expect(await held()).toEqual(['c1', 'c2', 'c3', 'c4', 'c7']);

      // A chain whose first message was stored before is not taken as stored by this one.
      expect(
        await publishChained(
          nats,
          requests,
          ['c7', 'c10'].map((id) => message(id)),
        ),
      ).toBe(false);
      expect(await publishChained(nats, requests, [message('c11')])).toBe(true);
    } finally {
      requests.close();
    }
  });
});

import { randomBytes, randomUUID } from 'node:crypto';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { SqliteEventStore } from '../../src/event-store/sqlite/sqlite-event-store';
import { JetStreamAcks } from '../../src/nats/jetstream-acks';
import { JetStreamPublisher, LEDGER_EVENTS_STREAM } from '../../src/nats/jetstream-publisher';

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
    const batch = await fetched.fetch({ max_messages: 1000, expires: 1000 });
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

/** The ack collector the publisher sends through, against the real NATS server. */
describe('JetStream acks on one inbox', () => {
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

  it('answers each publish with its own ack, and flags a repeated message id', async () => {
    const acks = new JetStreamAcks(nats);
    try {
      const [first, second, repeat] = await Promise.all([
        acks.publish(`${subject}.a`, 'one', 'id-1'),
        acks.publish(`${subject}.b`, 'two', 'id-2'),
        acks.publish(`${subject}.a`, 'one again', 'id-1'),
      ]);
      expect([first.stream, first.seq, first.duplicate]).toEqual([name, 1, false]);
      expect([second.seq, second.duplicate]).toEqual([2, false]);
      expect([repeat.seq, repeat.duplicate]).toEqual([1, true]);
      const info = await (await jetstreamManager(nats)).streams.info(name);
      expect(info.state.messages).toBe(2);
    } finally {
      acks.close();
    }
  });

  it('fails a publish that no stream takes', async () => {
    const acks = new JetStreamAcks(nats);
    try {
      await expect(acks.publish(`nobody-${name}.x`, 'lost', 'id-3')).rejects.toThrow(
        /did not take/,
      );
    } finally {
      acks.close();
    }
  });

  it('gives up on acks that do not come when told to', async () => {
    // A plain subscriber takes the subject and never answers: no ack, and no "no responders".
    const silent = nats.subscribe(`silent-${name}`);
    const acks = new JetStreamAcks(nats);
    try {
      const waiting = acks.publish(`silent-${name}`, 'unheard', 'id-4');
      await new Promise((resolve) => setTimeout(resolve, 50));
      acks.abandon(new Error('too late'));
      await expect(waiting).rejects.toThrow('too late');
    } finally {
      acks.close();
      silent.unsubscribe();
    }
  });
});

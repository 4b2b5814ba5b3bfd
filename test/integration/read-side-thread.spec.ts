import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { DataSource } from 'typeorm';
import { loadConfig, type LedgerConfig } from '../../src/config/config';
import type { EventStore } from '../../src/event-store/event-store';
import { openEventStore } from '../../src/event-store/open-event-store';
import { LEDGER_ACTOR } from '../../src/ledger/actor';
import { LEDGER_EVENTS_STREAM } from '../../src/nats/jetstream-publisher';
import { readModelDataSource } from '../../src/read/read-model-database';
import { ReadSideThread, readSideWorker } from '../../src/read/read-side-thread';
import { THREAD_NAMES } from '../../src/threads/thread-name';
import type { WorkerScript } from '../../src/threads/worker-script';
import { AggregateWriter } from '../../src/write/aggregate-writer';
import { organizationAggregate } from '../../src/write/writers';
import { newDataDir, removeDataDir, TestClock } from '../support/ledger-app';
import { createOrganization, grantCredits } from '../support/organization-commands';
import { niceOf, threadNames, threadsOf } from '../support/threads';
import { TEST_SECRET } from '../support/tokens';

const NATS_URL = process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const context = { actor: LEDGER_ACTOR, correlationId: 'test' };

/**
 * The projections and the JetStream publisher in a thread of their own, beside a writer on
 * this thread: the layout of the service by default. Real SQLite files, the real NATS here.
 */
describe('the read side in its own thread', () => {
  let dataDir: string;
  let config: LedgerConfig;
  let store: EventStore;
  let database: DataSource;
  let nats: NatsConnection;
  let organization: string;
  let threads: ReadSideThread[];
  let logged: string[];
  const clock = new TestClock(Date.parse('2026-05-01T10:00:00Z'));

  beforeEach(async () => {
    dataDir = newDataDir();
    config = loadConfig({
      LEDGER_DATA_DIR: dataDir,
      LEDGER_JWT_SECRET: TEST_SECRET,
      NATS_URL,
      LOG_LEVEL: 'silent',
    });
    // As the service: its own connections open (and migrate) first.
    store = await openEventStore(config);
    database = await readModelDataSource(config).initialize();
    nats = await connect({ servers: NATS_URL });
    organization = `o${randomBytes(5).toString('hex')}`;
    threads = [];
    logged = [];
    organizations = writer();
  });
  afterEach(async () => {
    for (const thread of threads) await thread.stop();
    await nats.close();
    await database.destroy();
    await store.close();
    removeDataDir(dataDir);
  });

  const readSide = (script: WorkerScript = readSideWorker()) => {
    const log = (message: string) => void logged.push(message);
    const thread = new ReadSideThread(config, { log, warn: log, error: log }, script);
    threads.push(thread);
    return thread;
  };

  const writer = () =>
    new AggregateWriter(organizationAggregate, store, undefined, clock, {
      cacheSize: 10,
      snapshotEvery: 1000,
    });
  let organizations: ReturnType<typeof writer>;
  const run = (command: Parameters<ReturnType<typeof writer>['execute']>[1]) =>
    organizations.execute(organization, command, context, () => undefined);

  async function openWithCredits(amount: number) {
    await run(createOrganization(organization));
    await run(grantCredits(amount));
  }

  const charge = (runId: string, amount: number) =>
    run({ type: 'ChargeCharmRun', runId, charmId: 'summarize', userId: 'olga', amount });

  async function remaining(): Promise<number> {
    const [row] = await database.query(
      `SELECT SUM(remaining) AS remaining FROM balance_grants WHERE organization_id = ?`,
      [organization],
    );
    return Number(row.remaining);
  }

  async function usage(): Promise<{ runs: number; credits: number }> {
    const [row] = await database.query(
      `SELECT SUM(runs) AS runs, SUM(credits) AS credits FROM usage_daily WHERE organization_id = ?`,
      [organization],
    );
    return { runs: Number(row.runs), credits: Number(row.credits) };
  }

  /** The event ids JetStream holds for this test's organization, in stream order. */
  async function published(): Promise<string[]> {
    const jsm = await jetstreamManager(nats);
    const consumer = await jsm.consumers.add(LEDGER_EVENTS_STREAM, {
      filter_subject: `ledger.events.organization.${organization}.>`,
      ack_policy: AckPolicy.None,
      inactive_threshold: 5_000_000_000,
    });
    const ids: string[] = [];
    const fetched = await jetstream(nats).consumers.get(LEDGER_EVENTS_STREAM, consumer.name);
    const batch = await fetched.fetch({ max_messages: 1000, expires: 1000 });
    for await (const message of batch) {
      ids.push(message.headers?.get('Nats-Msg-Id') ?? '');
      if (message.info.pending === 0) break;
    }
    return ids;
  }

  async function publishedAll(expected: number): Promise<string[]> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const ids = await published();
      if (ids.length >= expected) return ids;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return published();
  }

  it('builds the read models and publishes every event to JetStream, and reports its position to this thread', async () => {
    await openWithCredits(100);
    await charge('r1', 30);
    await charge('r2', 5);
    const thread = readSide();
    await thread.start();
    // Named, so that top -H and the bench tell it from the request thread.
    expect(threadNames()).toContain(THREAD_NAMES.readSide);
    // Behind the request thread for the cores: the setting's nice levels lower than this one.
    const readThread = threadsOf(process.pid).find(({ name }) => name === THREAD_NAMES.readSide)!;
    expect(niceOf(process.pid, readThread.tid)).toBe(
      Math.min(19, niceOf(process.pid, process.pid) + config.readSideNice),
    );
    expect(config.readSideNice).toBe(10);
    const head = await store.headPosition();

    expect(await thread.progress.waitFor(head, 10_000)).toBe(true);
    expect(thread.progress.position).toBe(head);
    expect(await remaining()).toBe(65);
    expect(await usage()).toEqual({ runs: 2, credits: 35 });
    const events = await store.readStream(`organization-${organization}`);
    expect(await publishedAll(events.length)).toEqual(events.map((event) => event.eventId));

    // Live: what is appended after the start arrives too.
    const { position } = await charge('r3', 15);
    expect(await thread.progress.waitFor(position!, 10_000)).toBe(true);
    expect(await remaining()).toBe(50);
  });

  it('starts its thread again when it dies, and carries on from the checkpoints without counting twice', async () => {
    await openWithCredits(1000);
    for (let i = 0; i < 20; i++) await charge(`r${i}`, 1);
    // The first thread dies a moment after it is ready; the ones after it live.
    const marker = join(dataDir, 'died-once');
    const dying = readSideWorker(`
      if (!require('node:fs').existsSync(${JSON.stringify(marker)})) {
        require('node:fs').writeFileSync(${JSON.stringify(marker)}, '');
        const { parentPort } = require('node:worker_threads');
        const post = parentPort.postMessage.bind(parentPort);
        parentPort.postMessage = (report) => {
          post(report);
          if (report.kind === 'ready') setTimeout(() => process.exit(7), 100);
        };
      }
    `);
    const thread = readSide(dying);
    await thread.start();
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (let i = 20; i < 40; i++) await charge(`r${i}`, 1);
    const head = await store.headPosition();

    expect(await thread.progress.waitFor(head, 15_000)).toBe(true);
    expect(logged).toContain("the read side's thread exited (7); starting it again");
    expect(await usage()).toEqual({ runs: 40, credits: 40 });
    expect(await remaining()).toBe(960);
    const events = await store.readStream(`organization-${organization}`);
    expect(await publishedAll(events.length)).toEqual(events.map((event) => event.eventId));
  });

  it('stops with its checkpoints stored, and a new thread resumes from them', async () => {
    await openWithCredits(100);
    await charge('r1', 10);
    const first = readSide();
    await first.start();
    const head = await store.headPosition();
    expect(await first.progress.waitFor(head, 10_000)).toBe(true);
    await first.stop();

    await charge('r2', 20);
    const second = readSide();
    await second.start();
    // Ready means the checkpoints are loaded: the position is where the first one stopped.
    expect(second.progress.position).toBeGreaterThanOrEqual(head);
    expect(await second.progress.waitFor(await store.headPosition(), 10_000)).toBe(true);
    expect(await usage()).toEqual({ runs: 2, credits: 30 });
  });

  it('refuses to start, with the reason, when its own connections cannot open', async () => {
    config = { ...config, eventStore: 'postgres', databaseUrl: 'postgres://127.0.0.1:1/none' };
    await expect(readSide().start()).rejects.toThrow(/ECONNREFUSED|connect/);
  });
});

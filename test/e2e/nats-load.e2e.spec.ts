import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { DataSource } from 'typeorm';
import {
  consumeLedgerEvents,
  LedgerClient,
  LedgerClientError,
  type LedgerEventMessage,
} from '../../src/client';
import { EVENT_STORE, type EventStore } from '../../src/event-store/event-store';
import { READ_MODEL_DATABASE } from '../../src/read/read-models';
import { newDataDir, removeDataDir, startLedger, type RunningLedger } from '../support/ledger-app';

/** 10,000 charges over NATS from several connections, repeats mixed in: everyone agrees. */
describe('10,000 charges over NATS', () => {
  let dataDir: string;
  let ledger: RunningLedger;
  const connections: NatsConnection[] = [];
  const org = `l${randomBytes(5).toString('hex')}`;

  beforeAll(async () => {
    dataDir = newDataDir();
    ledger = await startLedger(dataDir, { env: { LEDGER_NATS_REQUESTS: 'on' } });
    for (let i = 0; i < 4; i++)
      connections.push(await connect({ servers: 'nats://127.0.0.1:4222' }));
    const client = new LedgerClient(connections[0]);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const ping = await connections[0]
        .request('$SRV.PING.ledger', '', { timeout: 500 })
        .catch(() => undefined);
      if (ping) break;
    }
    await ledger.http
      .post('/v1/organizations')
      .send({ organizationId: org, name: 'L', ownerUserId: 'u' })
      .expect(201);
    await client.grant({ organizationId: org, grantId: 'g', amount: 8_000, source: 'plan' });
  });
  afterAll(async () => {
    for (const connection of connections) await connection.close();
    await ledger.close();
    removeDataDir(dataDir);
  });

  it('charges each runId once, and the stream, the read models and JetStream agree', async () => {
    const clients = connections.map(
      (connection) => new LedgerClient(connection, { timeoutMs: 20_000 }),
    );
    const acknowledged = new Set<string>();
    let refused = 0;
    const send = async (i: number, client: LedgerClient) => {
      try {
        const reply = await client.charge({
          runId: `r${i}`,
          charmId: `c${i % 7}`,
          userId: 'u',
          amount: 1,
          organizationId: org,
        });
        if (!reply.replayed) {
          expect(acknowledged.has(reply.runId)).toBe(false);
          acknowledged.add(reply.runId);
        }
      } catch (error) {
        if (!(error instanceof LedgerClientError) || error.code !== 'INSUFFICIENT_CREDITS')
          throw error;
        refused++;
      }
    };
    // 10,000 requests: every tenth runId is sent twice at once, from another connection.
    const requests: Promise<void>[] = [];
    for (let i = 0, sent = 0; sent < 10_000; i++) {
      requests.push(send(i, clients[i % clients.length]));
      sent++;
      if (i % 10 === 0 && sent < 10_000) {
        requests.push(send(i, clients[(i + 1) % clients.length]));
        sent++;
      }
      if (requests.length >= 400) await Promise.all(requests.splice(0));
    }
    await Promise.all(requests);
    expect(acknowledged.size).toBe(8_000);
    expect(refused).toBeGreaterThan(0);

    const store = ledger.app.get<EventStore>(EVENT_STORE);
    const events = await store.readStream(`organization-${org}`);
    const charged = events
      .filter((event) => event.type === 'CharmRunCharged')
      .map((event) => (event.data as { runId: string }).runId);
    expect(charged.length).toBe(acknowledged.size);
    expect(new Set(charged)).toEqual(acknowledged);

    // The projections take their time with 10,000 events on PostgreSQL: keep asking (each
    // ask waits up to 5 s), then compare.
    const head = await store.headPosition();
    let status = 0;
    for (let attempt = 0; attempt < 12 && status !== 200; attempt += 1) {
      ({ status } = await ledger.http.get(`/v1/organizations/${org}/members?minPosition=${head}`));
    }
    expect(status).toBe(200);
    const database = ledger.app.get<DataSource>(READ_MODEL_DATABASE);
    const [runs] = await database.query(
      `SELECT COUNT(*) AS n, SUM("credits") AS c FROM "usage_runs" WHERE "organization_id" = '${org}'`,
    );
    expect([Number(runs.n), Number(runs.c)]).toEqual([8_000, 8_000]);

    const published = new Map<string, LedgerEventMessage>();
    const controller = new AbortController();
    const consuming = consumeLedgerEvents(
      connections[0],
      (event) => void published.set(event.eventId, event),
      {
        filterSubject: `ledger.events.organization.${org}.>`,
        signal: controller.signal,
      },
    );
    const deadline = Date.now() + 30_000;
    while (published.size < events.length && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    await consuming;
    expect([...published.keys()]).toEqual(events.map((event) => event.eventId));
  }, 120_000);
});

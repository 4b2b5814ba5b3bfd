import { randomBytes } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  consumeLedgerEvents,
  LedgerClient,
  LedgerClientError,
  type LedgerEventMessage,
} from '../../src/client';
import { newDataDir, removeDataDir, startLedger, type RunningLedger } from '../support/ledger-app';

/** Charging, holding, granting and reading balances over NATS request/reply. */
describe('NATS request/reply', () => {
  let dataDir: string;
  let ledger: RunningLedger;
  let nats: NatsConnection;
  const org = `q${randomBytes(5).toString('hex')}`;

  beforeAll(async () => {
    dataDir = newDataDir();
    ledger = await startLedger(dataDir, { env: { LEDGER_NATS_REQUESTS: 'on' } });
    nats = await connect({ servers: 'nats://127.0.0.1:4222' });
    await ledger.http
      .post('/v1/organizations')
      .send({ organizationId: org, name: 'Q', ownerUserId: 'u' })
      .expect(201);
    // The service registers once its background connection is up.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const ping = await nats
        .request('$SRV.PING.ledger', '', { timeout: 500 })
        .catch(() => undefined);
      if (ping) break;
    }
  });
  afterAll(async () => {
    await nats.close();
    await ledger.close();
    removeDataDir(dataDir);
  });

  const ask = async (subject: string, body: unknown) => {
    const reply = await nats.request(
      subject,
      typeof body === 'string' ? body : JSON.stringify(body),
      { timeout: 5000 },
    );
    return reply.json<
      Record<string, unknown> & { ok: boolean; error?: { code: string; details?: unknown } }
    >();
  };

  it('grants, charges once per runId, holds and captures, with the same answers as HTTP', async () => {
    expect(
      await ask('ledger.grants.create', {
        organizationId: org,
        grantId: 'g',
        amount: 100,
        source: 'plan',
      }),
    ).toMatchObject({
      ok: true,
      balance: { available: 100, reserved: 0 },
    });
    const charge = { runId: 'r1', charmId: 'c', userId: 'u', amount: 30, organizationId: org };
    expect(await ask('ledger.charm-runs.charge', charge)).toMatchObject({
      ok: true,
      charged: 30,
      balance: { available: 70 },
      replayed: false,
    });
    expect(await ask('ledger.charm-runs.charge', charge)).toMatchObject({
      ok: true,
      charged: 30,
      replayed: true,
    });
    expect(await ask('ledger.charm-runs.charge', { ...charge, amount: 31 })).toMatchObject({
      ok: false,
      error: { code: 'CONFLICT' },
    });
    expect(
      await ask('ledger.charm-runs.refund', { organizationId: org, runId: 'r1', amount: 5 }),
    ).toMatchObject({ ok: true, refunded: 5 });
    expect(
      await ask('ledger.reservations.create', {
        organizationId: org,
        reservationId: 'h',
        charmId: 'c',
        userId: 'u',
        amount: 20,
      }),
    ).toMatchObject({
      ok: true,
      balance: { available: 55, reserved: 20 },
    });
    expect(
      await ask('ledger.reservations.capture', {
        organizationId: org,
        reservationId: 'h',
        amount: 12,
      }),
    ).toMatchObject({ ok: true, captured: 12, released: 8 });
    expect(
      await ask('ledger.reservations.release', { organizationId: org, reservationId: 'h' }),
    ).toMatchObject({ ok: false, error: { code: 'CONFLICT' } });
    const balance = await ask('ledger.balance.get', { organizationId: org });
    const http = await ledger.http.get(`/v1/organizations/${org}/balance`).expect(200);
    expect(balance).toMatchObject({
      ok: true,
      available: http.body.available,
      reserved: http.body.reserved,
      position: http.body.position,
    });
    expect(
      await ask('ledger.charm-runs.refund', { organizationId: org, runId: 'nope' }),
    ).toMatchObject({
      ok: false,
      error: { code: 'NOT_FOUND' },
    });
    expect(
      await ask('ledger.charm-runs.charge', { ...charge, runId: 'x', userId: 'stranger' }),
    ).toMatchObject({
      ok: false,
      error: { code: 'FORBIDDEN' },
    });
    expect(await ask('ledger.balance.get', { organizationId: 'nowhere' })).toMatchObject({
      ok: false,
      error: { code: 'NOT_FOUND' },
    });
    expect(
      await ask('ledger.charm-runs.charge', { ...charge, runId: 'big', amount: 1000 }),
    ).toMatchObject({
      ok: false,
      error: { code: 'INSUFFICIENT_CREDITS' },
    });
  });

  it.each([
    ['malformed JSON', '{"runId":'],
    ['an array', [1, 2]],
    ['a bad identifier', { runId: 'a.b', charmId: 'c', userId: 'u', amount: 1 }],
    ['a wildcard', { runId: 'r', charmId: '>', userId: 'u', amount: 1 }],
    ['a fractional amount', { runId: 'r', charmId: 'c', userId: 'u', amount: 1.5 }],
    ['an unknown field', { runId: 'r', charmId: 'c', userId: 'u', amount: 1, bonus: 1 }],
  ])('answers %s with a VALIDATION_FAILED error reply, never silence', async (_, body) => {
    const reply = await ask('ledger.charm-runs.charge', body);
    expect(reply).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
  });

  it('times each request from its handler to its reply in /metrics, by subject and outcome', async () => {
    const count = async (outcome: string) => {
      const { text } = await ledger.http.get('/metrics').expect(200);
      const name = `ledger_nats_request_seconds_count{subject="ledger.charm-runs.charge",outcome="${outcome}"}`;
      const line = text.split('\n').find((candidate: string) => candidate.startsWith(`${name} `));
      return line === undefined ? 0 : Number(line.slice(name.length + 1));
    };
    const before = { ok: await count('ok'), rejected: await count('rejected') };
    const charge = { runId: 'timed', charmId: 'c', userId: 'u', amount: 1, organizationId: org };
    expect(await ask('ledger.charm-runs.charge', charge)).toMatchObject({ ok: true });
    expect(await ask('ledger.charm-runs.charge', { ...charge, amount: 0 })).toMatchObject({
      ok: false,
    });
    expect({ ok: await count('ok'), rejected: await count('rejected') }).toEqual({
      ok: before.ok + 1,
      rejected: before.rejected + 1,
    });
  });

  it('answers the NATS service protocol as service ledger', async () => {
    const info = (await nats.request('$SRV.INFO.ledger', '', { timeout: 2000 })).json<{
      name: string;
      endpoints: { subject: string; queue_group: string }[];
    }>();
    expect(info.name).toBe('ledger');
    expect(info.endpoints.map((endpoint) => endpoint.subject).sort()).toEqual([
      'ledger.balance.get',
      'ledger.charm-runs.charge',
      'ledger.charm-runs.refund',
      'ledger.grants.create',
      'ledger.reservations.capture',
      'ledger.reservations.create',
      'ledger.reservations.release',
    ]);
    expect(new Set(info.endpoints.map((endpoint) => endpoint.queue_group))).toEqual(
      new Set(['ledger']),
    );
  });

  it('has a typed client: request helpers, error replies as LedgerClientError, events once each', async () => {
    const client = new LedgerClient(nats);
    const charged = await client.charge({
      runId: 'typed',
      charmId: 'c',
      userId: 'u',
      amount: 2,
      organizationId: org,
    });
    expect(charged).toMatchObject({ runId: 'typed', charged: 2, replayed: false });
    expect((await client.balance(org)).available).toBe(charged.balance.available);
    const refused = await client
      .charge({ runId: 'typed', charmId: 'c', userId: 'u', amount: 3, organizationId: org })
      .catch((error) => error);
    expect(refused).toBeInstanceOf(LedgerClientError);
    expect(refused.code).toBe('CONFLICT');

    // A repeat of an event (as after a publisher retry outside the dedupe window) is dropped.
    const seen: LedgerEventMessage[] = [];
    const controller = new AbortController();
    const consuming = consumeLedgerEvents(nats, (event) => void seen.push(event), {
      filterSubject: `ledger.events.organization.${org}.>`,
      signal: controller.signal,
    });
    const deadline = Date.now() + 10_000;
    while (
      !seen.some((event) => event.data && (event.data as { runId?: string }).runId === 'typed') &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const typed = seen.find((event) => (event.data as { runId?: string }).runId === 'typed')!;
    await jetstream(nats).publish(
      `ledger.events.organization.${org}.CharmRunCharged`,
      JSON.stringify(typed),
      { msgID: `repeat-${typed.eventId}` },
    );
    await new Promise((r) => setTimeout(r, 500));
    controller.abort();
    await consuming;
    expect(seen.filter((event) => event.eventId === typed.eventId)).toHaveLength(1);
    expect(new Set(seen.map((event) => event.eventId)).size).toBe(seen.length);
    expect(seen[0].type).toBe('OrganizationCreated');
  });
});

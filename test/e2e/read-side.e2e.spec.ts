import type { DataSource } from 'typeorm';
import { READ_MODEL_DATABASE } from '../../src/read/read-models';
import {
  newDataDir,
  removeDataDir,
  startLedger,
  TestClock,
  type RunningLedger,
} from '../support/ledger-app';
import { createTestDatabase } from '../support/postgres';
import { tokenFor } from '../support/tokens';

/**
 * The read side over HTTP, with read models on SQLite and on the PostgreSQL server here, in
 * its own thread (the default) and inline.
 */
describe.each([
  ['sqlite', 'thread'],
  ['postgres', 'thread'],
  ['sqlite', 'inline'],
] as const)('read side on %s, %s', (database, readSide) => {
  let dataDir: string;
  let ledger: RunningLedger;
  let drop: (() => Promise<void>) | undefined;
  let last = '0';
  const clock = new TestClock(Date.parse('2026-04-10T09:00:00Z'));

  beforeAll(async () => {
    dataDir = newDataDir();
    const env: Record<string, string> = { LEDGER_READ_SIDE: readSide };
    if (database === 'postgres') {
      const created = await createTestDatabase();
      env.DATABASE_URL = created.url;
      drop = created.drop;
    }
    ledger = await startLedger(dataDir, { clock, env });
    const write = async (method: 'post' | 'put', path: string, body: object) => {
      const response = await ledger.http[method](path).send(body);
      expect([200, 201]).toContain(response.status);
      last = response.body.position;
      return response.body;
    };
    await write('post', '/v1/users', { userId: 'ann' });
    await write('post', '/v1/users', { userId: 'ben' });
    await write('post', '/v1/organizations', {
      organizationId: 'acme',
      name: 'Acme',
      ownerUserId: 'ann',
    });
    await write('post', '/v1/organizations/acme/members', { userId: 'ben', role: 'billing' });
    await write('put', '/v1/users/ben/active-organization', { organizationId: 'acme' });
    await write('post', '/v1/organizations/acme/grants', {
      grantId: 'g',
      amount: 1000,
      source: 'purchase',
    });
    const day = (iso: string) => (clock.current = Date.parse(iso));
    day('2026-04-10T09:00:00Z');
    await write('post', '/v1/charm-runs', {
      runId: 'r1',
      charmId: 'summarize',
      userId: 'ann',
      amount: 10,
      organizationId: 'acme',
    });
    await write('post', '/v1/charm-runs', {
      runId: 'r2',
      charmId: 'translate',
      userId: 'ben',
      amount: 20,
      organizationId: 'acme',
    });
    day('2026-04-11T23:59:00Z');
    await write('post', '/v1/charm-runs', {
      runId: 'r3',
      charmId: 'summarize',
      userId: 'ben',
      amount: 40,
      organizationId: 'acme',
    });
    await write('post', '/v1/organizations/acme/reservations', {
      reservationId: 'h',
      charmId: 'render',
      userId: 'ann',
      amount: 50,
    });
    await write('post', '/v1/organizations/acme/reservations/h/capture', { amount: 30 });
    day('2026-04-12T08:00:00Z');
    // Refunds count on the run's own day.
    await write('post', '/v1/organizations/acme/charm-runs/r1/refund', { amount: 4 });
  });
  afterAll(async () => {
    await ledger.close();
    await drop?.();
    removeDataDir(dataDir);
  });

  const read = (path: string) =>
    ledger.http.get(`${path}${path.includes('?') ? '&' : '?'}minPosition=${last}`);

  it("lists a user's organizations with role, kind and which is active", async () => {
    const ben = await read('/v1/users/ben/organizations').expect(200);
    expect(ben.body).toEqual({
      userId: 'ben',
      activeOrganizationId: 'acme',
      organizations: [
        { organizationId: 'acme', name: 'Acme', kind: 'company', role: 'billing', active: true },
        {
          organizationId: 'personal-ben',
          name: 'Personal',
          kind: 'personal',
          role: 'owner',
          active: false,
        },
      ],
    });
    const self = await tokenFor({ sub: 'ann' });
    await ledger.anonymous
      .get('/v1/users/ann/organizations')
      .set('authorization', `Bearer ${self}`)
      .expect(200);
    await ledger.anonymous
      .get('/v1/users/ben/organizations')
      .set('authorization', `Bearer ${self}`)
      .expect(403);
  });

  it.each([
    [
      'day',
      [
        { key: '2026-04-10', runs: 2, credits: 30, refunded: 4 },
        { key: '2026-04-11', runs: 2, credits: 70, refunded: 0 },
      ],
    ],
    [
      'charm',
      [
        { key: 'render', runs: 1, credits: 30, refunded: 0 },
        { key: 'summarize', runs: 2, credits: 50, refunded: 4 },
        { key: 'translate', runs: 1, credits: 20, refunded: 0 },
      ],
    ],
    [
      'user',
      [
        { key: 'ann', runs: 2, credits: 40, refunded: 4 },
        { key: 'ben', runs: 2, credits: 60, refunded: 0 },
      ],
    ],
  ])(
    'reports usage by %s, with totals that add up, as JSON and as the same CSV',
    async (groupBy, rows) => {
      const path = `/v1/organizations/acme/usage?from=2026-04-01&to=2026-04-30&groupBy=${groupBy}`;
      const json = await read(path).expect(200);
      expect(json.body.rows).toEqual(rows);
      expect(json.body.totals).toEqual({ runs: 4, credits: 100, refunded: 4 });
      const csv = await read(path).set('accept', 'text/csv').expect(200);
      expect(csv.headers['content-type']).toContain('text/csv');
      const [header, ...lines] = csv.text.trim().split('\r\n');
      expect(header).toBe('key,runs,credits,refunded');
      const parsed = lines.map((line) => {
        const [key, runs, credits, refunded] = line.split(',');
        return { key, runs: Number(runs), credits: Number(credits), refunded: Number(refunded) };
      });
      expect(parsed).toEqual(json.body.rows);
    },
  );

  it('keeps usage inside the dates asked for, and refuses bad ranges', async () => {
    const one = await read('/v1/organizations/acme/usage?from=2026-04-11&to=2026-04-11').expect(
      200,
    );
    expect(one.body.totals).toEqual({ runs: 2, credits: 70, refunded: 0 });
    await read('/v1/organizations/acme/usage?from=2026-04-12&to=2026-04-11').expect(400);
    await read('/v1/organizations/acme/usage?groupBy=week').expect(400);
    const member = await tokenFor({ sub: 'ann', org: 'acme' });
    await ledger.anonymous
      .get('/v1/organizations/acme/usage')
      .set('authorization', `Bearer ${member}`)
      .expect(200);
  });

  it('verifies the read models against a replay of the stream, and names each difference', async () => {
    const verified = await ledger.http.post('/v1/organizations/acme/audit/verify').expect(200);
    expect(verified.body).toMatchObject({
      organizationId: 'acme',
      consistent: true,
      differences: [],
    });
    expect(verified.body.eventsReplayed).toBe(9);

    const readModel = ledger.app.get<DataSource>(READ_MODEL_DATABASE);
    await readModel.query(
      `UPDATE "balance_grants" SET "remaining" = "remaining" + 1 WHERE "organization_id" = 'acme'`,
    );
    await readModel.query(
      `DELETE FROM "usage_runs" WHERE "organization_id" = 'acme' AND "run_id" = 'r2'`,
    );
    const broken = await ledger.http.post('/v1/organizations/acme/audit/verify').expect(200);
    expect(broken.body.consistent).toBe(false);
    expect(broken.body.differences).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          table: 'balance_grants',
          problem: 'different',
          column: 'remaining',
        }),
        expect.objectContaining({
          table: 'usage_runs',
          problem: 'missing',
          key: { organization_id: 'acme', run_id: 'r2' },
        }),
      ]),
    );
    await readModel.query(
      `UPDATE "balance_grants" SET "remaining" = "remaining" - 1 WHERE "organization_id" = 'acme'`,
    );
  });

  it('waits for minPosition on every read, and answers 503 UNAVAILABLE when it is not reached in 5 s', async () => {
    // Far past anything written: positions are not counts on every store.
    const { body } = await ledger.http.get('/v1/organizations/acme/balance').expect(200);
    const future = (BigInt(body.position) + 1n) * 1000n;
    const reads = [
      '/v1/organizations/acme/balance',
      '/v1/organizations/acme/history',
      '/v1/organizations/acme',
      '/v1/organizations/acme/members',
      '/v1/organizations/acme/usage',
      '/v1/users/ben/organizations',
    ];
    const started = Date.now();
    const responses = await Promise.all(
      reads.map(async (path) => {
        const response = await ledger.http.get(`${path}?minPosition=${future}`);
        return { path, elapsed: Date.now() - started, response };
      }),
    );
    for (const { path, elapsed, response } of responses) {
      expect({ path, status: response.status }).toEqual({ path, status: 503 });
      expect(elapsed).toBeGreaterThanOrEqual(4900);
      expect(response.body.code).toBe('UNAVAILABLE');
      expect(response.headers['retry-after']).toBeDefined();
    }
    await ledger.http.get('/v1/organizations/acme/balance?minPosition=abc').expect(400);
  }, 15_000);
});

import type TestAgent from 'supertest/lib/agent';
import { EVENT_STORE, type EventStore } from '../../src/event-store/event-store';
import {
  newDataDir,
  removeDataDir,
  startLedger,
  TestClock,
  type RunningLedger,
} from '../support/ledger-app';

/** The whole ledger over HTTP on the embedded store: what a caller of API.md sees. */
describe('credit ledger over HTTP', () => {
  let dataDir: string;
  let ledger: RunningLedger;
  let http: TestAgent;
  const clock = new TestClock();

  beforeAll(async () => {
    dataDir = newDataDir();
    ledger = await startLedger(dataDir, { clock });
    http = ledger.http;
  });
  afterAll(async () => {
    await ledger.close();
    removeDataDir(dataDir);
  });

  /** A read (expected 200) from the read models once they have seen every write so far. */
  const settled = async (path: string) => {
    const head = await ledger.app.get<EventStore>(EVENT_STORE).headPosition();
    return http.get(path).query({ minPosition: head.toString() }).expect(200);
  };
  const signUp = (userId: string) => http.post('/v1/users').send({ userId, name: userId });
  const company = (organizationId: string, ownerUserId: string) =>
    http
      .post('/v1/organizations')
      .send({ organizationId, name: `${organizationId} Inc`, ownerUserId });
  const grant = (organizationId: string, body: Record<string, unknown>) =>
    http.post(`/v1/organizations/${organizationId}/grants`).send({ source: 'purchase', ...body });
  const balance = async (organizationId: string) =>
    (await http.get(`/v1/organizations/${organizationId}/balance`).expect(200)).body;
  const types = async (organizationId: string) =>
    (
      await http.get(`/v1/organizations/${organizationId}/history?limit=1000`).expect(200)
    ).body.events.map((event: { type: string }) => event.type);

  it('signs a user up with a personal organization that is active, once', async () => {
    const first = await signUp('alice').expect(201);
    expect(first.body).toMatchObject({
      userId: 'alice',
      personalOrganizationId: 'personal-alice',
      activeOrganizationId: 'personal-alice',
      replayed: false,
    });
    expect(first.body.position).toMatch(/^\d+$/);
    const again = await signUp('alice').expect(200);
    expect(again.body).toMatchObject({ personalOrganizationId: 'personal-alice', replayed: true });
    const personal = await settled('/v1/organizations/personal-alice');
    expect(personal.body).toMatchObject({ kind: 'personal', ownerUserId: 'alice', memberCount: 1 });
  });

  it('creates a company organization with its owner as first member', async () => {
    await signUp('bob').expect(201);
    const created = await company('acme', 'alice').expect(201);
    expect(created.body).toMatchObject({
      organizationId: 'acme',
      kind: 'company',
      ownerUserId: 'alice',
    });
    await company('acme', 'alice').expect(200);
    const other = await company('acme', 'bob').expect(409);
    expect(other.body.code).toBe('CONFLICT');
    expect(other.headers['content-type']).toContain('application/problem+json');
    const members = await settled('/v1/organizations/acme/members');
    expect(members.body.members).toEqual([{ userId: 'alice', role: 'owner' }]);
  });

  it('refuses company organizations in the personal- namespace', async () => {
    const response = await company('personal-carol', 'alice').expect(400);
    expect(response.body.errors).toEqual([expect.objectContaining({ field: 'organizationId' })]);
  });

  it('adds, re-roles and removes members, never the last owner', async () => {
    await http
      .post('/v1/organizations/acme/members')
      .send({ userId: 'bob', role: 'member' })
      .expect(201);
    await http
      .post('/v1/organizations/acme/members')
      .send({ userId: 'bob', role: 'member' })
      .expect(200);
    await http
      .post('/v1/organizations/acme/members')
      .send({ userId: 'bob', role: 'admin' })
      .expect(409);
    await http.patch('/v1/organizations/acme/members/bob').send({ role: 'billing' }).expect(200);
    const lastOwner = await http.delete('/v1/organizations/acme/members/alice').expect(409);
    expect(lastOwner.body.detail).toMatch(/last owner/);
    await http.patch('/v1/organizations/acme/members/alice').send({ role: 'admin' }).expect(409);
    await http.delete('/v1/organizations/acme/members/nobody').expect(404);
    const members = await settled('/v1/organizations/acme/members');
    expect(members.body.members).toEqual([
      { userId: 'alice', role: 'owner' },
      { userId: 'bob', role: 'billing' },
    ]);
  });

  it('switches the active organization only to one the user is a member of', async () => {
    const denied = await http
      .put('/v1/users/alice/active-organization')
      .send({ organizationId: 'personal-bob' })
      .expect(403);
    expect(denied.body.code).toBe('FORBIDDEN');
    await http
      .put('/v1/users/bob/active-organization')
      .send({ organizationId: 'acme' })
      .expect(200);
    await http
      .put('/v1/users/bob/active-organization')
      .send({ organizationId: 'nowhere' })
      .expect(404);
  });

  it('grants credits and charges a run once, from the active organization by default', async () => {
    const granted = await grant('acme', { grantId: 'g-1', amount: 100 }).expect(201);
    expect(granted.body).toMatchObject({
      priority: 100,
      expiresAt: null,
      balance: { available: 100, reserved: 0 },
    });
    await grant('acme', { grantId: 'g-1', amount: 100 }).expect(200);
    await grant('acme', { grantId: 'g-1', amount: 99 }).expect(409);

    const charge = { runId: 'run-1', charmId: 'summarize', userId: 'bob', amount: 30 };
    const first = await http.post('/v1/charm-runs').send(charge).expect(201);
    expect(first.body).toMatchObject({
      runId: 'run-1',
      organizationId: 'acme',
      charged: 30,
      balance: { available: 70 },
      replayed: false,
    });
    const repeat = await http.post('/v1/charm-runs').send(charge).expect(200);
    expect(repeat.body).toMatchObject({ charged: 30, balance: { available: 70 }, replayed: true });
    const changed = await http
      .post('/v1/charm-runs')
      .send({ ...charge, amount: 31 })
      .expect(409);
    expect(changed.body.code).toBe('CONFLICT');
    expect((await balance('acme')).available).toBe(70);
  });

  it('refuses a charge beyond the balance with 402 and changes nothing', async () => {
    const before = await types('acme');
    const response = await http
      .post('/v1/charm-runs')
      .send({ runId: 'run-big', charmId: 'c', userId: 'bob', amount: 71, organizationId: 'acme' })
      .expect(402);
    expect(response.body).toMatchObject({
      code: 'INSUFFICIENT_CREDITS',
      available: 70,
      requested: 71,
    });
    expect(await types('acme')).toEqual(before);
  });

  it('refuses to charge a user who is not a member', async () => {
    await http
      .post('/v1/charm-runs')
      .send({
        runId: 'run-x',
        charmId: 'c',
        userId: 'alice',
        amount: 1,
        organizationId: 'personal-bob',
      })
      .expect(403);
  });

  it('burns grants down by priority, then earliest expiry, then age, and records allocations', async () => {
    await company('burn', 'alice').expect(201);
    const soon = new Date(clock.now() + 3_600_000).toISOString();
    const later = new Date(clock.now() + 7_200_000).toISOString();
    await grant('burn', { grantId: 'plain', amount: 10 }).expect(201);
    await grant('burn', { grantId: 'later', amount: 10, expiresAt: later }).expect(201);
    await grant('burn', { grantId: 'soon', amount: 10, expiresAt: soon }).expect(201);
    await grant('burn', { grantId: 'promo', amount: 5, priority: 10 }).expect(201);
    const run = await http
      .post('/v1/charm-runs')
      .send({ runId: 'r', charmId: 'c', userId: 'alice', amount: 27, organizationId: 'burn' })
      .expect(201);
    expect(run.body.allocations).toEqual([
      { grantId: 'promo', amount: 5 },
      { grantId: 'soon', amount: 10 },
      { grantId: 'later', amount: 10 },
      { grantId: 'plain', amount: 2 },
    ]);
    const after = await balance('burn');
    expect(after.grants).toEqual([
      expect.objectContaining({ grantId: 'plain', remaining: 8, priority: 100, expiresAt: null }),
    ]);
  });

  it('refunds in part and in whole into the grants the run came from, never more', async () => {
    const partial = await http
      .post('/v1/organizations/burn/charm-runs/r/refund')
      .send({ amount: 4 })
      .expect(201);
    expect(partial.body).toMatchObject({
      refunded: 4,
      totalRefunded: 4,
      allocations: [
        { grantId: 'plain', amount: 2 },
        { grantId: 'later', amount: 2 },
      ],
    });
    await http.post('/v1/organizations/burn/charm-runs/r/refund').send({ amount: 24 }).expect(409);
    const rest = await http.post('/v1/organizations/burn/charm-runs/r/refund').send({}).expect(201);
    expect(rest.body).toMatchObject({ refunded: 23, totalRefunded: 27 });
    await http.post('/v1/organizations/burn/charm-runs/r/refund').send({}).expect(409);
    await http.post('/v1/organizations/burn/charm-runs/nope/refund').send({}).expect(404);
    expect((await balance('burn')).available).toBe(35);
  });

  it('makes a refund with a refundId idempotent', async () => {
    await http
      .post('/v1/charm-runs')
      .send({ runId: 'r2', charmId: 'c', userId: 'alice', amount: 5, organizationId: 'burn' })
      .expect(201);
    const body = { amount: 2, refundId: 'rf-1' };
    await http.post('/v1/organizations/burn/charm-runs/r2/refund').send(body).expect(201);
    const again = await http
      .post('/v1/organizations/burn/charm-runs/r2/refund')
      .send(body)
      .expect(200);
    expect(again.body).toMatchObject({ refunded: 2, totalRefunded: 2, replayed: true });
  });

  it('never counts an expired grant, and the scheduler writes CreditsExpired', async () => {
    await company('expiring', 'alice').expect(201);
    const expiresAt = new Date(clock.now() + 60_000).toISOString();
    await grant('expiring', { grantId: 'short', amount: 50, expiresAt }).expect(201);
    await grant('expiring', { grantId: 'long', amount: 5 }).expect(201);
    expect((await balance('expiring')).available).toBe(55);
    clock.advance(60_000);
    expect((await balance('expiring')).available).toBe(5);
    await http
      .post('/v1/charm-runs')
      .send({
        runId: 'too-much',
        charmId: 'c',
        userId: 'alice',
        amount: 6,
        organizationId: 'expiring',
      })
      .expect(402);
    await eventually(async () => expect(await types('expiring')).toContain('CreditsExpired'));
    const history = await http.get('/v1/organizations/expiring/history').expect(200);
    const expired = history.body.events.find(
      (event: { type: string }) => event.type === 'CreditsExpired',
    );
    expect(expired.data).toEqual({ grantId: 'short', amount: 50 });
    expect(expired.metadata.actor).toEqual({ kind: 'service', id: 'ledger' });
  });

  it('holds, captures part and gives the rest back; releases; expires unused holds', async () => {
    await company('holds', 'alice').expect(201);
    await grant('holds', { grantId: 'g', amount: 100 }).expect(201);
    const hold = { reservationId: 'h1', charmId: 'long-charm', userId: 'alice', amount: 40 };
    const held = await http.post('/v1/organizations/holds/reservations').send(hold).expect(201);
    expect(held.body.balance).toEqual({ available: 60, reserved: 40 });
    await http.post('/v1/organizations/holds/reservations').send(hold).expect(200);
    await http
      .post('/v1/organizations/holds/reservations/h1/capture')
      .send({ amount: 41 })
      .expect(409);
    const captured = await http
      .post('/v1/organizations/holds/reservations/h1/capture')
      .send({ amount: 25, runId: 'run-h1' })
      .expect(201);
    expect(captured.body).toMatchObject({
      captured: 25,
      released: 15,
      runId: 'run-h1',
      balance: { available: 75, reserved: 0 },
    });
    await http.post('/v1/organizations/holds/reservations/h1/release').expect(409);

    await http
      .post('/v1/organizations/holds/reservations')
      .send({ ...hold, reservationId: 'h2', amount: 10 })
      .expect(201);
    const released = await http.post('/v1/organizations/holds/reservations/h2/release').expect(201);
    expect(released.body).toMatchObject({
      released: 10,
      reason: 'released',
      balance: { available: 75, reserved: 0 },
    });
    await http.post('/v1/organizations/holds/reservations/h2/release').expect(200);

    await http
      .post('/v1/organizations/holds/reservations')
      .send({ ...hold, reservationId: 'h3', amount: 5, ttlSeconds: 30 })
      .expect(201);
    expect((await balance('holds')).reserved).toBe(5);
    clock.advance(30_000);
    await eventually(async () => expect((await balance('holds')).reserved).toBe(0));
    const history = await http.get('/v1/organizations/holds/history').expect(200);
    const release = history.body.events.filter(
      (e: { type: string }) => e.type === 'ReservationReleased',
    );
    expect(release.map((e: { data: unknown }) => e.data)).toContainEqual({
      reservationId: 'h3',
      amount: 5,
      reason: 'expired',
      allocations: [{ grantId: 'g', amount: 5 }],
    });
    expect((await balance('holds')).available).toBe(75);
  });

  it('transfers credits between organizations, once', async () => {
    const body = { transferId: 't-1', toOrganizationId: 'holds', amount: 20 };
    const sent = await http.post('/v1/organizations/acme/transfers').send(body).expect(201);
    expect(sent.body).toMatchObject({
      fromOrganizationId: 'acme',
      toOrganizationId: 'holds',
      amount: 20,
      balance: { available: 50 },
    });
    await http.post('/v1/organizations/acme/transfers').send(body).expect(200);
    await http
      .post('/v1/organizations/acme/transfers')
      .send({ ...body, amount: 21 })
      .expect(409);
    await http
      .post('/v1/organizations/acme/transfers')
      .send({ ...body, transferId: 't-2', toOrganizationId: 'ghost' })
      .expect(404);
    await http
      .post('/v1/organizations/acme/transfers')
      .send({ ...body, transferId: 't-3', toOrganizationId: 'acme' })
      .expect(400);
    const received = await balance('holds');
    expect(received.available).toBe(95);
    expect(received.grants).toContainEqual(
      expect.objectContaining({ grantId: 'transfer-t-1', source: 'transfer', remaining: 20 }),
    );
    expect((await types('holds')).filter((t: string) => t === 'CreditsTransferredIn')).toHaveLength(
      1,
    );
  });

  it('moves a removed member whose active organization it was back to their personal one', async () => {
    const organizations = async () => {
      const charge = await http.post('/v1/charm-runs').send({
        runId: `probe-${Math.random().toString(36).slice(2)}`,
        charmId: 'c',
        userId: 'bob',
        amount: 1,
      });
      return charge.body;
    };
    // bob works in acme (switched above); once removed, his runs go to his personal org.
    await http.delete('/v1/organizations/acme/members/bob').expect(204);
    const probe = await organizations();
    expect(probe.code).toBe('INSUFFICIENT_CREDITS');
    await grant('personal-bob', { grantId: 'welcome', amount: 3 }).expect(201);
    const charged = await organizations();
    expect(charged.organizationId).toBe('personal-bob');
  });

  it('tells when the balance first falls below the threshold, once per crossing', async () => {
    await company('low', 'alice').expect(201);
    await grant('low', { grantId: 'g', amount: 100 }).expect(201);
    await http
      .put('/v1/organizations/low/low-balance-threshold')
      .send({ threshold: 50 })
      .expect(200);
    const charge = (runId: string, amount: number) =>
      http
        .post('/v1/charm-runs')
        .send({ runId, charmId: 'c', userId: 'alice', amount, organizationId: 'low' })
        .expect(201);
    await charge('a', 40);
    await charge('b', 20);
    await charge('c', 5);
    await grant('low', { grantId: 'g2', amount: 100 }).expect(201);
    await charge('d', 100);
    const reached = (await types('low')).filter((t: string) => t === 'LowBalanceReached');
    expect(reached).toHaveLength(2);
    const organization = await settled('/v1/organizations/low');
    expect(organization.body.lowBalanceThreshold).toBe(50);
  });

  it('answers the balance as it was at any time, and history with the state then', async () => {
    await company('timeline', 'alice').expect(201);
    await grant('timeline', { grantId: 'g', amount: 10 }).expect(201);
    const between = new Date(clock.now()).toISOString();
    clock.advance(1000);
    await http
      .post('/v1/charm-runs')
      .send({ runId: 'r', charmId: 'c', userId: 'alice', amount: 4, organizationId: 'timeline' })
      .expect(201);
    expect((await balance('timeline')).available).toBe(6);
    const then = await http.get(`/v1/organizations/timeline/balance?at=${between}`).expect(200);
    expect(then.body).toMatchObject({ available: 10, reserved: 0 });
    const history = await http.get(`/v1/organizations/timeline/history?at=${between}`).expect(200);
    expect(history.body.events.map((e: { type: string }) => e.type)).toEqual([
      'OrganizationCreated',
      'CreditsGranted',
    ]);
    expect(history.body.stateAt).toMatchObject({
      available: 10,
      members: [{ userId: 'alice', role: 'owner' }],
    });
    const page = await http
      .get('/v1/organizations/timeline/history?fromRevision=1&limit=1')
      .expect(200);
    expect(page.body.events).toHaveLength(1);
    expect(page.body.events[0]).toMatchObject({ revision: 1, type: 'CreditsGranted' });
    expect(page.body.events[0].metadata).toEqual(
      expect.objectContaining({
        eventId: expect.any(String),
        occurredAt: expect.any(String),
        actor: { kind: 'service', id: 'test-suite' },
      }),
    );
    expect(page.body.nextRevision).toBe(2);
    await http.get('/v1/organizations/nobody/history').expect(404);
    await http.get('/v1/organizations/nobody/balance').expect(404);
  });

  it('counts commands, group-commit batches and loads from the store in /metrics', async () => {
    const metrics = await http.get('/metrics').expect(200);
    expect(metrics.headers['content-type']).toContain('text/plain');
    const count = (outcome: string) =>
      Number(
        new RegExp(
          `ledger_commands_total\\{aggregate="organization",outcome="${outcome}"\\} (\\d+)`,
        ).exec(metrics.text)?.[1],
      );
    expect(count('written')).toBeGreaterThan(20);
    expect(count('replayed')).toBeGreaterThan(3);
    expect(count('rejected')).toBeGreaterThan(3);
    expect(metrics.text).toContain('ledger_batch_commands_bucket');
    expect(metrics.text).toMatch(
      /ledger_aggregate_load_seconds_count\{aggregate="organization",from="events"\} [1-9]/,
    );
  });

  it('serves /health and the OpenAPI document', async () => {
    const health = await http.get('/health').expect(200);
    expect(health.body.checks.eventStore.status).toBe('up');
    const docs = await http.get('/docs-json').expect(200);
    expect(Object.keys(docs.body.paths)).toEqual(
      expect.arrayContaining(['/v1/charm-runs', '/v1/organizations/{organizationId}/grants']),
    );
  });
});

/** Polls until the assertion passes (follow-ups run on a timer), at most 5 s. */
async function eventually(assertion: () => Promise<void>, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await assertion();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

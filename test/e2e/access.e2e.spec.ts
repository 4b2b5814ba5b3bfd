import type TestAgent from 'supertest/lib/agent';
import request from 'supertest';
import { EVENT_STORE, type EventStore } from '../../src/event-store/event-store';
import { newDataDir, removeDataDir, startLedger, type RunningLedger } from '../support/ledger-app';
import { tokenFor, type TokenClaims } from '../support/tokens';

/**
 * API.md's "Who may do what", cell by cell: every endpoint × caller kind × role, and a
 * refused call writes nothing.
 */
type Role = 'owner' | 'admin' | 'billing' | 'member';
const ROLES: Role[] = ['owner', 'admin', 'billing', 'member'];

interface Caller {
  name: string;
  claims: TokenClaims;
  /** The role of the caller's user in `acme`, or none. */
  role?: Role;
  service?: boolean;
  userId?: string;
}

const callers: Caller[] = [
  { name: 'service', claims: { sub: 'billing-service', scope: 'ledger:service' }, service: true },
  ...ROLES.map((role) => ({
    name: `user ${role}`,
    claims: { sub: `u-${role}` },
    role,
    userId: `u-${role}`,
  })),
  ...ROLES.map((role) => ({
    name: `integration of ${role}`,
    claims: { sub: `u-${role}`, org: 'acme' },
    role,
    userId: `u-${role}`,
  })),
  { name: 'user outsider', claims: { sub: 'u-outsider' }, userId: 'u-outsider' },
  {
    name: 'integration for another org',
    claims: { sub: 'u-owner', org: 'other' },
    userId: 'u-owner',
  },
  { name: 'reports service', claims: { sub: 'finance', scope: 'ledger:reports' } },
  { name: 'audit service', claims: { sub: 'auditor', scope: 'ledger:audit' } },
];

const EVERYONE: Role[] = ['owner', 'admin', 'billing', 'member'];
const MONEY: Role[] = ['owner', 'admin', 'billing'];
const MANAGERS: Role[] = ['owner', 'admin'];

interface Endpoint {
  name: string;
  allowed: Role[];
  /** Scopes other than ledger:service that allow it. */
  scopes?: string[];
  /** Makes what the call needs, with the service token. */
  prepare?: (cell: string) => Promise<unknown>;
  call: (as: TestAgent, cell: string, caller: Caller) => Promise<request.Response>;
  writes: boolean;
}

describe('who may do what', () => {
  let dataDir: string;
  let ledger: RunningLedger;
  const agents = new Map<string, TestAgent>();

  const service = () => ledger.http;
  const head = async () =>
    (await ledger.app.get<EventStore>(EVENT_STORE).headPosition()).toString();

  beforeAll(async () => {
    dataDir = newDataDir();
    ledger = await startLedger(dataDir);
    for (const org of ['acme', 'other', 'dest']) {
      await service()
        .post('/v1/organizations')
        .send({ organizationId: org, name: org, ownerUserId: 'u-owner' })
        .expect(201);
    }
    for (const role of ['admin', 'billing', 'member'] as Role[]) {
      await service()
        .post('/v1/organizations/acme/members')
        .send({ userId: `u-${role}`, role })
        .expect(201);
      await service()
        .post('/v1/organizations/dest/members')
        .send({ userId: `u-${role}`, role: 'member' })
        .expect(201);
    }
    await service()
      .post('/v1/organizations/other/members')
      .send({ userId: 'u-outsider', role: 'owner' })
      .expect(201);
    await service()
      .post('/v1/organizations/acme/grants')
      .send({ grantId: 'g', amount: 1_000_000, source: 'purchase' })
      .expect(201);
    for (const caller of callers) {
      const token = await tokenFor(caller.claims);
      agents.set(
        caller.name,
        request.agent(ledger.app.getHttpServer()).set('authorization', `Bearer ${token}`),
      );
    }
  });
  afterAll(async () => {
    await ledger.close();
    removeDataDir(dataDir);
  });

  /** The user a call acts for: the caller's own, or (for services) a member. */
  const actingUser = (caller: Caller) => caller.userId ?? 'u-member';

  const hold = async (cell: string) => {
    await service()
      .post('/v1/organizations/acme/reservations')
      .send({ reservationId: cell, charmId: 'c', userId: 'u-member', amount: 2 })
      .expect(201);
  };

  const addMember = (cell: string) =>
    service()
      .post('/v1/organizations/acme/members')
      .send({ userId: cell, role: 'member' })
      .expect(201);

  const endpoints: Endpoint[] = [
    {
      name: 'charge',
      allowed: EVERYONE,
      writes: true,
      call: (as, cell, caller) =>
        as.post('/v1/charm-runs').send({
          runId: cell,
          charmId: 'c',
          userId: actingUser(caller),
          amount: 1,
          organizationId: 'acme',
        }),
    },
    {
      name: 'reserve',
      allowed: EVERYONE,
      writes: true,
      call: (as, cell, caller) =>
        as
          .post('/v1/organizations/acme/reservations')
          .send({ reservationId: cell, charmId: 'c', userId: actingUser(caller), amount: 1 }),
    },
    {
      name: 'capture',
      allowed: EVERYONE,
      writes: true,
      prepare: hold,
      call: (as, cell) =>
        as.post(`/v1/organizations/acme/reservations/${cell}/capture`).send({ amount: 1 }),
    },
    {
      name: 'release',
      allowed: EVERYONE,
      writes: true,
      prepare: hold,
      call: (as, cell) => as.post(`/v1/organizations/acme/reservations/${cell}/release`),
    },
    {
      name: 'read balance',
      allowed: EVERYONE,
      writes: false,
      call: (as) => as.get('/v1/organizations/acme/balance'),
    },
    {
      name: 'read the organization',
      allowed: EVERYONE,
      writes: false,
      call: async (as) => as.get(`/v1/organizations/acme?minPosition=${await head()}`),
    },
    {
      name: 'list members',
      allowed: EVERYONE,
      writes: false,
      call: async (as) => as.get(`/v1/organizations/acme/members?minPosition=${await head()}`),
    },
    {
      name: 'set the low-balance threshold',
      allowed: MONEY,
      writes: true,
      call: (as, cell) =>
        as
          .put('/v1/organizations/acme/low-balance-threshold')
          .send({ threshold: 1 + (hash(cell) % 1000) }),
    },
    {
      name: 'refund',
      allowed: MONEY,
      writes: true,
      prepare: (cell) =>
        service()
          .post('/v1/charm-runs')
          .send({
            runId: cell,
            charmId: 'c',
            userId: 'u-member',
            amount: 2,
            organizationId: 'acme',
          })
          .expect(201),
      call: (as, cell) => as.post(`/v1/organizations/acme/charm-runs/${cell}/refund`).send({}),
    },
    {
      name: 'read history',
      allowed: MANAGERS,
      scopes: ['ledger:audit'],
      writes: false,
      call: (as) => as.get('/v1/organizations/acme/history?limit=1'),
    },
    {
      name: 'add a member',
      allowed: MANAGERS,
      writes: true,
      call: (as, cell) =>
        as.post('/v1/organizations/acme/members').send({ userId: cell, role: 'member' }),
    },
    {
      name: 'change a role',
      allowed: MANAGERS,
      writes: true,
      prepare: addMember,
      call: (as, cell) =>
        as.patch(`/v1/organizations/acme/members/${cell}`).send({ role: 'billing' }),
    },
    {
      name: 'remove a member',
      allowed: MANAGERS,
      writes: true,
      prepare: addMember,
      call: (as, cell) => as.delete(`/v1/organizations/acme/members/${cell}`),
    },
    {
      name: 'transfer credits out',
      allowed: MANAGERS,
      writes: true,
      call: (as, cell) =>
        as
          .post('/v1/organizations/acme/transfers')
          .send({ transferId: cell, toOrganizationId: 'dest', amount: 1 }),
    },
    {
      name: 'grant credits',
      allowed: [],
      writes: true,
      call: (as, cell) =>
        as.post('/v1/organizations/acme/grants').send({ grantId: cell, amount: 1, source: 'plan' }),
    },
  ];

  const expectedStatus = (endpoint: Endpoint, caller: Caller): 'allowed' | 403 => {
    if (caller.service) return 'allowed';
    if (caller.claims.scope)
      return endpoint.scopes?.includes(caller.claims.scope) ? 'allowed' : 403;
    if (caller.claims.org && caller.claims.org !== 'acme') return 403;
    return caller.role && endpoint.allowed.includes(caller.role) ? 'allowed' : 403;
  };

  const cells = endpoints.flatMap((endpoint) =>
    callers.map(
      (caller) => [endpoint.name, caller.name, expectedStatus(endpoint, caller)] as const,
    ),
  );

  const streamLength = async () =>
    (await service().get('/v1/organizations/acme/history?limit=1000').expect(200)).body.events
      .length as number;

  it.each(cells)('%s as %s: %s', async (endpointName, callerName, expected) => {
    const endpoint = endpoints.find((e) => e.name === endpointName)!;
    const caller = callers.find((c) => c.name === callerName)!;
    const cell = `c${hash(`${endpointName}/${callerName}`)}`;
    const as = agents.get(callerName)!;
    await endpoint.prepare?.(cell);
    const before = await streamLength();
    const response = await endpoint.call(as, cell, caller);
    if (expected === 'allowed') {
      expect({
        status: response.status,
        allowed: [200, 201, 204].includes(response.status),
      }).toEqual({
        status: response.status,
        allowed: true,
      });
      if (endpoint.writes) expect(await streamLength()).toBeGreaterThan(before);
      return;
    }
    expect(response.status).toBe(403);
    expect(response.body.code).toBe('FORBIDDEN');
    expect(response.headers['content-type']).toContain('application/problem+json');
    expect(await streamLength()).toBe(before);
  });
});

function hash(text: string): number {
  let h = 0;
  for (const char of text) h = (h * 31 + char.charCodeAt(0)) >>> 0;
  return h;
}

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { SignJWT } from 'jose';
import { LEDGER_PROTO } from '../../src/api/grpc/grpc-options';
import { serviceToken, tokenFor } from '../support/tokens';
import { recordFigures } from './support/figures';
import {
  Http,
  launchLedger,
  problemDefect,
  readStore,
  waitForNatsService,
  type HttpReply,
  type LedgerProcess,
} from './support/ledger';
import { TestNatsServer } from './support/nats-server';

const REQUESTS_PER_EDGE = 10_000;
const IN_FLIGHT = 32;
/** Replay a failing run with FAULTS_SEED=<the seed it printed>. */
const SEED = Number(process.env.FAULTS_SEED ?? Date.now() % 1_000_000_000);

const ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const isAmount = (v: unknown) =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 && v <= 1_000_000_000_000;
const isThreshold = (v: unknown) =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= 1_000_000_000_000;

// ---- arbitraries -------------------------------------------------------------------------

/** Identifiers the API must refuse: unicode, control characters, NATS wildcards and dots... */
const hostileId = fc
  .oneof(
    fc.string({ unit: 'binary', maxLength: 80 }),
    fc.string({ maxLength: 70 }),
    fc
      .tuple(
        fc.stringMatching(/^[a-z0-9]{0,10}$/),
        fc.constantFrom(
          '.',
          '*',
          '>',
          ' ',
          '\u0000',
          '\n',
          '\r\n',
          '\u202e',
          'ü',
          '😀',
          '/',
          '%',
          '..',
          '$',
          '\\',
          '\ud800',
          '%2e',
          '${x}',
          "'",
          '"',
        ),
        fc.stringMatching(/^[a-z0-9]{0,10}$/),
      )
      .map(([a, b, c]) => a + b + c),
    fc.constantFrom('', '-x', '_x', 'x'.repeat(65), '*', '>', 'a.b', 'ledger.>', '$SRV.PING', '.'),
  )
  .filter((value) => !ID.test(value));

/** Anything but a JSON value the field's type takes. */
const wrongType = fc.oneof(
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
);

/** Negative, fractional, enormous, and not numbers at all. */
const hostileAmount = fc
  .oneof(
    fc.double(),
    fc.integer({ min: -1_000_000_000, max: 0 }),
    fc.constantFrom(0, -1, 1.5, 0.0001, 1e12 + 1, 2 ** 53, 2 ** 64, 1e300, -1e300),
    fc.stringMatching(/^-?[0-9]{1,25}(\.[0-9]{1,3})?$/),
    wrongType,
  )
  .filter((value) => !isAmount(value));

/** A hostile value for a field; an optional field (`?`) takes null as absent, so never null. */
const hostileValue = (kind: FieldKind | `${FieldKind}?`): fc.Arbitrary<unknown> =>
  kind.endsWith('?')
    ? requiredHostileValue(kind.slice(0, -1) as FieldKind).filter(
        // NaN and Infinity travel as null too.
        (value) => JSON.stringify(value) !== 'null',
      )
    : requiredHostileValue(kind as FieldKind);

const requiredHostileValue = (kind: FieldKind): fc.Arbitrary<unknown> => {
  switch (kind) {
    case 'id':
      return fc.oneof(
        hostileId,
        wrongType.filter((v) => typeof v !== 'string'),
      );
    case 'amount':
      return hostileAmount;
    case 'threshold':
      return hostileAmount.filter((value) => !isThreshold(value));
    case 'text':
      return fc.oneof(
        fc.constantFrom('', 'x'.repeat(1001), 'a\u0007b', '\u0000'),
        wrongType.filter((v) => typeof v !== 'string'),
      );
    case 'enum':
      return fc.oneof(fc.string({ maxLength: 12 }), wrongType).filter(
        // Not one of the values any enum field takes.
        (v) =>
          ![
            'purchase',
            'plan',
            'promotion',
            'adjustment',
            'owner',
            'admin',
            'billing',
            'member',
          ].includes(v as string),
      );
  }
};

type FieldKind = 'id' | 'amount' | 'threshold' | 'text' | 'enum';

interface Route {
  method: 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path with :params; each param is an identifier. */
  path: string;
  params: Record<string, string>;
  /** A body that would be accepted as it is: it is never sent unchanged with a good token. */
  body?: Record<string, unknown>;
  fields: Record<string, FieldKind | `${FieldKind}?`>;
  /** A route an outsider's token may be tried on with a valid body (it names `acme`). */
  scoped: boolean;
}

const WRITES: Route[] = [
  {
    method: 'POST',
    path: '/v1/charm-runs',
    params: {},
    body: { runId: 'h-run', charmId: 'c', userId: 'owner', amount: 1, organizationId: 'acme' },
    fields: { runId: 'id', charmId: 'id', userId: 'id', amount: 'amount', organizationId: 'id?' },
    scoped: true,
  },
  {
    method: 'POST',
    path: '/v1/organizations/:organizationId/grants',
    params: { organizationId: 'acme' },
    body: { grantId: 'h-grant', amount: 1, source: 'plan' },
    fields: { grantId: 'id', amount: 'amount', source: 'enum', priority: 'threshold?' },
    scoped: true,
  },
  {
    method: 'POST',
    path: '/v1/organizations/:organizationId/reservations',
    params: { organizationId: 'acme' },
    body: { reservationId: 'h-res', charmId: 'c', userId: 'owner', amount: 1 },
    fields: { reservationId: 'id', charmId: 'id', userId: 'id', amount: 'amount' },
    scoped: true,
  },
  {
    method: 'POST',
    path: '/v1/organizations/:organizationId/reservations/:reservationId/capture',
    params: { organizationId: 'acme', reservationId: 'held' },
    body: { amount: 1 },
    fields: { amount: 'amount', runId: 'id?' },
    scoped: true,
  },
  {
    method: 'POST',
    path: '/v1/organizations/:organizationId/reservations/:reservationId/release',
    params: { organizationId: 'acme', reservationId: 'held' },
    body: {},
    fields: {},
    scoped: true,
  },
  {
    method: 'POST',
    path: '/v1/organizations/:organizationId/transfers',
    params: { organizationId: 'acme' },
    body: { transferId: 'h-transfer', toOrganizationId: 'other', amount: 1 },
    fields: { transferId: 'id', toOrganizationId: 'id', amount: 'amount' },
    scoped: true,
  },
  {
    method: 'POST',
    path: '/v1/organizations/:organizationId/charm-runs/:runId/refund',
    params: { organizationId: 'acme', runId: 'run-1' },
    body: { amount: 1 },
    fields: { amount: 'amount?', refundId: 'id?' },
    scoped: true,
  },
  {
    method: 'PUT',
    path: '/v1/organizations/:organizationId/low-balance-threshold',
    params: { organizationId: 'acme' },
    body: { threshold: 5 },
    fields: { threshold: 'threshold' },
    scoped: true,
  },
  {
    method: 'POST',
    path: '/v1/organizations',
    params: {},
    body: { organizationId: 'h-org', name: 'N', ownerUserId: 'owner' },
    fields: { organizationId: 'id', name: 'text', ownerUserId: 'id' },
    scoped: false,
  },
  {
    method: 'POST',
    path: '/v1/users',
    params: {},
    body: { userId: 'h-user' },
    fields: { userId: 'id', name: 'text?' },
    scoped: false,
  },
  {
    method: 'PUT',
    path: '/v1/users/:userId/active-organization',
    params: { userId: 'owner' },
    body: { organizationId: 'other' },
    fields: { organizationId: 'id' },
    scoped: false,
  },
  {
    method: 'POST',
    path: '/v1/organizations/:organizationId/members',
    params: { organizationId: 'acme' },
    body: { userId: 'h-member', role: 'member' },
    fields: { userId: 'id', role: 'enum' },
    scoped: true,
  },
  {
    method: 'PATCH',
    path: '/v1/organizations/:organizationId/members/:userId',
    params: { organizationId: 'acme', userId: 'bob' },
    body: { role: 'admin' },
    fields: { role: 'enum' },
    scoped: true,
  },
  {
    method: 'DELETE',
    path: '/v1/organizations/:organizationId/members/:userId',
    params: { organizationId: 'acme', userId: 'bob' },
    fields: {},
    scoped: true,
  },
];

const READS = [
  '/v1/organizations/:organizationId/balance',
  '/v1/organizations/:organizationId/history',
  '/v1/organizations/:organizationId/usage',
  '/v1/organizations/:organizationId',
  '/v1/organizations/:organizationId/members',
  '/v1/users/:userId/organizations',
];

/** A path segment as a client would send it; dots too, so `..` is never resolved away. */
const segment = (value: string) => {
  try {
    return encodeURIComponent(value).replace(/\./g, '%2E');
  } catch {
    return value.replace(/[\ud800-\udfff]/g, '%ED%A0%80');
  }
};

const fill = (path: string, params: Record<string, string>) =>
  path.replace(/:([a-zA-Z]+)/g, (_, name: string) => segment(params[name] ?? 'acme'));

type Expect = 'unauthorized' | 'refused' | 'any';

interface HttpCase {
  mode: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
  expect: Expect;
}

/** The token a case is sent with: a name resolved to a real header before sending. */
type TokenName =
  | 'service'
  | 'none'
  | 'wrong-secret'
  | 'alg-none'
  | 'tampered'
  | 'expired'
  | 'not-yet'
  | 'garbage'
  | 'basic'
  | 'outsider'
  | 'other-integration'
  | 'hostile-sub';

const BAD_TOKENS: TokenName[] = [
  'none',
  'wrong-secret',
  'alg-none',
  'tampered',
  'expired',
  'not-yet',
  'garbage',
  'basic',
];

function httpCases(): fc.Arbitrary<HttpCase & { token: TokenName }> {
  const write = fc.constantFrom(...WRITES);
  // Routes with fields to make hostile (release takes none: an empty body is a valid release).
  const withBody = fc.constantFrom(
    ...WRITES.filter((route) => route.body && Object.keys(route.fields).length > 0),
  );
  const json = (route: Route, body?: unknown) =>
    body === undefined ? undefined : JSON.stringify(body);
  const base = (route: Route, params = route.params) => ({
    method: route.method,
    path: fill(route.path, params),
    headers: (route.body ? { 'content-type': 'application/json' } : {}) as Record<string, string>,
  });

  // A forged, expired or missing token: any route, even a valid body. 401.
  const badToken = fc.tuple(write, fc.constantFrom(...BAD_TOKENS)).map(([route, token]) => ({
    mode: `token:${token}`,
    token,
    ...base(route),
    body: json(route, route.body),
    expect: 'unauthorized' as Expect,
  }));
  // A good signature for someone with no business in `acme`: 403.
  const outsider = fc
    .tuple(
      fc.constantFrom(...WRITES.filter((route) => route.scoped)),
      fc.constantFrom<TokenName>('outsider', 'other-integration', 'hostile-sub'),
    )
    .map(([route, token]) => ({
      mode: `token:${token}`,
      token,
      ...base(route),
      body: json(route, route.body),
      expect: 'unauthorized' as Expect,
    }));
  // The service's own token, one field made hostile: 400.
  const badField = withBody
    .chain((route) =>
      fc
        .constantFrom(...Object.keys(route.fields))
        .chain((name) => hostileValue(route.fields[name]).map((value) => ({ route, name, value }))),
    )
    .map(({ route, name, value }) => ({
      mode: 'field',
      token: 'service' as TokenName,
      ...base(route),
      body: json(route, { ...route.body, [name]: value }),
      expect: 'refused' as Expect,
    }));
  const extraField = fc
    .tuple(withBody, fc.string({ minLength: 1, maxLength: 20 }), wrongType)
    .filter(([route, name]) => !(name in route.fields))
    .map(([route, name, value]) => ({
      mode: 'unknown-field',
      token: 'service' as TokenName,
      ...base(route),
      body: json(route, { ...route.body, [name]: value }),
      expect: 'refused' as Expect,
    }));
  // A hostile identifier in the path, everything else valid: 400 (or 404 for an empty one).
  const badPath = fc
    .tuple(fc.constantFrom(...WRITES.filter((r) => Object.keys(r.params).length > 0)), hostileId)
    .chain(([route, value]) =>
      fc.constantFrom(...Object.keys(route.params)).map((name) => ({ route, name, value })),
    )
    .map(({ route, name, value }) => ({
      mode: 'path',
      token: 'service' as TokenName,
      ...base(route, { ...route.params, [name]: value }),
      body: json(route, route.body),
      expect: 'refused' as Expect,
    }));
  // Bodies that are not what JSON objects of the API look like.
  const badBody = fc
    .tuple(
      withBody,
      fc.oneof(
        { weight: 20, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
        { weight: 20, arbitrary: fc.json().filter((text) => !text.startsWith('{')) },
        { weight: 10, arbitrary: fc.constantFrom('{"runId": "r",', '{', '}', 'null', '[]', '""') },
        {
          weight: 5,
          arbitrary: fc
            .integer({ min: 100, max: 20_000 })
            .map((depth) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`),
        },
        {
          weight: 5,
          arbitrary: fc.integer({ min: 100, max: 50_000 }).map((depth) => '['.repeat(depth)),
        },
        {
          weight: 1,
          arbitrary: fc
            .integer({ min: 1_000_000, max: 2_500_000 })
            .map((size) => JSON.stringify({ runId: 'x'.repeat(size) })),
        },
      ),
      fc.constantFrom(
        'application/json',
        'application/json; charset=utf-16',
        'text/plain',
        'application/x-www-form-urlencoded',
        'application/problem+json',
      ),
    )
    // An empty body is no body: a route whose fields are all optional (refund) would take it.
    .filter(([, body]) => body.trim().length > 0)
    .map(([route, body, contentType]) => ({
      mode: 'body',
      token: 'service' as TokenName,
      ...base(route),
      headers: { 'content-type': contentType },
      body,
      expect: 'refused' as Expect,
    }));
  // Reads with hostile ids and queries, any token: anything but a 500 (a read changes nothing).
  const read = fc
    .tuple(
      fc.constantFrom(...READS),
      fc.oneof(fc.constant('acme'), hostileId),
      fc.constantFrom<TokenName>('service', 'outsider', 'expired', 'tampered', 'hostile-sub'),
      fc.dictionary(
        fc.constantFrom('at', 'from', 'to', 'groupBy', 'limit', 'fromRevision', 'minPosition'),
        fc.oneof(fc.string({ maxLength: 30 }), fc.integer().map(String)),
        { maxKeys: 3 },
      ),
    )
    .map(([path, id, token, query]) => ({
      mode: 'read',
      token,
      method: 'GET',
      path: `${fill(path, { organizationId: id, userId: id })}?${new URLSearchParams(query).toString()}`,
      headers: {},
      expect: 'any' as Expect,
    }));
  return fc.oneof(
    { weight: 2, arbitrary: badToken },
    { weight: 2, arbitrary: outsider },
    { weight: 4, arbitrary: badField },
    { weight: 1, arbitrary: extraField },
    { weight: 2, arbitrary: badPath },
    { weight: 2, arbitrary: badBody },
    { weight: 2, arbitrary: read },
  );
}

// ---- the scenario --------------------------------------------------------------------------

describe('hostile input', () => {
  let nats: TestNatsServer;
  let dataDir: string;
  let ledger: LedgerProcess;
  let http: Http;
  let tokens: Record<TokenName, string | undefined>;
  const connections: NatsConnection[] = [];
  let storeBefore: string;

  let eventsBefore = 0;
  /** Events written since the scenario began, for the failure message. */
  const newEvents = () =>
    readStore(dataDir)
      .slice(eventsBefore)
      .map((e) => `${e.streamId}@${e.revision} ${e.type} ${JSON.stringify(e.data).slice(0, 200)}`);

  const storeFingerprint = () =>
    JSON.stringify(readStore(dataDir).map((e) => [e.position, e.eventId, e.streamId, e.revision]));

  beforeAll(async () => {
    process.stdout.write(`hostile input: seed ${SEED} (FAULTS_SEED=${SEED} repeats this run)\n`);
    nats = await TestNatsServer.start();
    dataDir = mkdtempSync(join(tmpdir(), 'ledger-faults-hostile-'));
    ledger = await launchLedger({ dataDir, natsUrl: nats.url, natsRequests: true });
    http = new Http(ledger.url);
    const setup: [string, string, unknown][] = [
      ['POST', '/v1/organizations', { organizationId: 'acme', name: 'Acme', ownerUserId: 'owner' }],
      ['POST', '/v1/organizations', { organizationId: 'other', name: 'O', ownerUserId: 'owner' }],
      ['POST', '/v1/organizations/acme/members', { userId: 'bob', role: 'member' }],
      ['POST', '/v1/organizations/acme/grants', { grantId: 'g', amount: 1000, source: 'plan' }],
      [
        'POST',
        '/v1/charm-runs',
        { runId: 'run-1', charmId: 'c', userId: 'owner', amount: 5, organizationId: 'acme' },
      ],
      [
        'POST',
        '/v1/organizations/acme/reservations',
        { reservationId: 'held', charmId: 'c', userId: 'owner', amount: 5 },
      ],
    ];
    for (const [method, path, body] of setup) {
      const reply = await http.request(method, path, body);
      expect({ path, status: reply.status }).toEqual({ path, status: 201 });
    }
    const secret = new TextEncoder().encode('not-the-ledger-secret-0123456789-abcdef');
    const valid = await tokenFor({ sub: 'owner' });
    const [header, , signature] = valid.split('.');
    const escalated = Buffer.from(
      JSON.stringify({ sub: 'owner', scope: 'ledger:service', exp: 4102444800 }),
    ).toString('base64url');
    const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${escalated}.`;
    tokens = {
      service: `Bearer ${await serviceToken()}`,
      none: undefined,
      'wrong-secret': `Bearer ${await new SignJWT({ scope: 'ledger:service' })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('intruder')
        .setExpirationTime('1h')
        .sign(secret)}`,
      'alg-none': `Bearer ${unsigned}`,
      // A real signature over other claims: the payload was swapped for more power.
      tampered: `Bearer ${header}.${escalated}.${signature}`,
      // A service token that was good once, replayed after it expired.
      expired: `Bearer ${await tokenFor(
        { sub: 'test-suite', scope: 'ledger:service' },
        { expiresIn: Math.floor(Date.now() / 1000) - 60 },
      )}`,
      'not-yet': `Bearer ${await tokenFor(
        { sub: 'test-suite', scope: 'ledger:service' },
        { notBefore: '1h', expiresIn: '2h' },
      )}`,
      garbage: 'Bearer not.a.token',
      basic: 'Basic b3duZXI6cGFzc3dvcmQ=',
      outsider: `Bearer ${await tokenFor({ sub: 'mallory' })}`,
      'other-integration': `Bearer ${await tokenFor({ sub: 'owner', org: 'other' })}`,
      'hostile-sub': `Bearer ${await tokenFor({ sub: 'ledger.>' })}`,
    };
    for (let i = 0; i < 4; i++) connections.push(await connect({ servers: nats.url }));
    await waitForNatsService(connections[0]);
    storeBefore = storeFingerprint();
    eventsBefore = readStore(dataDir).length;
  });

  afterAll(async () => {
    for (const connection of connections) await connection.close();
    await ledger?.stop();
    await nats?.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** Runs `send` over every case with IN_FLIGHT at once. */
  async function runAll<T>(cases: T[], send: (c: T) => Promise<void>) {
    let cursor = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (cursor < cases.length) await send(cases[cursor++]);
      }),
    );
  }

  const serviceAlive = async () =>
    ledger.running && (await http.get('/health').catch(() => undefined))?.status === 200;

  it('HTTP: 10,000 hostile requests, no 500, every error a problem+json, no stream changed', async () => {
    const cases = fc.sample(httpCases(), { numRuns: REQUESTS_PER_EDGE, seed: SEED });
    const defects: string[] = [];
    let acknowledged = 0;
    let rejected = 0;
    let unanswered = 0;
    const statuses = new Map<number, number>();
    await runAll(cases, async (c) => {
      const token = tokens[c.token];
      let reply: HttpReply;
      try {
        const response = await fetch(`${ledger.url}${c.path}`, {
          method: c.method,
          headers: { ...c.headers, ...(token ? { authorization: token } : {}) },
          body: c.body,
          signal: AbortSignal.timeout(30_000),
        });
        const text = await response.text();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON
        }
        reply = { status: response.status, headers: response.headers, body, text };
      } catch (error) {
        unanswered++;
        defects.push(`${c.mode} ${c.method} ${c.path.slice(0, 80)}: no answer (${String(error)})`);
        return;
      }
      statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
      if (reply.status < 400) {
        acknowledged++;
        if (c.expect !== 'any')
          defects.push(
            `${c.mode} ${c.method} ${c.path.slice(0, 80)}: accepted (${reply.status}) ${(c.body ?? '').slice(0, 80)}`,
          );
        return;
      }
      rejected++;
      const defect = problemDefect(reply);
      const wrongStatus =
        (c.expect === 'unauthorized' && ![401, 403].includes(reply.status)) ||
        (c.expect === 'refused' && ![400, 404].includes(reply.status)) ||
        (reply.status >= 500 && reply.status !== 503);
      if (defect || wrongStatus)
        defects.push(
          `${c.mode} ${c.method} ${c.path.slice(0, 80)} ${(c.body ?? '').slice(0, 80)}: ` +
            `${reply.status} ${defect ?? ''} ${reply.text.slice(0, 160)}`,
        );
    });
    const storeUnchanged = storeFingerprint() === storeBefore;
    const alive = await serviceAlive();
    recordFigures({
      scenario: 'hostile HTTP',
      sent: cases.length,
      acknowledged,
      rejected,
      lost: unanswered + (statuses.get(500) ?? 0),
      doubled: storeUnchanged ? 0 : 1,
      recoveryMs: null,
    });
    process.stdout.write(`hostile HTTP statuses: ${JSON.stringify([...statuses])}\n`);
    expect(defects.slice(0, 10)).toEqual([]);
    expect(statuses.get(500) ?? 0).toBe(0);
    expect(newEvents()).toEqual([]);
    expect(storeUnchanged).toBe(true);
    expect(alive).toBe(true);
  }, 240_000);

  it('NATS: 10,000 hostile requests, each answered with a well-formed error reply, no stream changed', async () => {
    const subjects: Record<string, Record<string, FieldKind | `${FieldKind}?`>> = {
      'ledger.charm-runs.charge': {
        runId: 'id',
        charmId: 'id',
        userId: 'id',
        amount: 'amount',
        organizationId: 'id?',
      },
      'ledger.charm-runs.refund': { organizationId: 'id', runId: 'id', amount: 'amount?' },
      'ledger.reservations.create': {
        organizationId: 'id',
        reservationId: 'id',
        charmId: 'id',
        userId: 'id',
        amount: 'amount',
      },
      'ledger.reservations.capture': {
        organizationId: 'id',
        reservationId: 'id',
        amount: 'amount',
      },
      'ledger.reservations.release': { organizationId: 'id', reservationId: 'id' },
      'ledger.grants.create': {
        organizationId: 'id',
        grantId: 'id',
        amount: 'amount',
        source: 'enum',
      },
      'ledger.balance.get': { organizationId: 'id' },
    };
    const valid: Record<string, Record<string, unknown>> = {
      'ledger.charm-runs.charge': {
        runId: 'n-run',
        charmId: 'c',
        userId: 'owner',
        amount: 1,
        organizationId: 'acme',
      },
      'ledger.charm-runs.refund': { organizationId: 'acme', runId: 'run-1', amount: 1 },
      'ledger.reservations.create': {
        organizationId: 'acme',
        reservationId: 'n-res',
        charmId: 'c',
        userId: 'owner',
        amount: 1,
      },
      'ledger.reservations.capture': { organizationId: 'acme', reservationId: 'held', amount: 1 },
      'ledger.reservations.release': { organizationId: 'acme', reservationId: 'held' },
      'ledger.grants.create': { organizationId: 'acme', grantId: 'n-g', amount: 1, source: 'plan' },
      'ledger.balance.get': { organizationId: 'acme' },
    };
    const subject = fc.constantFrom(...Object.keys(subjects));
    const natsCase = fc.oneof(
      // One field hostile.
      {
        weight: 5,
        arbitrary: subject.chain((s) =>
          fc.constantFrom(...Object.keys(subjects[s])).chain((name) =>
            hostileValue(subjects[s][name]).map((value) => ({
              subject: s,
              payload: JSON.stringify({ ...valid[s], [name]: value }) as string | Uint8Array,
            })),
          ),
        ),
      },
      // An unknown field.
      {
        weight: 1,
        arbitrary: fc
          .tuple(subject, fc.string({ minLength: 1, maxLength: 12 }), wrongType)
          .filter(([s, name]) => !(name in subjects[s]))
          .map(([s, name, value]) => ({
            subject: s,
            payload: JSON.stringify({ ...valid[s], [name]: value }) as string | Uint8Array,
          })),
      },
      // Not a JSON object: bytes, other JSON, deep nesting, a large body.
      {
        weight: 3,
        arbitrary: fc
          .tuple(
            subject,
            fc.oneof(
              fc.uint8Array({ maxLength: 300 }) as fc.Arbitrary<string | Uint8Array>,
              fc.json().filter((text) => !text.startsWith('{')),
              fc.integer({ min: 100, max: 20_000 }).map((d) => '['.repeat(d)),
              fc
                .integer({ min: 100, max: 5_000 })
                .map((d) => `${'{"a":'.repeat(d)}1${'}'.repeat(d)}`),
              fc.constant(JSON.stringify({ runId: 'x'.repeat(900_000) })),
            ),
          )
          .map(([s, payload]) => ({ subject: s, payload })),
      },
    );
    const cases = fc.sample(natsCase, { numRuns: REQUESTS_PER_EDGE, seed: SEED + 1 });
    const codes = new Map<string, number>();
    const defects: string[] = [];
    let sent = 0;
    let unanswered = 0;
    let accepted = 0;
    await runAll(cases, async (c) => {
      const connection = connections[sent++ % connections.length];
      let reply: { ok?: unknown; error?: { code?: unknown; message?: unknown } };
      try {
        const message = await connection.request(c.subject, c.payload, { timeout: 20_000 });
        reply = message.json();
      } catch (error) {
        unanswered++;
        defects.push(`${c.subject}: no well-formed reply (${String(error)})`);
        return;
      }
      if (reply.ok === true) {
        accepted++;
        defects.push(`${c.subject} ${String(c.payload).slice(0, 100)}: accepted`);
        return;
      }
      const code = String(reply.error?.code);
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (
        reply.ok !== false ||
        !['VALIDATION_FAILED', 'NOT_FOUND', 'FORBIDDEN'].includes(code) ||
        typeof reply.error?.message !== 'string'
      )
        defects.push(`${c.subject} ${String(c.payload).slice(0, 100)}: ${JSON.stringify(reply)}`);
    });
    const storeUnchanged = storeFingerprint() === storeBefore;
    const alive = await serviceAlive();
    recordFigures({
      scenario: 'hostile NATS',
      sent: cases.length,
      acknowledged: accepted,
      rejected: cases.length - accepted - unanswered,
      lost: unanswered + (codes.get('INTERNAL') ?? 0),
      doubled: storeUnchanged ? 0 : 1,
      recoveryMs: null,
    });
    process.stdout.write(`hostile NATS codes: ${JSON.stringify([...codes])}\n`);
    expect(defects.slice(0, 10)).toEqual([]);
    expect(codes.get('INTERNAL') ?? 0).toBe(0);
    expect(newEvents()).toEqual([]);
    expect(storeUnchanged).toBe(true);
    expect(alive).toBe(true);
  }, 240_000);

  it('gRPC: 10,000 hostile calls, each a gRPC status other than INTERNAL/UNKNOWN, no stream changed', async () => {
    const definition = protoLoader.loadSync(LEDGER_PROTO, {
      keepCase: false,
      longs: String,
      defaults: true,
    });
    const proto = grpc.loadPackageDefinition(definition) as unknown as {
      charmiq: { ledger: { v1: { LedgerService: grpc.ServiceClientConstructor } } };
    };
    const address = `127.0.0.1:${ledger.grpcPort}`;
    const client = new proto.charmiq.ledger.v1.LedgerService(
      address,
      grpc.credentials.createInsecure(),
    );
    // Raw bytes that need not be a protobuf message at all.
    const raw = new grpc.Client(address, grpc.credentials.createInsecure());
    const tokenNames = Object.keys(tokens) as TokenName[];
    const grpcCase = fc.oneof(
      {
        weight: 10,
        arbitrary: fc.record({
          kind: fc.constant('typed' as const),
          method: fc.constantFrom('getBalance', 'checkCredits'),
          token: fc.constantFrom(...tokenNames),
          organizationId: fc.oneof(fc.constant('acme'), fc.constant('nowhere'), hostileId),
          amount: fc.oneof(
            fc.constantFrom(
              '0',
              '-1',
              '9223372036854775807',
              '-9223372036854775808',
              '1000000000001',
            ),
            fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String),
            fc.constant('5'),
          ),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('raw' as const),
          method: fc.constantFrom('GetBalance', 'CheckCredits'),
          token: fc.constantFrom(...tokenNames),
          bytes: fc.uint8Array({ maxLength: 200 }),
        }),
      },
    );
    const cases = fc.sample(grpcCase, { numRuns: REQUESTS_PER_EDGE, seed: SEED + 2 });
    const codes = new Map<string, number>();
    const defects: string[] = [];
    let undecodable = 0;
    await runAll(cases, async (c) => {
      const metadata = new grpc.Metadata();
      const token = tokens[c.token];
      if (token) metadata.set('authorization', token);
      const options = { deadline: Date.now() + 30_000 };
      const outcome = await new Promise<{ code: grpc.status; details: string }>((resolve) => {
        const done = (error: grpc.ServiceError | null) =>
          resolve(
            error
              ? { code: error.code, details: error.details }
              : { code: grpc.status.OK, details: '' },
          );
        if (c.kind === 'typed') {
          const request =
            c.method === 'getBalance'
              ? { organizationId: c.organizationId }
              : { organizationId: c.organizationId, amount: c.amount };
          (
            client as unknown as Record<
              string,
              (
                r: unknown,
                m: grpc.Metadata,
                o: grpc.CallOptions,
                cb: (e: grpc.ServiceError | null) => void,
              ) => void
            >
          )[c.method](request, metadata, options, done);
        } else {
          raw.makeUnaryRequest(
            `/charmiq.ledger.v1.LedgerService/${c.method}`,
            (bytes: Uint8Array) => Buffer.from(bytes),
            (bytes: Buffer) => bytes,
            c.bytes,
            metadata,
            options,
            done,
          );
        }
      });
      const name = grpc.status[outcome.code];
      codes.set(name, (codes.get(name) ?? 0) + 1);
      // grpc-js itself answers INTERNAL "Error deserializing request" for bytes that are no
      // protobuf message, before any code of the ledger runs: counted apart, not a ledger fault.
      if (c.kind === 'raw' && outcome.details === 'Error deserializing request') {
        undecodable++;
        return;
      }
      if (
        outcome.code === grpc.status.INTERNAL ||
        outcome.code === grpc.status.UNKNOWN ||
        outcome.code === grpc.status.DEADLINE_EXCEEDED ||
        (outcome.code === grpc.status.OK && c.token !== 'service')
      )
        defects.push(`${JSON.stringify(c).slice(0, 200)}: ${name} ${outcome.details}`);
    });
    client.close();
    raw.close();
    const storeUnchanged = storeFingerprint() === storeBefore;
    const alive = await serviceAlive();
    const ok = codes.get('OK') ?? 0;
    recordFigures({
      scenario: 'hostile gRPC',
      sent: cases.length,
      acknowledged: ok,
      rejected: cases.length - ok,
      lost: defects.length,
      doubled: storeUnchanged ? 0 : 1,
      recoveryMs: null,
    });
    process.stdout.write(
      `hostile gRPC codes: ${JSON.stringify([...codes])}; ${undecodable} undecodable messages ` +
        `answered INTERNAL by grpc-js before the ledger\n`,
    );
    expect(defects.slice(0, 10)).toEqual([]);
    expect(newEvents()).toEqual([]);
    expect(storeUnchanged).toBe(true);
    expect(alive).toBe(true);
  }, 240_000);
});

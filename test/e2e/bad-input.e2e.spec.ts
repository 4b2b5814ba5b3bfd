import { newDataDir, removeDataDir, startLedger, type RunningLedger } from '../support/ledger-app';

/** Bad input of every kind gets a 400 problem naming the field, and no stream changes. */
describe('bad input', () => {
  let dataDir: string;
  let ledger: RunningLedger;
  const charge = {
    runId: 'run-1',
    charmId: 'charm',
    userId: 'owner',
    amount: 5,
    organizationId: 'acme',
  };

  const positionOfStore = async () => {
    const history = await ledger.http.get('/v1/organizations/acme/history?limit=1000').expect(200);
    return history.body.events.length as number;
  };

  beforeAll(async () => {
    dataDir = newDataDir();
    ledger = await startLedger(dataDir);
    await ledger.http
      .post('/v1/organizations')
      .send({ organizationId: 'acme', name: 'Acme', ownerUserId: 'owner' })
      .expect(201);
    await ledger.http
      .post('/v1/organizations/acme/grants')
      .send({ grantId: 'g', amount: 100, source: 'purchase' })
      .expect(201);
  });
  afterAll(async () => {
    await ledger.close();
    removeDataDir(dataDir);
  });

  const badIds = [
    'a.b',
    'a*',
    'a>',
    'a/b',
    'x'.repeat(65),
    '',
    '-leading',
    'spa ce',
    'ünï',
    'a\u0000b',
  ];
  const badAmounts: unknown[] = [
    0,
    -1,
    1.5,
    '10',
    1e16,
    null,
    true,
    [5],
    { n: 5 },
    1_000_000_000_001,
  ];

  it.each(badIds)('refuses the identifier %j in a body, naming the field', async (runId) => {
    const before = await positionOfStore();
    const response = await ledger.http
      .post('/v1/charm-runs')
      .send({ ...charge, runId })
      .expect(400);
    expect(response.headers['content-type']).toContain('application/problem+json');
    expect(response.body).toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
    expect(response.body.errors).toEqual([expect.objectContaining({ field: 'runId' })]);
    expect(await positionOfStore()).toBe(before);
  });

  it.each(['a.b', 'a*', 'a%3E', 'x'.repeat(65)])(
    'refuses the identifier %j in a path',
    async (id) => {
      const response = await ledger.http
        .post(`/v1/organizations/${id}/grants`)
        .send({ grantId: 'g9', amount: 1, source: 'plan' })
        .expect(400);
      expect(response.body.errors).toEqual([expect.objectContaining({ field: 'organizationId' })]);
    },
  );

  it.each(badAmounts)('refuses the amount %j', async (amount) => {
    const before = await positionOfStore();
    const response = await ledger.http
      .post('/v1/charm-runs')
      .send({ ...charge, amount })
      .expect(400);
    expect(response.body.errors).toEqual([expect.objectContaining({ field: 'amount' })]);
    expect(await positionOfStore()).toBe(before);
  });

  it('names every missing field', async () => {
    const response = await ledger.http.post('/v1/charm-runs').send({}).expect(400);
    const fields = response.body.errors.map((error: { field: string }) => error.field).sort();
    expect(fields).toEqual(['amount', 'charmId', 'runId', 'userId']);
  });

  it('refuses unknown fields', async () => {
    const response = await ledger.http
      .post('/v1/charm-runs')
      .send({ ...charge, discount: 5 })
      .expect(400);
    expect(response.body.errors).toEqual([{ field: 'discount', message: 'is not allowed' }]);
  });

  it('refuses malformed JSON and bodies that are not objects', async () => {
    const malformed = await ledger.http
      .post('/v1/charm-runs')
      .set('content-type', 'application/json')
      .send('{"runId": "r",')
      .expect(400);
    expect(malformed.body.errors).toEqual([expect.objectContaining({ field: 'body' })]);
    await ledger.http
      .post('/v1/charm-runs')
      .set('content-type', 'application/json')
      .send('[1,2]')
      .expect(400);
    await ledger.http
      .post('/v1/charm-runs')
      .set('content-type', 'application/json')
      .send('"text"')
      .expect(400);
  });

  it('refuses a 1 MB body with a 400 naming the field', async () => {
    const before = await positionOfStore();
    const response = await ledger.http
      .post('/v1/charm-runs')
      .send({ ...charge, charmId: 'c'.repeat(1024 * 1024) })
      .expect(400);
    expect(response.body.errors).toEqual([expect.objectContaining({ field: 'charmId' })]);
    expect(await positionOfStore()).toBe(before);
  });

  it('refuses a deeply nested body with a 400, not a 500 (class-transformer would overflow)', async () => {
    const before = await positionOfStore();
    const depth = 5000;
    const response = await ledger.http
      .post('/v1/charm-runs')
      .set('content-type', 'application/json')
      .send(`{"runId": ${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`)
      .expect(400);
    expect(response.body.errors).toEqual([expect.objectContaining({ field: 'body' })]);
    expect(await positionOfStore()).toBe(before);
  });

  it.each(['constructor', 'prototype', 'toString', 'hasOwnProperty'])(
    'refuses an unknown field named like an inherited member (%s)',
    async (name) => {
      const before = await positionOfStore();
      const response = await ledger.http
        .post('/v1/charm-runs')
        .send({ ...charge, runId: 'proto-1', [name]: 5 })
        .expect(400);
      expect(response.body.errors).toEqual([{ field: name, message: 'is not allowed' }]);
      expect(await positionOfStore()).toBe(before);
    },
  );

  it('refuses a JSON body declared in another charset than UTF-8', async () => {
    const before = await positionOfStore();
    // One byte of UTF-16 decodes to nothing; it used to be taken as an empty body, `{}`.
    const response = await ledger.http
      .post('/v1/organizations/acme/charm-runs/run-1/refund')
      .set('content-type', 'application/json; charset=utf-16')
      .send('{')
      .expect(400);
    expect(response.body.errors).toEqual([{ field: 'body', message: 'must be UTF-8 JSON' }]);
    expect(await positionOfStore()).toBe(before);
  });

  it('refuses bad values of the other fields', async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['/v1/organizations/acme/grants', { grantId: 'g2', amount: 1, source: 'gift' }, 'source'],
      [
        '/v1/organizations/acme/grants',
        { grantId: 'g2', amount: 1, source: 'plan', priority: -1 },
        'priority',
      ],
      [
        '/v1/organizations/acme/grants',
        { grantId: 'g2', amount: 1, source: 'plan', expiresAt: 'tomorrow' },
        'expiresAt',
      ],
      [
        '/v1/organizations/acme/grants',
        { grantId: 'g2', amount: 1, source: 'plan', expiresAt: '2020-01-01T00:00:00Z' },
        'expiresAt',
      ],
      ['/v1/organizations/acme/grants', { grantId: 'g2', amount: 1, source: 'transfer' }, 'source'],
      [
        '/v1/organizations/acme/reservations',
        { reservationId: 'h', charmId: 'c', userId: 'owner', amount: 1, ttlSeconds: 0 },
        'ttlSeconds',
      ],
      ['/v1/organizations/acme/members', { userId: 'bob', role: 'king' }, 'role'],
      ['/v1/organizations', { organizationId: 'o', name: '', ownerUserId: 'bob' }, 'name'],
      ['/v1/users', { userId: 'bob', name: 'a\u0007b' }, 'name'],
    ];
    const before = await positionOfStore();
    for (const [path, body, field] of cases) {
      const response = await ledger.http.post(path).send(body);
      expect({ path, field, status: response.status }).toEqual({ path, field, status: 400 });
      expect(response.body.errors).toEqual([expect.objectContaining({ field })]);
    }
    const threshold = await ledger.http
      .put('/v1/organizations/acme/low-balance-threshold')
      .send({ threshold: 1.5 })
      .expect(400);
    expect(threshold.body.errors).toEqual([expect.objectContaining({ field: 'threshold' })]);
    expect(await positionOfStore()).toBe(before);
  });

  it('refuses bad query parameters', async () => {
    await ledger.http.get('/v1/organizations/acme/balance?at=yesterday').expect(400);
    await ledger.http.get('/v1/organizations/acme/history?limit=0').expect(400);
    await ledger.http.get('/v1/organizations/acme/history?fromRevision=-1').expect(400);
    await ledger.http.get('/v1/organizations/acme/history?limit=abc').expect(400);
    await ledger.http.get('/v1/organizations/acme/balance?minPosition=1e3').expect(400);
  });
});

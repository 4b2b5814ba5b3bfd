import { newDataDir, removeDataDir, startLedger, type RunningLedger } from '../support/ledger-app';

/**
 * 300 concurrent charges of 1 credit against 100 credits, some runIds sent more than once,
 * with a restart of the service in the middle: exactly 100 distinct charges, none twice,
 * and every acknowledged one still there after the restart.
 */
describe('concurrent charges and a restart', () => {
  let dataDir: string;
  let ledger: RunningLedger;

  beforeAll(async () => {
    dataDir = newDataDir();
    ledger = await startLedger(dataDir);
    await ledger.http
      .post('/v1/organizations')
      .send({ organizationId: 'hot', name: 'Hot', ownerUserId: 'owner' })
      .expect(201);
    await ledger.http
      .post('/v1/organizations/hot/grants')
      .send({ grantId: 'g', amount: 100, source: 'purchase' })
      .expect(201);
  });
  afterAll(async () => {
    await ledger.close();
    removeDataDir(dataDir);
  });

  const charge = (runId: string) =>
    ledger.http
      .post('/v1/charm-runs')
      .send({ runId, charmId: 'c', userId: 'owner', amount: 1, organizationId: 'hot' });

  /** `distinct` runIds, every fourth one sent twice at once. */
  const wave = (prefix: string, distinct: number) => {
    const runIds: string[] = [];
    for (let i = 0; i < distinct; i++) {
      runIds.push(`${prefix}-${i}`);
      if (i % 4 === 0) runIds.push(`${prefix}-${i}`);
    }
    return runIds;
  };

  it('charges exactly 100 distinct runs and keeps every acknowledged one across a restart', async () => {
    const acknowledged = new Map<string, number>();
    const record = (
      responses: { status: number; body: { runId: string; replayed: boolean } }[],
    ) => {
      // The two copies of a runId are sent at once, so either may be the one charged: take
      // every 201 of a wave before its replays.
      const firstWrites = responses.filter((response) => response.status === 201);
      const others = responses.filter((response) => response.status !== 201);
      for (const response of [...firstWrites, ...others]) {
        expect([200, 201, 402]).toContain(response.status);
        if (response.status === 201) {
          expect(acknowledged.has(response.body.runId)).toBe(false);
          acknowledged.set(response.body.runId, 1);
        }
        if (response.status === 200) {
          expect(response.body.replayed).toBe(true);
          expect(acknowledged.has(response.body.runId)).toBe(true);
        }
      }
    };

    // 75 requests before the restart (60 charges), 225 after (40 more fit).
    const first = wave('a', 60);
    record(await Promise.all(first.map(charge)));
    expect(acknowledged.size).toBe(60);

    await ledger.close();
    ledger = await startLedger(dataDir);

    // Repeats of runIds acknowledged before the restart must be replays, not new charges.
    const second = [...wave('b', 180), ...[...acknowledged.keys()].slice(0, 10)];
    expect(first.length + second.length).toBe(310);
    record(await Promise.all(second.map(charge)));

    expect(acknowledged.size).toBe(100);
    const balance = await ledger.http.get('/v1/organizations/hot/balance').expect(200);
    expect(balance.body.available).toBe(0);

    const history = await ledger.http.get('/v1/organizations/hot/history?limit=1000').expect(200);
    const charged = history.body.events
      .filter((event: { type: string }) => event.type === 'CharmRunCharged')
      .map((event: { data: { runId: string } }) => event.data.runId);
    expect(charged).toHaveLength(100);
    expect(new Set(charged)).toEqual(new Set(acknowledged.keys()));
  });
});

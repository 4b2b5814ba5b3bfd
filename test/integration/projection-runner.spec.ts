import type { DataSource } from 'typeorm';
import { PROJECTIONS } from '../../projections';
import { SqliteEventStore } from '../../src/event-store/sqlite/sqlite-event-store';
import { LEDGER_ACTOR } from '../../src/ledger/actor';
import type { OrganizationCommand } from '../../src/ledger/organization/commands';
import { readModelDataSource } from '../../src/read/read-model-database';
import { ProjectionRunner } from '../../src/read/projection-runner';
import { rebuildProjections } from '../../src/read/rebuild';
import { AggregateWriter } from '../../src/write/aggregate-writer';
import { organizationAggregate } from '../../src/write/writers';
import { newDataDir, removeDataDir, TestClock } from '../support/ledger-app';
import { createOrganization, grantCredits } from '../support/organization-commands';
import { createTestDatabase } from '../support/postgres';

const context = { actor: LEDGER_ACTOR, correlationId: 'test' };

describe.each(['sqlite', 'postgres'] as const)('projection runner on %s', (database) => {
  let dataDir: string;
  let store: SqliteEventStore;
  let dataSource: DataSource;
  let runner: ProjectionRunner;
  let drop: (() => Promise<void>) | undefined;
  const clock = new TestClock(Date.parse('2026-05-01T10:00:00Z'));

  beforeEach(async () => {
    dataDir = newDataDir();
    store = new SqliteEventStore(':memory:');
    let databaseUrl: string | undefined;
    if (database === 'postgres') ({ url: databaseUrl, drop } = await createTestDatabase());
    dataSource = await readModelDataSource({ dataDir, databaseUrl }).initialize();
    runner = new ProjectionRunner(store, dataSource, PROJECTIONS, {
      idleMs: 5,
      onError: (error) => console.error(error),
    });
    await runner.start();
  });
  afterEach(async () => {
    await runner.stop();
    await dataSource.destroy();
    await store.close();
    await drop?.();
    removeDataDir(dataDir);
  });

  const organizations = () =>
    new AggregateWriter(organizationAggregate, store, undefined, clock, {
      cacheSize: 10,
      snapshotEvery: 1000,
    });

  it('builds balance, usage and membership from the streams', async () => {
    const writer = organizations();
    const run = (command: Parameters<typeof writer.execute>[1]) =>
      writer.execute('acme', command, context, () => undefined);
    await run(createOrganization('acme'));
    await run({ type: 'AddMember', userId: 'bob', role: 'member', actor: LEDGER_ACTOR });
    await run(grantCredits(100));
    await run({
      type: 'ChargeCharmRun',
      runId: 'r1',
      charmId: 'summarize',
      userId: 'bob',
      amount: 30,
    });
    await run({
      type: 'ChargeCharmRun',
      runId: 'r2',
      charmId: 'summarize',
      userId: 'bob',
      amount: 5,
    });
    await run({ type: 'RefundCharmRun', runId: 'r1', amount: 10 });
    await run({
      type: 'ReserveCredits',
      reservationId: 'h',
      charmId: 'long',
      userId: 'olga',
      amount: 20,
      ttlSeconds: 60,
    });
    await runner.catchUp();

    const grants = await dataSource.query(`SELECT grant_id, remaining, held FROM balance_grants`);
    expect(
      grants.map((g: Record<string, unknown>) => [g.grant_id, Number(g.remaining), Number(g.held)]),
    ).toEqual([['g', 55, 20]]);
    const daily = await dataSource.query(
      `SELECT charm_id, user_id, day, runs, credits, refunded FROM usage_daily`,
    );
    expect(
      daily.map((d: Record<string, unknown>) => ({
        ...d,
        runs: Number(d.runs),
        credits: Number(d.credits),
        refunded: Number(d.refunded),
      })),
    ).toEqual([
      {
        charm_id: 'summarize',
        user_id: 'bob',
        day: '2026-05-01',
        runs: 2,
        credits: 35,
        refunded: 10,
      },
    ]);
    const members = await dataSource.query(
      `SELECT user_id, role FROM memberships ORDER BY user_id`,
    );
    expect(members).toEqual([
      { user_id: 'bob', role: 'member' },
      { user_id: 'olga', role: 'owner' },
    ]);
    expect(runner.position).toBe(await store.headPosition());
  });

  it('lets other work run between the pages of a backlog', async () => {
    const writer = organizations();
    await writer.execute(
      'acme',
      {
        type: 'CreateOrganization',
        organizationId: 'acme',
        name: 'Acme',
        kind: 'company',
        ownerUserId: 'olga',
      },
      context,
      () => undefined,
    );
    await runner.catchUp();
    await runner.stop();
    // 1,000 events at once: four pages of backlog for a runner started afterwards.
    await writer.execute(
      'acme',
      {
        type: 'GrantCredits',
        grantId: 'g',
        amount: 5_000,
        source: 'purchase',
        priority: 100,
        expiresAt: null,
      },
      context,
      () => undefined,
    );
    await Promise.all(
      Array.from({ length: 1_000 }, (_, i) =>
        writer.execute(
          'acme',
          { type: 'ChargeCharmRun', runId: `r${i}`, charmId: 'c', userId: 'olga', amount: 1 },
          context,
          () => undefined,
        ),
      ),
    );
    const head = await store.headPosition();
    runner = new ProjectionRunner(store, dataSource, PROJECTIONS, { idleMs: 5 });
    await runner.start();
    const seen: bigint[] = [];
    await new Promise<void>((resolve) => {
      const look = () => {
        seen.push(runner.position);
        if (runner.position >= head) resolve();
        else setImmediate(look);
      };
      setImmediate(look);
    });
    // Requests (here: a callback of the next turn) got in while the backlog was worked off.
    expect(seen.filter((position) => position < head).length).toBeGreaterThanOrEqual(3);
  });

  /** 100 credits granted, then one run of 30 charged. */
  const grantAndChargeOnce = async (run: (command: OrganizationCommand) => Promise<unknown>) => {
    await run(grantCredits(100));
    await run({
      type: 'ChargeCharmRun',
      runId: 'r1',
      charmId: 'summarize',
      userId: 'olga',
      amount: 30,
    });
  };
  /** The read models show that one charge of 30, once. */
  const expectChargedOnce = async () => {
    const [grant] = await dataSource.query(`SELECT remaining FROM balance_grants`);
    expect(Number(grant.remaining)).toBe(70);
    const [daily] = await dataSource.query(`SELECT runs, credits FROM usage_daily`);
    expect([Number(daily.runs), Number(daily.credits)]).toEqual([1, 30]);
  };

  it('counts nothing twice when a batch dies between its changes and its checkpoint', async () => {
    await runner.stop();
    let failures = 0;
    runner = new ProjectionRunner(store, dataSource, PROJECTIONS, {
      idleMs: 5,
      retryMs: 5,
      // The first two batches die after writing their changes, before their checkpoint.
      beforeCheckpoint: () => {
        if (failures++ < 2) throw new Error('crash between changes and checkpoint');
      },
    });
    await runner.start();
    const writer = organizations();
    const run = (command: Parameters<typeof writer.execute>[1]) =>
      writer.execute('acme', command, context, () => undefined);
    await run(createOrganization('acme'));
    await grantAndChargeOnce(run);
    await runner.catchUp();
    expect(failures).toBeGreaterThanOrEqual(3);
    await expectChargedOnce();
  });

  it('counts nothing twice when a batch commits but the answer to its COMMIT is lost', async () => {
    await runner.stop();
    // What a connection cut during COMMIT looks like from here: the page and its checkpoint
    // are stored, and the call fails (found by the fault suite's PostgreSQL cut).
    let cutting = false;
    let lostAnswers = 0;
    const cutAfterCommit = new Proxy(dataSource, {
      get(target, property) {
        if (property === 'transaction') {
          return async (...args: Parameters<DataSource['transaction']>) => {
            const result: unknown = await target.transaction(...args);
            if (cutting && lostAnswers++ < 2) throw new Error('Connection terminated unexpectedly');
            return result;
          };
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    runner = new ProjectionRunner(store, cutAfterCommit, PROJECTIONS, { idleMs: 5, retryMs: 5 });
    await runner.start();
    const writer = organizations();
    const run = (command: Parameters<typeof writer.execute>[1]) =>
      writer.execute('acme', command, context, () => undefined);
    await run(createOrganization('acme'));
    await runner.catchUp();
    cutting = true;
    await grantAndChargeOnce(run);
    await runner.catchUp();
    expect(lostAnswers).toBeGreaterThanOrEqual(1);
    await expectChargedOnce();
  });

  it('rebuilds from position 0 into new tables while the old ones keep being updated', async () => {
    const writer = organizations();
    const run = (command: Parameters<typeof writer.execute>[1]) =>
      writer.execute('acme', command, context, () => undefined);
    await run(createOrganization('acme'));
    await run(grantCredits(100));
    for (let i = 0; i < 20; i++) {
      await run({
        type: 'ChargeCharmRun',
        runId: `r${i}`,
        charmId: 'summarize',
        userId: 'olga',
        amount: 1,
      });
    }
    await runner.catchUp();
    const snapshot = async () => ({
      grants: (await dataSource.query(`SELECT grant_id, remaining FROM balance_grants`)).map(
        (r: Record<string, unknown>) => [r.grant_id, Number(r.remaining)],
      ),
      daily: (await dataSource.query(`SELECT runs, credits FROM usage_daily`)).map(
        (r: Record<string, unknown>) => [Number(r.runs), Number(r.credits)],
      ),
      members: await dataSource.query(`SELECT user_id, role FROM memberships`),
    });
    const before = await snapshot();
    expect(before.grants).toEqual([['g', 80]]);
    // Damage the read models, then rebuild them all while charges keep coming.
    await dataSource.query(`UPDATE balance_grants SET remaining = 0`);
    await dataSource.query(`DELETE FROM memberships`);
    const progress: bigint[] = [];
    const charging = (async () => {
      for (let i = 20; i < 30; i++) {
        await run({
          type: 'ChargeCharmRun',
          runId: `r${i}`,
          charmId: 'summarize',
          userId: 'olga',
          amount: 1,
        });
      }
    })();
    await rebuildProjections(store, dataSource, PROJECTIONS, ({ position }) =>
      progress.push(position),
    );
    await charging;
    await runner.catchUp();
    expect(progress.length).toBeGreaterThan(0);
    const after = await snapshot();
    expect(after.grants).toEqual([['g', 70]]);
    expect(after.daily).toEqual([[30, 30]]);
    expect(after.members).toEqual([{ user_id: 'olga', role: 'owner' }]);
    const tables: { name: string }[] =
      database === 'postgres'
        ? await dataSource.query(
            `SELECT tablename AS name FROM pg_tables WHERE tablename LIKE '%rebuild%'`,
          )
        : await dataSource.query(
            `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%rebuild%'`,
          );
    expect(tables).toEqual([]);
  });
});

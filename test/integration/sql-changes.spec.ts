import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { DataSource } from 'typeorm';
import type { Change } from '../../projections';
import { InMemoryReadModel } from '../../projections/in-memory-model';
import { dialectOf, readModelDataSource } from '../../src/read/read-model-database';
import { applyChanges, statementSizes } from '../../src/read/sql-changes';
import { newDataDir, removeDataDir } from '../support/ledger-app';
import { createTestDatabase } from '../support/postgres';

const GRANTS = 'balance_grants';
const ORGANIZATIONS = Array.from({ length: 6 }, (_, i) => `org-${i}`);
const GRANT_IDS = ['g1', 'g2'];

const grantRow = (organizationId: string, grantId: string): Change => ({
  kind: 'upsert',
  table: GRANTS,
  key: { organization_id: organizationId, grant_id: grantId },
  set: {
    source: 'plan',
    priority: 100,
    expires_at: null,
    amount: 1000,
    remaining: 1000,
    held: 0,
    granted_at: '2026-11-30T00:00:00.000Z',
    position: '1',
  },
});

/** Additions to grant rows, some of them to rows that do not exist (they change nothing). */
const increments = fc.array(
  fc.record({
    kind: fc.constant('increment' as const),
    table: fc.constant(GRANTS),
    key: fc.record({
      organization_id: fc.constantFrom(...ORGANIZATIONS, 'org-missing'),
      grant_id: fc.constantFrom(...GRANT_IDS),
    }),
    add: fc.record({
      remaining: fc.integer({ min: -50, max: 50 }),
      held: fc.integer({ min: -5, max: 5 }),
    }),
  }),
  { maxLength: 300 },
);

describe.each(['sqlite', 'postgres'] as const)('read-model changes on %s', (database) => {
  let dataDir: string;
  let drop: (() => Promise<void>) | undefined;
  let dataSource: DataSource;
  const execute = (sql: string, parameters: unknown[]) => dataSource.query(sql, parameters);

  beforeAll(async () => {
    dataDir = newDataDir();
    let databaseUrl: string | undefined;
    if (database === 'postgres') ({ url: databaseUrl, drop } = await createTestDatabase());
    dataSource = readModelDataSource({ dataDir, databaseUrl });
    await dataSource.initialize();
  });

  afterAll(async () => {
    await dataSource.destroy();
    await drop?.();
    removeDataDir(dataDir);
  });

  const grants = async () => {
    const rows: { organization_id: string; grant_id: string; remaining: string; held: string }[] =
      await dataSource.query(
        `SELECT organization_id, grant_id, remaining, held FROM ${GRANTS} ORDER BY organization_id, grant_id`,
      );
    return rows.map((row) => ({
      ...row,
      remaining: Number(row.remaining),
      held: Number(row.held),
    }));
  };

  it('adds to many rows in a few statements, as the changes one by one would', async () => {
    await fc.assert(
      fc.asyncProperty(increments, async (page) => {
        await dataSource.query(`DELETE FROM ${GRANTS}`);
        const setUp = ORGANIZATIONS.flatMap((organization) =>
          GRANT_IDS.map((grant) => grantRow(organization, grant)),
        );
        await applyChanges(setUp, execute, dialectOf(dataSource));
        const statements: string[] = [];
        await dataSource.transaction((manager) =>
          applyChanges(
            page,
            (sql, parameters) => {
              statements.push(sql);
              return manager.query(sql, parameters);
            },
            dialectOf(dataSource),
          ),
        );

        const model = new InMemoryReadModel();
        model.apply([...setUp, ...page]);
        const expected = model
          .rows(GRANTS)
          .map((row) => ({
            organization_id: row.organization_id,
            grant_id: row.grant_id,
            remaining: row.remaining,
            held: row.held,
          }))
          .sort((a, b) =>
            `${a.organization_id} ${a.grant_id}`.localeCompare(
              `${b.organization_id} ${b.grant_id}`,
            ),
          );
        expect(await grants()).toEqual(expected);
        // A row's additions fold into one, and the rows go out a few statements at a time.
        const rows = new Set(page.map((change) => JSON.stringify(change.key))).size;
        expect(statements).toHaveLength(statementSizes(rows).length);
        expect(statements.length).toBeLessThanOrEqual(4);
      }),
      { numRuns: 25 },
    );
  });

  it('refuses a fraction, and changes nothing', async () => {
    await dataSource.query(`DELETE FROM ${GRANTS}`);
    await applyChanges(
      [grantRow('org-0', 'g1'), grantRow('org-1', 'g1')],
      execute,
      dialectOf(dataSource),
    );
    const fraction: Change[] = ['org-0', 'org-1'].map((organization) => ({
      kind: 'increment',
      table: GRANTS,
      key: { organization_id: organization, grant_id: 'g1' },
      add: { remaining: -1.5, held: 0 },
    }));
    await expect(
      dataSource.transaction((manager) =>
        applyChanges(
          fraction,
          (sql, parameters) => manager.query(sql, parameters),
          dialectOf(dataSource),
        ),
      ),
    ).rejects.toThrow('can only add integers');
    expect((await grants()).map((row) => row.remaining)).toEqual([1000, 1000]);
  });
});

describe('read-model changes on SQLite, as system calls', () => {
  let dataDir: string;
  let dataSource: DataSource;

  beforeAll(async () => {
    dataDir = newDataDir();
    dataSource = await readModelDataSource({ dataDir }).initialize();
  });
  afterAll(async () => {
    await dataSource.destroy();
    removeDataDir(dataDir);
  });

  /** Write system calls this thread has made so far (better-sqlite3 writes on the caller's). */
  const writeCalls = () =>
    Number(/^syscw:\s+(\d+)$/m.exec(readFileSync('/proc/thread-self/io', 'utf8'))![1]);
  const logBytes = () => statSync(join(dataDir, 'read-models.sqlite-wal')).size;

  it('writes a page of changes over many organizations with a write per log frame, not a temporary file beside it', async () => {
    const organizations = Array.from({ length: 3000 }, (_, i) => `org-${(i * 7919) % 3000}`);
    await applyChanges(
      organizations.map((organization) => grantRow(organization, 'g1')),
      (sql, parameters) => dataSource.query(sql, parameters),
      'sqlite',
    );
    // Start the log over (its 32-byte header stays), so that its growth is the page's frames.
    await dataSource.query('PRAGMA wal_checkpoint(TRUNCATE)');
    // A charge's rows over 3,000 organizations: from the second statement on, each changes
    // pages the transaction changed before, which SQLite keeps in a statement journal.
    const page: Change[] = organizations.flatMap((organization, i): Change[] => [
      {
        kind: 'upsert',
        table: 'usage_runs',
        key: { organization_id: organization, run_id: `run-${i}` },
        set: {
          charm_id: 'summarize',
          user_id: 'bob',
          charged_at: '2026-11-30T00:00:00.000Z',
          day: '2026-11-30',
          credits: 1,
          refunded: 0,
        },
      },
      {
        kind: 'increment',
        table: GRANTS,
        key: { organization_id: organization, grant_id: 'g1' },
        add: { remaining: -1, held: 0 },
      },
    ]);
    const before = writeCalls();
    await dataSource.transaction((manager) =>
      applyChanges(page, (sql, parameters) => manager.query(sql, parameters), 'sqlite'),
    );
    const calls = writeCalls() - before;
    // A frame is a header and a page: two writes. A statement journal spilled to a file
    // wrote each changed page there too, with its number: 761 writes for 123 frames here.
    const frames = (logBytes() - 32) / (4096 + 24);
    expect(frames).toBeGreaterThan(30);
    expect(calls).toBeLessThanOrEqual(2 * frames + 8);
    const [{ remaining }] = await dataSource.query(
      `SELECT sum(remaining) AS remaining FROM ${GRANTS}`,
    );
    expect(Number(remaining)).toBe(3000 * 999);
  });
});

import fc from 'fast-check';
import type { DataSource } from 'typeorm';
import { PROJECTIONS } from '../../projections';
import { verifyOrganization } from '../../src/audit/verify';
import { SqliteEventStore } from '../../src/event-store/sqlite/sqlite-event-store';
import { LEDGER_ACTOR } from '../../src/ledger/actor';
import { LedgerError } from '../../src/ledger/errors';
import type { OrganizationCommand } from '../../src/ledger/organization/commands';
import type { UserCommand } from '../../src/ledger/user/commands';
import { availableCredits, reservedCredits } from '../../src/ledger/organization/burn-down';
import { ProjectionRunner } from '../../src/read/projection-runner';
import { usageReport } from '../../src/read/queries';
import { readModelDataSource } from '../../src/read/read-model-database';
import { rebuildProjections } from '../../src/read/rebuild';
import { AggregateWriter } from '../../src/write/aggregate-writer';
import { organizationAggregate, userAggregate } from '../../src/write/writers';
import { newDataDir, removeDataDir, TestClock } from '../support/ledger-app';
import { createTestDatabase } from '../support/postgres';

const context = { actor: LEDGER_ACTOR, correlationId: 'random' };
const ORGANIZATIONS = ['o0', 'o1', 'o2', 'o3'];
const USERS = ['u0', 'u1', 'u2', 'u3', 'u4'];

type Step =
  | { kind: 'organization'; organizationId: string; command: OrganizationCommand }
  | { kind: 'user'; userId: string; command: UserCommand }
  | { kind: 'advance'; ms: number };

const pick = <T>(values: readonly T[]) => fc.constantFrom(...values);
const amount = fc.integer({ min: 1, max: 80 });
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.integer({ min: 1, max: 6 * 3600_000 }).map((ms): Step => ({ kind: 'advance', ms })),
  fc
    .record({
      organizationId: pick(ORGANIZATIONS),
      userId: pick(USERS),
      role: pick(['admin', 'billing', 'member'] as const),
    })
    .map(({ organizationId, userId, role }): Step => ({
      kind: 'organization',
      organizationId,
      command: { type: 'AddMember', userId, role, actor: LEDGER_ACTOR },
    })),
  fc
    .record({ organizationId: pick(ORGANIZATIONS), userId: pick(USERS) })
    .map(({ organizationId, userId }): Step => ({
      kind: 'organization',
      organizationId,
      command: { type: 'RemoveMember', userId, actor: LEDGER_ACTOR },
    })),
  fc
    .record({
      organizationId: pick(ORGANIZATIONS),
      n: fc.integer({ min: 0, max: 9 }),
      amount: fc.integer({ min: 10, max: 300 }),
      expires: fc.boolean(),
    })
    .map(({ organizationId, n, amount, expires }): Step => ({
      kind: 'organization',
      organizationId,
      command: {
        type: 'GrantCredits',
        grantId: `g${n}`,
        amount,
        source: 'plan',
        priority: n % 3,
        expiresAt: expires ? 'soon' : null,
      },
    })),
  {
    arbitrary: fc
      .record({
        organizationId: pick(ORGANIZATIONS),
        n: fc.integer({ min: 0, max: 60 }),
        user: pick(USERS),
        charm: pick(['a', 'b', 'c']),
        amount,
      })
      .map(({ organizationId, n, user, charm, amount }): Step => ({
        kind: 'organization',
        organizationId,
        command: { type: 'ChargeCharmRun', runId: `r${n}`, charmId: charm, userId: user, amount },
      })),
    weight: 4,
  },
  fc
    .record({
      organizationId: pick(ORGANIZATIONS),
      n: fc.integer({ min: 0, max: 60 }),
      amount: fc.option(amount, { nil: undefined }),
    })
    .map(({ organizationId, n, amount }): Step => ({
      kind: 'organization',
      organizationId,
      command: { type: 'RefundCharmRun', runId: `r${n}`, amount },
    })),
  fc
    .record({
      organizationId: pick(ORGANIZATIONS),
      n: fc.integer({ min: 0, max: 5 }),
      user: pick(USERS),
      amount,
    })
    .map(({ organizationId, n, user, amount }): Step => ({
      kind: 'organization',
      organizationId,
      command: {
        type: 'ReserveCredits',
        reservationId: `h${n}`,
        charmId: 'long',
        userId: user,
        amount,
        ttlSeconds: 7200,
      },
    })),
  fc
    .record({
      organizationId: pick(ORGANIZATIONS),
      n: fc.integer({ min: 0, max: 5 }),
      amount: fc.integer({ min: 1, max: 20 }),
    })
    .map(({ organizationId, n, amount }): Step => ({
      kind: 'organization',
      organizationId,
      command: {
        type: 'CaptureReservation',
        reservationId: `h${n}`,
        amount,
        runId: `c${organizationId}${n}`,
      },
    })),
  fc
    .record({ organizationId: pick(ORGANIZATIONS), n: fc.integer({ min: 0, max: 5 }) })
    .map(({ organizationId, n }): Step => ({
      kind: 'organization',
      organizationId,
      command: { type: 'ReleaseReservation', reservationId: `h${n}` },
    })),
  pick(ORGANIZATIONS).map((organizationId): Step => ({
    kind: 'organization',
    organizationId,
    command: { type: 'ExpireDue' },
  })),
  fc
    .record({
      from: pick(ORGANIZATIONS),
      to: pick(ORGANIZATIONS),
      n: fc.integer({ min: 0, max: 20 }),
      amount,
    })
    .map(({ from, to, n, amount }): Step => ({
      kind: 'organization',
      organizationId: from,
      command: {
        type: 'TransferCredits',
        transferId: `t${n}`,
        toOrganizationId: to,
        amount,
        actor: LEDGER_ACTOR,
        actorRoleInRecipient: null,
      },
    })),
  fc
    .record({ userId: pick(USERS), organizationId: pick(ORGANIZATIONS) })
    .map(({ userId, organizationId }): Step => ({
      kind: 'user',
      userId,
      command: { type: 'SwitchActiveOrganization', organizationId, isMember: true },
    })),
);

describe.each(['sqlite', 'postgres'] as const)(
  'read models on %s against random histories',
  (database) => {
    let dataDir: string;
    let store: SqliteEventStore;
    let dataSource: DataSource;
    let drop: (() => Promise<void>) | undefined;

    beforeAll(async () => {
      dataDir = newDataDir();
      store = new SqliteEventStore(':memory:');
      let databaseUrl: string | undefined;
      if (database === 'postgres') ({ url: databaseUrl, drop } = await createTestDatabase());
      dataSource = await readModelDataSource({ dataDir, databaseUrl }).initialize();
    });
    afterAll(async () => {
      await dataSource.destroy();
      await store.close();
      await drop?.();
      removeDataDir(dataDir);
    });

    it('equal a replay of the streams, after a restart, and after a rebuild', async () => {
      const clock = new TestClock(Date.parse('2026-06-01T00:00:00Z'));
      const organizations = new AggregateWriter(organizationAggregate, store, store, clock, {
        cacheSize: 100,
        snapshotEvery: 50,
      });
      const users = new AggregateWriter(userAggregate, store, undefined, clock, {
        cacheSize: 100,
        snapshotEvery: 50,
      });
      for (const userId of USERS) {
        await users.execute(
          userId,
          { type: 'RegisterUser', userId, personalOrganizationId: `personal-${userId}` },
          context,
          () => undefined,
        );
      }
      for (const organizationId of ORGANIZATIONS) {
        await organizations.execute(
          organizationId,
          {
            type: 'CreateOrganization',
            organizationId,
            name: organizationId,
            kind: 'company',
            ownerUserId: 'u0',
          },
          context,
          () => undefined,
        );
      }
      const steps = fc.sample(step, { numRuns: 3000, seed: 20261128 });
      let applied = 0;
      let runner = new ProjectionRunner(store, dataSource, PROJECTIONS, { idleMs: 2 });
      await runner.start();
      for (const next of steps) {
        try {
          if (next.kind === 'advance') clock.advance(next.ms);
          else if (next.kind === 'user')
            await users.execute(next.userId, next.command, context, () => undefined);
          else {
            const command =
              next.command.type === 'GrantCredits' && next.command.expiresAt === 'soon'
                ? { ...next.command, expiresAt: new Date(clock.now() + 3 * 3600_000).toISOString() }
                : next.command;
            const written = await organizations.execute(
              next.organizationId,
              command,
              context,
              ({ events }) => events.length,
            );
            if (written.answer > 0 && command.type === 'TransferCredits') {
              await organizations.execute(
                command.toOrganizationId,
                {
                  type: 'ReceiveTransfer',
                  transferId: command.transferId,
                  fromOrganizationId: next.organizationId,
                  amount: command.amount,
                },
                context,
                () => undefined,
              );
            }
          }
          applied++;
        } catch (error) {
          if (!(error instanceof LedgerError)) throw error;
        }
      }
      expect(applied).toBeGreaterThan(1000);
      await runner.catchUp();

      const everythingConsistent = async () => {
        for (const organizationId of ORGANIZATIONS) {
          const report = await verifyOrganization(
            store,
            dataSource,
            organizationId,
            async () => undefined,
          );
          expect(report.differences).toEqual([]);
          expect(report.eventsReplayed).toBeGreaterThan(10);
        }
        // And they agree with the write side's own fold of the same streams.
        for (const organizationId of ORGANIZATIONS) {
          const { state } = await organizations.read(organizationId);
          const grants: {
            grant_id: string;
            remaining: string | number;
            held: string | number;
            expires_at: string | null;
          }[] = await dataSource.query(
            `SELECT * FROM "balance_grants" WHERE "organization_id" = '${organizationId}'`,
          );
          const now = clock.now();
          const spendable = grants
            .filter((grant) => grant.expires_at === null || Date.parse(grant.expires_at) > now)
            .reduce((sum, grant) => sum + Number(grant.remaining), 0);
          expect(spendable).toBe(availableCredits(state, now));
          expect(grants.reduce((sum, grant) => sum + Number(grant.held), 0)).toBe(
            reservedCredits(state),
          );
          for (const [grantId, grant] of state.grants) {
            const row = grants.find((candidate) => candidate.grant_id === grantId);
            expect([grantId, Number(row?.remaining), Number(row?.held)]).toEqual([
              grantId,
              grant.remaining,
              grant.held,
            ]);
          }
          const members: { user_id: string; role: string }[] = await dataSource.query(
            `SELECT "user_id", "role" FROM "memberships" WHERE "organization_id" = '${organizationId}' ORDER BY "user_id"`,
          );
          expect(members).toEqual(
            [...state.members]
              .map(([user_id, role]) => ({ user_id, role }))
              .sort((a, b) => a.user_id.localeCompare(b.user_id)),
          );
        }
        // Usage adds up to the credit, whichever way it is grouped.
        for (const organizationId of ORGANIZATIONS) {
          let charged = 0;
          let refunded = 0;
          for (const event of await store.readStream(`organization-${organizationId}`)) {
            const data = event.data as { amount: number };
            if (event.type === 'CharmRunCharged' || event.type === 'ReservationCaptured')
              charged += data.amount;
            if (event.type === 'CharmRunRefunded') refunded += data.amount;
          }
          for (const groupBy of ['day', 'charm', 'user'] as const) {
            const report = await usageReport(
              dataSource,
              organizationId,
              '2000-01-01',
              '2100-01-01',
              groupBy,
            );
            expect({
              groupBy,
              credits: report.totals.credits,
              refunded: report.totals.refunded,
            }).toEqual({ groupBy, credits: charged, refunded });
            expect(report.rows.reduce((sum, row) => sum + row.credits - row.refunded, 0)).toBe(
              charged - refunded,
            );
          }
        }
        const active: { user_id: string; organization_id: string }[] = await dataSource.query(
          `SELECT "user_id", "organization_id" FROM "active_organizations" ORDER BY "user_id"`,
        );
        const expected = await Promise.all(
          USERS.map(async (userId) => ({
            user_id: userId,
            organization_id: (await users.read(userId)).state.activeOrganizationId,
          })),
        );
        expect(active).toEqual(expected);
      };
      await everythingConsistent();

      // Restarted from its checkpoints, the runner handles nothing again.
      const usageBefore = await dataSource.query(
        `SELECT SUM("credits") AS c, SUM("refunded") AS r FROM "usage_daily"`,
      );
      await runner.stop();
      runner = new ProjectionRunner(store, dataSource, PROJECTIONS, { idleMs: 2 });
      await runner.start();
      await runner.catchUp();
      expect(
        await dataSource.query(
          `SELECT SUM("credits") AS c, SUM("refunded") AS r FROM "usage_daily"`,
        ),
      ).toEqual(usageBefore);
      await everythingConsistent();

      await rebuildProjections(store, dataSource, PROJECTIONS);
      await runner.stop();
      await everythingConsistent();
    }, 120_000);
  },
);

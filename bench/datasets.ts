/**
 * Generated histories for the bench, built with the ledger's own deciders and write pipeline
 * (so every event and snapshot is one the service could have written), kept under
 * bench/.data and reused by later runs.
 */
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SqliteEventStore } from '../src/event-store/sqlite/sqlite-event-store';
import type { OrganizationCommand } from '../src/ledger/organization/commands';
import { AggregateWriter, snapshotInterval } from '../src/write/aggregate-writer';
import { Clock } from '../src/write/clock';
import { organizationAggregate } from '../src/write/writers';

/** Bump when the generator, the event shapes or the snapshot format change, so old datasets are rebuilt. */
const VERSION = 12;
/** The history dataset's own, bumped when only its generator changes (`twin`). */
const HISTORY_VERSION = 13;
const DATA = join(__dirname, '..', '..', 'bench', '.data');

class ManualClock extends Clock {
  current = Date.parse('2025-01-01T00:00:00Z');
  now(): number {
    return this.current;
  }
}

const system = { actor: { kind: 'service' as const, id: 'bench' }, correlationId: 'bench' };

export const HISTORY_USERS = ['bench-user', 'u1', 'u2', 'u3', 'u4'];

async function build(
  name: string,
  fill: (store: SqliteEventStore, clock: ManualClock) => Promise<void>,
  version = VERSION,
) {
  const folder = join(DATA, `${name}-v${version}`);
  if (existsSync(join(folder, 'events.sqlite'))) return folder;
  const building = `${folder}.building`;
  rmSync(building, { recursive: true, force: true });
  mkdirSync(building, { recursive: true });
  const store = new SqliteEventStore(join(building, 'events.sqlite'), { synchronous: 'off' });
  const clock = new ManualClock();
  await fill(store, clock);
  await store.close();
  renameSync(building, folder);
  return folder;
}

/** LEDGER_SNAPSHOT_EVERY's default. */
const SNAPSHOT_EVERY = 500;

function writer(store: SqliteEventStore, clock: Clock) {
  return new AggregateWriter(organizationAggregate, store, store, clock, {
    cacheSize: 1000,
    snapshotEvery: SNAPSHOT_EVERY,
  });
}

const run = (organizations: ReturnType<typeof writer>, id: string, command: OrganizationCommand) =>
  organizations.execute(id, command, system, () => undefined);

async function company(organizations: ReturnType<typeof writer>, id: string, members: string[]) {
  await run(organizations, id, {
    type: 'CreateOrganization',
    organizationId: id,
    name: id,
    kind: 'company',
    ownerUserId: members[0],
  });
  await Promise.all(
    members
      .slice(1)
      .map((userId) =>
        run(organizations, id, { type: 'AddMember', userId, role: 'member', actor: system.actor }),
      ),
  );
  await run(organizations, id, {
    type: 'GrantCredits',
    grantId: 'bench',
    amount: 1_000_000_000_000,
    source: 'purchase',
    priority: 100,
    expiresAt: null,
  });
}

/** Runs of `twin`, the organization the bench loads first to compile the loading path. */
export const TWIN_RUNS = 20_000;

/**
 * `history`: 1,000,000 charm runs over one year (2025), by 5 users of 10 charms; `fresh`: the
 * same organization with no runs yet; `twin`: 20,000 runs in the last days of the year, with
 * snapshots, so that loading it takes the paths loading `history` takes (a snapshot of settled
 * tiers, the events after it).
 */
export function historyDataset(runs = 1_000_000): Promise<string> {
  return build(
    `history-${runs}`,
    async (store, clock) => {
      const organizations = writer(store, clock);
      await company(organizations, 'history', HISTORY_USERS);
      await company(organizations, 'fresh', HISTORY_USERS);
      await company(organizations, 'twin', HISTORY_USERS);
      const step = (365 * 24 * 3600 * 1000) / runs;
      const charge = (
        through: ReturnType<typeof writer>,
        from: number,
        count: number,
        organizationId = 'history',
      ) => {
        clock.current = Date.parse('2025-01-01T00:00:00Z') + from * step;
        return Promise.all(
          Array.from({ length: count }, (_, i) => {
            const n = from + i;
            return run(through, organizationId, {
              type: 'ChargeCharmRun',
              runId: `past-${n}`,
              charmId: `charm-${n % 10}`,
              userId: HISTORY_USERS[n % HISTORY_USERS.length],
              amount: 1 + (n % 5),
            });
          }),
        );
      };
      // A batch is decided at one instant: small enough batches that every day has its runs.
      const chunk = 1000;
      const last = runs - 2 * chunk;
      for (let start = 0; start < last; start += chunk) {
        await charge(organizations, start, chunk);
        // As a service under a steady load would have them: each snapshot done before the next.
        await organizations.snapshotsWritten();
        if (start % 100_000 === 0)
          process.stderr.write(`bench: history dataset ${start}/${runs}\n`);
      }
      // The twin's runs share run ids with the history's last ones: each organization has its own.
      for (let start = runs - TWIN_RUNS; start < runs; start += chunk) {
        await charge(organizations, start, chunk, 'twin');
        await organizations.snapshotsWritten();
      }
      // The worst cold load: the history ends one event short of its next snapshot, so loading
      // it replays the snapshot's whole interval but one event.
      const { state } = await organizations.read('history');
      const interval = snapshotInterval(
        SNAPSHOT_EVERY,
        organizationAggregate.snapshots!.size!(state),
      );
      const tail = Math.min(interval - 1, runs - last - 1);
      await charge(organizations, last, runs - last - tail);
      await organizations.snapshotsWritten();
      const unsnapshotted = new AggregateWriter(organizationAggregate, store, store, clock, {
        cacheSize: 10,
        snapshotEvery: Number.MAX_SAFE_INTEGER,
      });
      await charge(unsnapshotted, runs - tail, tail);
    },
    HISTORY_VERSION,
  );
}

/** `many-<i>`: 100,000 organizations, each created and granted credits. */
export function manyOrganizationsDataset(count = 100_000): Promise<string> {
  return build(`many-${count}`, async (store, clock) => {
    const organizations = writer(store, clock);
    const chunk = 2000;
    for (let start = 0; start < count; start += chunk) {
      await Promise.all(
        Array.from({ length: Math.min(chunk, count - start) }, (_, i) =>
          company(organizations, `many-${start + i}`, ['bench-user']),
        ),
      );
    }
  });
}

/**
 * `node dist/bench/domain.js`: the organization's own work a charge, on one thread and
 * without I/O: decide and evolve for charge after charge of one busy organization, and the
 * snapshots the write pipeline would take meanwhile (every slice run at once). It prints the
 * CPU microseconds a charge of each. The scenarios of `run.ts` share two cores with NATS,
 * the load and the service's other threads, and their figures move by 10% from one run to
 * the next; a change to decide, evolve or the snapshots is measured here first, alternating
 * builds, then in the scenarios.
 */
import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import type { OrganizationCommand } from '../src/ledger/organization/commands';
import { decide } from '../src/ledger/organization/decide';
import { evolve } from '../src/ledger/organization/evolve';
import { serializeOrganizationInSlices } from '../src/ledger/organization/snapshot';
import { initialOrganizationState, type OrganizationState } from '../src/ledger/organization/state';
import { snapshotInterval } from '../src/write/aggregate-writer';
import { organizationAggregate } from '../src/write/writers';

export interface DomainMeasure {
  charges: number;
  snapshots: number;
  /** CPU microseconds a charge: in all, deciding and evolving, taking snapshots. */
  microsPerCharge: { total: number; decideAndEvolve: number; snapshots: number };
  /** The organization as the last charge left it. */
  state: OrganizationState;
}

/** As the hot scenario sends them: 64 requesters, so batches of 32 (see the write pipeline). */
const BATCH = 32;
/** The snapshot interval's floor (LEDGER_SNAPSHOT_EVERY's default). */
const SNAPSHOT_EVERY = 500;

const cpuMillis = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

/** Charges `charges` runs to one organization, a batch of 32 a millisecond or so apart. */
export function measureDomain(charges: number): DomainMeasure {
  let now = Date.UTC(2026, 11, 1);
  let state = initialOrganizationState();
  const run = (command: OrganizationCommand) => {
    for (const event of decide(command, state, now)) state = evolve(state, event);
  };
  run({
    type: 'CreateOrganization',
    organizationId: 'bench',
    name: 'Bench',
    kind: 'company',
    ownerUserId: 'owner',
  });
  const grant = { grantId: 'bench', amount: 1e12, source: 'purchase', priority: 100 } as const;
  run({ type: 'GrantCredits', ...grant, expiresAt: null });
  const runIds = Array.from({ length: charges }, () => randomUUID());
  const size = organizationAggregate.snapshots!.size!;
  let deciding = 0;
  let snapshotting = 0;
  let snapshots = 0;
  let sinceSnapshot = 0;
  const started = cpuMillis();
  for (let first = 0; first < charges; first += BATCH) {
    now += 3;
    const before = cpuMillis();
    const last = Math.min(first + BATCH, charges);
    for (let i = first; i < last; i++) {
      // Parsed as a request's body is: fresh strings, as the service's state keeps them.
      const body = JSON.parse(`{"runId":"${runIds[i]}","charmId":"charm-${i % 7}"}`) as {
        runId: string;
        charmId: string;
      };
      run({ type: 'ChargeCharmRun', ...body, userId: 'owner', amount: 1 });
    }
    const decided = cpuMillis();
    deciding += decided - before;
    sinceSnapshot += last - first;
    if (sinceSnapshot >= snapshotInterval(SNAPSHOT_EVERY, size(state))) {
      sinceSnapshot = 0;
      snapshots += 1;
      const slices = serializeOrganizationInSlices(state);
      while (!slices.next().done);
      snapshotting += cpuMillis() - decided;
    }
  }
  const micros = (millis: number) => Math.round((millis * 1000 * 1000) / charges) / 1000;
  return {
    charges,
    snapshots,
    microsPerCharge: {
      total: micros(cpuMillis() - started),
      decideAndEvolve: micros(deciding),
      snapshots: micros(snapshotting),
    },
    state,
  };
}

if (require.main === module) {
  const options = new Command()
    .description("CPU a charge of the organization's own work: decide, evolve, snapshots")
    .option('--charges <n>', 'charges to one organization', '200000')
    .option('--rounds <n>', 'measures, one after the other', '3')
    .parse()
    .opts<{ charges: string; rounds: string }>();
  for (let round = 0; round < Number(options.rounds); round++) {
    const { state, ...measure } = measureDomain(Number(options.charges));
    console.log(JSON.stringify({ ...measure, runsKept: state.runs.size }));
  }
}

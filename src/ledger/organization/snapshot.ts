import { Map as ImmutableMap } from 'immutable';
import type { Allocation } from './events';
import { RunBook } from './run-book';
import type { CharmRun, OrganizationState } from './state';

/** Bump when the state's shape changes: older snapshots are then ignored and rebuilt. */
export const ORGANIZATION_SNAPSHOT_VERSION = 3;

/** Runs encoded between two places where a snapshot taken in slices may pause. */
const RUNS_PER_SLICE = 500;

const NO_REFUNDS = ImmutableMap<string, number>();

/**
 * A run in a snapshot, as a row: runId, charmId, userId, amount, chargedAt, availableAfter,
 * what can still be refunded (grantId, amount, grantId, amount...), then only if the run
 * was refunded or captured from a reservation: refunded, [[refundId, amount]...],
 * reservationId or null.
 */
type RunRow = [string, string, string, number, number, number, (string | number)[], ...unknown[]];

/**
 * Runs never change once recorded (a refund records a new one), so each is encoded once and
 * its text reused by every later snapshot: a week of runs is most of a busy organization's
 * snapshot, and re-encoding all of them each time made snapshots the larger part of a charge.
 */
const encodedRuns = new WeakMap<CharmRun, string>();

function encodedRun(run: CharmRun): string {
  let text = encodedRuns.get(run);
  if (text === undefined) {
    const refundable: (string | number)[] = [];
    for (const { grantId, amount } of run.refundable) refundable.push(grantId, amount);
    const row: RunRow = [
      run.runId,
      run.charmId,
      run.userId,
      run.amount,
      run.chargedAt,
      run.availableAfter,
      refundable,
    ];
    if (run.refunded !== 0 || run.refunds.size > 0 || run.reservationId !== undefined) {
      row.push(run.refunded, [...run.refunds], run.reservationId ?? null);
    }
    text = JSON.stringify(row);
    encodedRuns.set(run, text);
  }
  return text;
}

/** A snapshot as one string, at once (tests and tools). */
export function serializeOrganization(state: OrganizationState): string {
  const slices = serializeOrganizationInSlices(state);
  for (;;) {
    const step = slices.next();
    if (step.done) return step.value;
  }
}

/**
 * A snapshot taken a slice of runs at a time: the caller may pause where it yields (the state
 * is persistent, so it does not change meanwhile) and a large organization's snapshot does
 * not hold everything else up.
 */
export function* serializeOrganizationInSlices(
  state: OrganizationState,
): Generator<void, string, void> {
  const runs: string[] = [];
  for (const run of state.runs.values()) {
    if (runs.push(encodedRun(run)) % RUNS_PER_SLICE === 0) yield;
  }
  const rest = JSON.stringify({
    ...state,
    runs: undefined,
    members: [...state.members],
    grants: [...state.grants],
    reservations: [...state.reservations],
    transfersOut: [...state.transfersOut],
    transfersIn: [...state.transfersIn],
  });
  return `${rest.slice(0, -1)},"runs":[${runs.join(',')}]}`;
}

export function deserializeOrganization(text: string): OrganizationState {
  const raw = JSON.parse(text);
  return {
    ...raw,
    members: ImmutableMap(raw.members),
    grants: ImmutableMap(raw.grants),
    runs: RunBook.of(runsFrom(raw.runs as RunRow[])),
    reservations: ImmutableMap(raw.reservations),
    transfersOut: ImmutableMap(raw.transfersOut),
    transfersIn: ImmutableMap(raw.transfersIn),
  };
}

function* runsFrom(rows: RunRow[]): Generator<CharmRun> {
  for (const [runId, charmId, userId, amount, chargedAt, availableAfter, flat, ...rare] of rows) {
    const refundable: Allocation[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      refundable.push({ grantId: flat[i] as string, amount: flat[i + 1] as number });
    }
    const run: CharmRun = {
      runId,
      charmId,
      userId,
      amount,
      chargedAt,
      refundable,
      refunded: 0,
      // Most runs were never refunded: they share one empty map.
      refunds: NO_REFUNDS,
      availableAfter,
    };
    if (rare.length === 0) {
      yield run;
      continue;
    }
    const [refunded, refunds, reservationId] = rare as [number, [string, number][], string | null];
    yield {
      ...run,
      refunded,
      refunds: refunds.length === 0 ? NO_REFUNDS : ImmutableMap(refunds),
      ...(reservationId === null ? {} : { reservationId }),
    };
  }
}

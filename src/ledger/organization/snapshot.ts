import { Map as ImmutableMap } from 'immutable';
import type { Allocation } from './events';
import { RunBook } from './run-book';
import type { CharmRun, OrganizationState } from './state';

/** Bump when the state's shape changes: older snapshots are then ignored and rebuilt. */
export const ORGANIZATION_SNAPSHOT_VERSION = 2;

/** Runs encoded between two places where a snapshot taken in slices may pause. */
const RUNS_PER_SLICE = 500;

const NO_REFUNDS = ImmutableMap<string, number>();

/**
 * The runs of a snapshot, column by column: a week of runs is most of a busy organization's
 * snapshot, and arrays of numbers and repeated names parse several times faster than as many
 * objects. Names (charms, users, grants) are numbers into `names`. Refunds and reservations
 * are rare, so they are listed apart, by the run's index.
 */
interface RunColumns {
  names: string[];
  ids: string[];
  charms: number[];
  users: number[];
  amounts: number[];
  /** Milliseconds after `chargedFrom` (small numbers are quicker to write and read). */
  chargedFrom: number;
  chargedAt: number[];
  availableAfter: number[];
  /** Run after run, what can still be refunded: a count, then name, amount, name, amount... */
  refundable: number[];
  /** [index, refunded, [[refundId, amount]...], reservationId or null] */
  rare: [number, number, [string, number][], string | null][];
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
  const names: string[] = [];
  const numbers = new Map<string, number>();
  const name = (text: string) => {
    let index = numbers.get(text);
    if (index === undefined) {
      index = names.push(text) - 1;
      numbers.set(text, index);
    }
    return index;
  };
  const chargedFrom = state.createdAt;
  const runs: RunColumns = {
    names,
    ids: [],
    charms: [],
    users: [],
    amounts: [],
    chargedFrom,
    chargedAt: [],
    availableAfter: [],
    refundable: [],
    rare: [],
  };
  let index = 0;
  for (const run of state.runs.values()) {
    runs.ids.push(run.runId);
    runs.charms.push(name(run.charmId));
    runs.users.push(name(run.userId));
    runs.amounts.push(run.amount);
    runs.chargedAt.push(run.chargedAt - chargedFrom);
    runs.availableAfter.push(run.availableAfter);
    runs.refundable.push(run.refundable.length);
    for (const { grantId, amount } of run.refundable) runs.refundable.push(name(grantId), amount);
    if (run.refunded !== 0 || run.refunds.size > 0 || run.reservationId !== undefined) {
      runs.rare.push([index, run.refunded, [...run.refunds], run.reservationId ?? null]);
    }
    index += 1;
    if (index % RUNS_PER_SLICE === 0) yield;
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
  // The columns one at a time, pausing between the large ones.
  let text = `${rest.slice(0, -1)},"runs":{`;
  for (const [i, [column, values]] of Object.entries(runs).entries()) {
    text += `${i === 0 ? '' : ','}"${column}":${JSON.stringify(values)}`;
    yield;
  }
  return `${text}}}`;
}

export function deserializeOrganization(text: string): OrganizationState {
  const raw = JSON.parse(text);
  return {
    ...raw,
    members: ImmutableMap(raw.members),
    grants: ImmutableMap(raw.grants),
    runs: RunBook.of(runsFrom(raw.runs as RunColumns)),
    reservations: ImmutableMap(raw.reservations),
    transfersOut: ImmutableMap(raw.transfersOut),
    transfersIn: ImmutableMap(raw.transfersIn),
  };
}

function* runsFrom(columns: RunColumns): Generator<CharmRun> {
  const { names, rare, refundable: flat, chargedFrom } = columns;
  let nextRare = 0;
  let at = 0;
  for (let i = 0; i < columns.ids.length; i++) {
    const refundable: Allocation[] = [];
    for (let left = flat[at++]; left > 0; left--) {
      refundable.push({ grantId: names[flat[at]], amount: flat[at + 1] });
      at += 2;
    }
    const run: CharmRun = {
      runId: columns.ids[i],
      charmId: names[columns.charms[i]],
      userId: names[columns.users[i]],
      amount: columns.amounts[i],
      chargedAt: chargedFrom + columns.chargedAt[i],
      refundable,
      refunded: 0,
      // Most runs were never refunded: they share one empty map.
      refunds: NO_REFUNDS,
      availableAfter: columns.availableAfter[i],
    };
    if (nextRare < rare.length && rare[nextRare][0] === i) {
      const [, refunded, refunds, reservationId] = rare[nextRare++];
      yield {
        ...run,
        refunded,
        refunds: refunds.length === 0 ? NO_REFUNDS : ImmutableMap(refunds),
        ...(reservationId === null ? {} : { reservationId }),
      };
    } else {
      yield run;
    }
  }
}

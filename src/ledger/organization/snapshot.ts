import { Map as ImmutableMap } from 'immutable';
import type { Allocation } from './events';
import { RunBook, type SettledRuns } from './run-book';
import type { CharmRun, OrganizationState } from './state';

/** Bump when the state's shape changes: older snapshots are then ignored and rebuilt. */
export const ORGANIZATION_SNAPSHOT_VERSION = 5;

/** Runs encoded between two places where a snapshot taken in slices may pause. */
const RUNS_PER_SLICE = 500;

const NO_REFUNDS = ImmutableMap<string, number>();

/*
 * A snapshot is three lines (JSON never holds a raw newline):
 * 1. the state without its runs;
 * 2. the settled runs (RunBook), column by column: written once per tier and reused by every
 *    later snapshot, and restored without building a run until one is asked for;
 * 3. the recent runs, a row each (each run encoded once, see `encodedRun`); they replace
 *    settled runs of the same id.
 * A week of runs is most of a busy organization's snapshot: this keeps both taking a snapshot
 * and loading one from growing with it.
 */

/**
 * Settled runs, column by column: arrays of numbers and repeated names parse several times
 * faster than as many objects. Names (charms, users, grants) are numbers into `names`.
 * Refunds and reservations are rare, so they are listed apart, by the run's index.
 */
interface RunColumns {
  names: string[];
  ids: string[];
  charms: number[];
  users: number[];
  amounts: number[];
  chargedAt: number[];
  availableAfter: number[];
  /** Run after run, what can still be refunded: a count, then name, amount, name, amount... */
  refundable: number[];
  /** [index, refunded, [[refundId, amount]...], reservationId or null] */
  rare: RareFields[];
}

type RareFields = [number, number, [string, number][], string | null];

/**
 * A recent run as a row: runId, charmId, userId, amount, chargedAt, availableAfter, what can
 * still be refunded (grantId, amount...), then only if refunded or captured from a
 * reservation: refunded, [[refundId, amount]...], reservationId or null.
 */
type RunRow = [string, string, string, number, number, number, (string | number)[], ...unknown[]];

/** Each settled tier's line, once written or read: tiers never change. */
const encodedTiers = new WeakMap<SettledRuns, string>();
/** Each recent run's row: runs never change once recorded (a refund records a new one). */
const encodedRuns = new WeakMap<CharmRun, string>();

const isRare = (run: CharmRun) =>
  run.refunded !== 0 || run.refunds.size > 0 || run.reservationId !== undefined;

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
    if (isRare(run)) row.push(run.refunded, [...run.refunds], run.reservationId ?? null);
    text = JSON.stringify(row);
    encodedRuns.set(run, text);
  }
  return text;
}

function* encodeTier(tier: SettledRuns): Generator<void, string, void> {
  const cached = encodedTiers.get(tier);
  if (cached !== undefined) return cached;
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
  const columns: RunColumns = {
    names,
    ids: [],
    charms: [],
    users: [],
    amounts: [],
    chargedAt: [],
    availableAfter: [],
    refundable: [],
    rare: [],
  };
  let index = 0;
  for (const run of tier.values()) {
    columns.ids.push(run.runId);
    columns.charms.push(name(run.charmId));
    columns.users.push(name(run.userId));
    columns.amounts.push(run.amount);
    columns.chargedAt.push(run.chargedAt);
    columns.availableAfter.push(run.availableAfter);
    columns.refundable.push(run.refundable.length);
    for (const { grantId, amount } of run.refundable) {
      columns.refundable.push(name(grantId), amount);
    }
    if (isRare(run)) {
      columns.rare.push([index, run.refunded, [...run.refunds], run.reservationId ?? null]);
    }
    index += 1;
    if (index % RUNS_PER_SLICE === 0) yield;
  }
  const text = JSON.stringify(columns);
  encodedTiers.set(tier, text);
  return text;
}

/** Where a snapshot's settled runs are: parsed once, shared by every tier cut from them. */
interface ParsedColumns {
  columns: RunColumns;
  index: Map<string, number>;
  /** Where each run's refundable allocations start in `columns.refundable`. */
  refundableAt: number[];
  rare: Map<number, RareFields>;
}

function parseColumns(line: string): ParsedColumns {
  const columns = JSON.parse(line) as RunColumns;
  const { ids, refundable } = columns;
  const index = new Map<string, number>();
  const refundableAt: number[] = [];
  let at = 0;
  for (let i = 0; i < ids.length; i++) {
    index.set(ids[i], i);
    refundableAt.push(at);
    at += 1 + 2 * refundable[at];
  }
  const rare = new Map<number, RareFields>();
  for (const fields of columns.rare) rare.set(fields[0], fields);
  return { columns, index, refundableAt, rare };
}

/**
 * A settled tier read from a snapshot's line: a run is built only when asked for. Pruning
 * cuts it to the runs charged since a horizon by reading the `chargedAt` column alone.
 */
class ColumnTier implements SettledRuns {
  readonly size: number;

  private constructor(
    private readonly parsed: ParsedColumns,
    /** Runs charged before this are not in the tier (-Infinity: all are). */
    private readonly horizon: number,
    size: number,
  ) {
    this.size = size;
  }

  static read(line: string): ColumnTier {
    const parsed = parseColumns(line);
    const tier = new ColumnTier(parsed, -Infinity, parsed.index.size);
    encodedTiers.set(tier, line);
    return tier;
  }

  has(runId: string) {
    return this.at(runId) !== undefined;
  }

  get(runId: string) {
    const i = this.at(runId);
    return i === undefined ? undefined : this.run(i);
  }

  *values() {
    const { chargedAt } = this.parsed.columns;
    for (let i = 0; i < chargedAt.length; i++) if (chargedAt[i] >= this.horizon) yield this.run(i);
  }

  since(horizon: number): SettledRuns {
    if (horizon <= this.horizon) return this;
    let size = 0;
    for (const charged of this.parsed.columns.chargedAt) if (charged >= horizon) size += 1;
    if (size === this.size) return this;
    return size === 0 ? RunBook.empty().settled : new ColumnTier(this.parsed, horizon, size);
  }

  private at(runId: string): number | undefined {
    const i = this.parsed.index.get(runId);
    return i !== undefined && this.parsed.columns.chargedAt[i] >= this.horizon ? i : undefined;
  }

  private run(i: number): CharmRun {
    const { columns, refundableAt, rare } = this.parsed;
    const { names, ids, charms, users, amounts, chargedAt, availableAfter } = columns;
    const flat = columns.refundable;
    const refundable: Allocation[] = [];
    const at = refundableAt[i];
    for (let j = 0; j < flat[at]; j++) {
      refundable.push({ grantId: names[flat[at + 1 + 2 * j]], amount: flat[at + 2 + 2 * j] });
    }
    const run: CharmRun = {
      runId: ids[i],
      charmId: names[charms[i]],
      userId: names[users[i]],
      amount: amounts[i],
      chargedAt: chargedAt[i],
      refundable,
      refunded: 0,
      // Most runs were never refunded: they share one empty map.
      refunds: NO_REFUNDS,
      availableAfter: availableAfter[i],
    };
    const fields = rare.get(i);
    return fields ? withRareFields(run, fields) : run;
  }
}

function withRareFields(run: CharmRun, [, refunded, refunds, reservationId]: RareFields) {
  return {
    ...run,
    refunded,
    refunds: refunds.length === 0 ? NO_REFUNDS : ImmutableMap(refunds),
    ...(reservationId === null ? {} : { reservationId }),
  };
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
  const settled = yield* encodeTier(state.runs.settled);
  const recent: string[] = [];
  for (const run of state.runs.recent.values()) {
    if (recent.push(encodedRun(run)) % RUNS_PER_SLICE === 0) yield;
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
  return `${rest}\n${settled}\n[${recent.join(',')}]`;
}

export function deserializeOrganization(text: string): OrganizationState {
  const first = text.indexOf('\n');
  const second = text.indexOf('\n', first + 1);
  const raw = JSON.parse(text.slice(0, first));
  const recent = JSON.parse(text.slice(second + 1)) as RunRow[];
  return {
    ...raw,
    members: ImmutableMap(raw.members),
    grants: ImmutableMap(raw.grants),
    runs: RunBook.restore(ColumnTier.read(text.slice(first + 1, second)), recent.map(runOfRow)),
    reservations: ImmutableMap(raw.reservations),
    transfersOut: ImmutableMap(raw.transfersOut),
    transfersIn: ImmutableMap(raw.transfersIn),
  };
}

function runOfRow(row: RunRow): CharmRun {
  const [runId, charmId, userId, amount, chargedAt, availableAfter, flat, ...rare] = row;
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
    refunds: NO_REFUNDS,
    availableAfter,
  };
  if (rare.length === 0) return run;
  return withRareFields(run, [0, ...(rare as [number, [string, number][], string | null])]);
}

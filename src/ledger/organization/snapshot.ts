import { randomUUID } from 'node:crypto';
import { Map as ImmutableMap } from 'immutable';
import type { Allocation } from './events';
import {
  LayeredTier,
  MergingTier,
  RunBook,
  settleFoldedTiersWith,
  sizeClassOf,
  tiersOf,
  weightOf,
  type SettledRuns,
} from './run-book';
import { RunIdFilter } from './run-id-filter';
import type { CharmRun, OrganizationState } from './state';

/**
 * Bump when the state's shape changes: older snapshots are then ignored and rebuilt, unless
 * listed in ORGANIZATION_SNAPSHOT_VERSIONS_READ.
 */
export const ORGANIZATION_SNAPSHOT_VERSION = 8;
/** Version 7 merged a size class's tiers into one part, where 8 groups them (GroupTier). */
const VERSION_7 = 7;
/** Version 6 held its one settled tier inline, as lines 2-5. */
const VERSION_6 = 6;
/** Version 5 held the settled runs' columns on one line (see `tierFromVersion5`). */
const VERSION_5 = 5;
/** Older snapshots still read. */
export const ORGANIZATION_SNAPSHOT_VERSIONS_READ = [VERSION_7, VERSION_6, VERSION_5];

/** Runs encoded between two places where a snapshot taken in slices may pause. */
const RUNS_PER_SLICE = 500;

const NO_REFUNDS = ImmutableMap<string, number>();

/*
 * A snapshot is two lines (JSON never holds a raw newline) and a part per settled tier:
 * 1. the state without its runs, and the keys of its settled tiers (`runTiers`), newest first;
 * 2. the recent runs, a row each (each run encoded once, see `encodedRun`); they replace
 *    settled runs of the same id.
 * Each settled tier of the RunBook is a part of its own, written by the first snapshot that
 * holds it and shared by the later ones (see SnapshotPart): a snapshot writes the recent runs
 * and the tiers settled since the last one, not every run. A part is five lines, column by
 * column, and a restored tier reads each only when first asked:
 * 1. its size and when its first and last runs were charged (`TierSummary`);
 * 2. the run ids, to know whether a run is there;
 * 3. when each was charged, to prune;
 * 4. the rest of the columns, to build a run;
 * 5. a Bloom filter of the run ids (RunIdFilter), so that a new run id is known to be absent
 *    without reading line 2.
 * Tiers of one size class stacked four high become a group (see MergingTier, GroupTier): its
 * part is two lines, its size, when its first and last runs were charged, how many hashes its
 * filter takes and its tiers' keys (`GroupSummary`), then a Bloom filter of all their run ids.
 * Its tiers keep their parts, which a snapshot lists too: a run is written once, not again at
 * each merge. Only the largest tiers are merged into one part (see MERGED_FROM_CLASS), so that
 * the parts a snapshot lists stay bounded.
 * A week of runs is most of a busy organization's snapshot: this keeps both taking a snapshot
 * and loading one from growing with it, and a tier the first event prunes is never read.
 */

/** A settled tier's text, and the key a snapshot knows it by. */
export interface SnapshotPart {
  key: string;
  text: string;
}

/** A snapshot's own text, and the parts it refers to. */
export interface OrganizationSnapshot {
  state: string;
  parts: SnapshotPart[];
}

interface ChargedSpan {
  /** Null in an empty tier. */
  firstCharged: number | null;
  lastCharged: number | null;
}

interface TierSummary extends ChargedSpan {
  size: number;
  /** Hashes a run in the part's run id filter (line 5); absent in a tier without one. */
  filterHashes?: number;
}

/**
 * Line 1 of a group's part (two lines: this, and its filter as JSON text). `size` is absent
 * when it was not counted (a group cut by pruning).
 */
interface GroupSummary extends ChargedSpan {
  size?: number;
  filterHashes: number;
  /** The keys of its tiers' parts, newest first. */
  tiers: string[];
}

/**
 * The columns of line 5: arrays of numbers and repeated names parse several times faster
 * than as many objects. Names (charms, users, grants) are numbers into `names`. Refunds and
 * reservations are rare, so they are listed apart, by the run's index.
 */
interface RunColumns {
  names: string[];
  charms: number[];
  users: number[];
  amounts: number[];
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

/** Each settled tier's part, once written or read: tiers never change. */
const encodedTiers = new WeakMap<SettledRuns, SnapshotPart>();
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

/** Array elements turned into JSON between two pauses of a snapshot taken in slices. */
const ELEMENTS_PER_SLICE = 4 * RUNS_PER_SLICE;

/**
 * `JSON.stringify(value)` for arrays and objects of arrays, a slice of elements at a time: a
 * new settled tier's columns in one call held the event loop for 40 ms at 30,000 runs.
 */
function* jsonInSlices(value: unknown): Generator<void, string, void> {
  if (Array.isArray(value)) {
    const parts: string[] = [];
    for (let start = 0; start < value.length; start += ELEMENTS_PER_SLICE) {
      parts.push(JSON.stringify(value.slice(start, start + ELEMENTS_PER_SLICE)).slice(1, -1));
      yield;
    }
    return `[${parts.join(',')}]`;
  }
  if (typeof value !== 'object' || value === null) return JSON.stringify(value);
  const fields: string[] = [];
  for (const [key, field] of Object.entries(value)) {
    if (field !== undefined) fields.push(`${JSON.stringify(key)}:${yield* jsonInSlices(field)}`);
  }
  return `{${fields.join(',')}}`;
}

/** A tier's columns, as encoded and as its part's text. */
interface EncodedTier {
  summary: TierSummary;
  ids: string[];
  chargedAt: number[];
  columns: RunColumns;
  filter: RunIdFilter;
  text: string;
}

/** Columns being written, a run at a time. */
class ColumnsBuilder {
  readonly ids: string[] = [];
  readonly chargedAt: number[] = [];
  readonly columns: RunColumns = {
    names: [],
    charms: [],
    users: [],
    amounts: [],
    availableAfter: [],
    refundable: [],
    rare: [],
  };
  readonly summary: TierSummary = { size: 0, firstCharged: null, lastCharged: null };
  private readonly numbers = new Map<string, number>();

  name(text: string): number {
    let index = this.numbers.get(text);
    if (index === undefined) {
      index = this.columns.names.push(text) - 1;
      this.numbers.set(text, index);
    }
    return index;
  }

  add(run: CharmRun): void {
    const { columns } = this;
    this.start(run.runId, run.chargedAt);
    columns.charms.push(this.name(run.charmId));
    columns.users.push(this.name(run.userId));
    columns.amounts.push(run.amount);
    columns.availableAfter.push(run.availableAfter);
    columns.refundable.push(run.refundable.length);
    for (const { grantId, amount } of run.refundable) {
      columns.refundable.push(this.name(grantId), amount);
    }
    if (isRare(run)) {
      columns.rare.push([
        this.summary.size,
        run.refunded,
        [...run.refunds],
        run.reservationId ?? null,
      ]);
    }
    this.summary.size += 1;
  }

  /**
   * Run `i` of `lines`, copied column by column: a merge, or a tier that pruning cut, encodes
   * runs again from tiers already in columns, without building each run (which was most of
   * a merge's time).
   * `names` maps the source's name numbers to ours, filled as they are first met.
   */
  copy(lines: TierLines, i: number, names: Int32Array): void {
    const { columns: source, refundableAt, rare } = lines.columns();
    const { columns } = this;
    const ours = (index: number) => {
      if (names[index] < 0) names[index] = this.name(source.names[index]);
      return names[index];
    };
    this.start(lines.runIds()[i], lines.chargedAt()[i]);
    columns.charms.push(ours(source.charms[i]));
    columns.users.push(ours(source.users[i]));
    columns.amounts.push(source.amounts[i]);
    columns.availableAfter.push(source.availableAfter[i]);
    const flat = source.refundable;
    const at = refundableAt[i];
    columns.refundable.push(flat[at]);
    for (let j = 0; j < flat[at]; j++) {
      columns.refundable.push(ours(flat[at + 1 + 2 * j]), flat[at + 2 + 2 * j]);
    }
    const fields = rare.get(i);
    if (fields) columns.rare.push([this.summary.size, fields[1], fields[2], fields[3]]);
    this.summary.size += 1;
  }

  private start(runId: string, chargedAt: number) {
    const { summary } = this;
    this.ids.push(runId);
    this.chargedAt.push(chargedAt);
    summary.firstCharged = Math.min(summary.firstCharged ?? chargedAt, chargedAt);
    summary.lastCharged = Math.max(summary.lastCharged ?? chargedAt, chargedAt);
  }
}

/**
 * A tier's runs in columns, the newest copy of each (a tier made of several is merged), from
 * the columns of those already in columns, the horizon's cut applied.
 */
function* encodeTier(tier: SettledRuns): Generator<void, EncodedTier, void> {
  const builder = new ColumnsBuilder();
  yield* copyRuns(tier, builder, []);
  const { ids, chargedAt, columns, summary } = builder;
  const filter = RunIdFilter.sizedFor(ids.length);
  for (let i = 0; i < ids.length; i++) {
    filter.add(ids[i]);
    if (i % ELEMENTS_PER_SLICE === ELEMENTS_PER_SLICE - 1) yield;
  }
  summary.filterHashes = RunIdFilter.HASHES;
  const lines: string[] = [];
  for (const line of [summary, ids, chargedAt, columns, filter.toText()]) {
    lines.push(yield* jsonInSlices(line));
  }
  return { summary, ids, chargedAt, columns, filter, text: lines.join('\n') };
}

/**
 * The runs of `tier` into `builder`, but for those a tier in `newer` holds (the newer copy
 * is there). A tier made of others is walked newest first, each asking only the tiers beside
 * it that are newer, and those above it: a run of a merge of groups asks a few filters, not
 * every tier of the groups.
 */
function* copyRuns(
  tier: SettledRuns,
  builder: ColumnsBuilder,
  newer: readonly SettledRuns[],
): Generator<void, void, void> {
  const made =
    tier instanceof LayeredTier
      ? [tier.upper, tier.lower]
      : tier instanceof MergingTier
        ? [tier.merged ?? tier.layers!]
        : tier instanceof GroupTier
          ? tier.pieces
          : undefined;
  if (made !== undefined) {
    for (let k = 0; k < made.length; k++) {
      yield* copyRuns(made[k], builder, k === 0 ? newer : [...newer, ...made.slice(0, k)]);
    }
    return;
  }
  const replaced = (runId: string) => newer.some((above) => above.has(runId));
  const columns = tier instanceof ColumnTier ? tier : columnsOf.get(tier);
  if (columns !== undefined) {
    yield* columns.copyInto(builder, replaced);
    return;
  }
  for (const run of tier.values()) {
    if (replaced(run.runId)) continue;
    builder.add(run);
    if (builder.summary.size % RUNS_PER_SLICE === 0) yield;
  }
}

/**
 * The part of a tier of one piece, encoded the first time a snapshot holds it. A tier of
 * runs in maps is then also kept in columns (`columnsOf`), which a group takes in its place.
 */
function* leafPart(tier: SettledRuns): Generator<void, SnapshotPart, void> {
  let part = encodedTiers.get(tier);
  if (part === undefined) {
    const encoded = yield* encodeTier(tier);
    part = { key: randomUUID(), text: encoded.text };
    encodedTiers.set(tier, part);
    columnsOf.set(tier, ColumnTier.encoded(encoded, part));
  }
  return part;
}

/** A tier of runs in maps, in columns too once a snapshot encoded it (see `leafPart`). */
const columnsOf = new WeakMap<SettledRuns, ColumnTier>();

/**
 * A fold's runs go into columns at once, and its part's text is ready for the next snapshot.
 * Kept in maps until a snapshot encoded them, and until their group was made, the runs of a
 * busy organization outlived two scavenges and died in the old generation: bench/domain.ts,
 * 200,000 charges, 7 rounds alternated, 5.7-6.1 µs a charge in all in six (7.8 in one)
 * against 8.0-8.5 in maps.
 * A fold now takes 0.3 ms at the median, once every 512 charges (0.06 ms for the map alone;
 * measured alone, 300 folds); the next snapshot no longer encodes it, a slice at a time.
 */
settleFoldedTiersWith((tier) => columnTierOf(inOneGo(encodeTier(tier))));

/** A tier of columns just encoded, with its part under a new key. */
function columnTierOf(encoded: EncodedTier): ColumnTier {
  return ColumnTier.encoded(encoded, { key: randomUUID(), text: encoded.text });
}

/** What work done in slices returns, done without pausing. */
function inOneGo<Result>(slices: Generator<void, Result, void>): Result {
  for (;;) {
    const step = slices.next();
    if (step.done) return step.value;
  }
}

/**
 * Tiers of this size class and above (4^5 folds, 524,288 runs) are merged into one rather than
 * grouped: a run is written again at each merge, but a snapshot lists at most three tiers of
 * each smaller class, each a group of at most (4^5 - 1) / 3 parts (1,359 parts at most in
 * all, beside three merged tiers a class above). Groups alone made a part per fold however
 * many runs were kept, and every snapshot lists them all: EventStoreDB keeps that list in
 * the snapshot's head, under its 1 MiB limit, and each SQL save reads it.
 */
const MERGED_FROM_CLASS = 5;

/**
 * `tier` as a group or a tier in columns: tiers still merging are grouped here (merged, from
 * MERGED_FROM_CLASS), a slice at a time, and take their place in the state; a tier of runs in
 * maps is encoded.
 */
function* settledPiece(tier: SettledRuns): Generator<void, SettledRuns, void> {
  if (tier instanceof MergingTier) {
    if (tier.merged === undefined) {
      tier.settle(
        sizeClassOf(tier) >= MERGED_FROM_CLASS
          ? yield* mergedOf(tier.layers!)
          : yield* groupOf(tier.layers!),
      );
    }
    return yield* settledPiece(tier.merged!);
  }
  if (tier instanceof GroupTier) return tier;
  yield* leafPart(tier);
  return columnsOf.get(tier) ?? tier;
}

/** The tiers of `layers` merged into one tier in columns, its index built a slice at a time. */
function* mergedOf(layers: SettledRuns): Generator<void, ColumnTier, void> {
  const merged = columnTierOf(yield* encodeTier(layers));
  yield* merged.indexInSlices();
  return merged;
}

/**
 * The tiers of `layers` as one group: each tier keeps its own part, and the group adds a
 * filter of all their run ids. Merging the tiers' columns into one tier instead wrote every
 * run again at each merge (about 3.4 times a run at 200,000 runs), and was most of a busy
 * organization's snapshots: bench/domain.ts, 200,000 charges, 3 rounds alternated, snapshots
 * took 5.5-5.7 µs a charge against 9.6-10.6 with merges (decide and evolve the same).
 */
function* groupOf(layers: SettledRuns): Generator<void, GroupTier, void> {
  const pieces: SettledRuns[] = [];
  for (const tier of tiersOf(layers)) pieces.push(yield* settledPiece(tier));
  let weight = 0;
  for (const piece of pieces) weight += weightOf(piece);
  const filter = RunIdFilter.sizedFor(weight);
  let added = 0;
  for (const ids of idColumnsOf(pieces)) {
    for (let i = 0; i < ids.length; i++) {
      filter.add(ids[i]);
      if (++added % ELEMENTS_PER_SLICE === 0) yield;
    }
  }
  // Its size (runs held twice counted once) is counted only if asked for: nothing that
  // charges does.
  return new GroupTier(pieces, () => filter, chargedSpan(pieces));
}

/**
 * The run id columns of the tiers in columns that `tiers` are made of: a run held twice is
 * there twice, and a run a horizon cut off is still there (a filter may say yes to more).
 */
function* idColumnsOf(tiers: readonly SettledRuns[]): Generator<readonly string[], void, void> {
  for (const tier of tiers) {
    if (tier instanceof GroupTier) yield* idColumnsOf(tier.pieces);
    else if (tier instanceof ColumnTier) yield tier.idColumn();
    else yield [...tier.runIds()];
  }
}

/** Whether a tier above `pieces[k]` holds `runId`. */
function heldAbove(pieces: readonly SettledRuns[], k: number, runId: string): boolean {
  for (let j = 0; j < k; j++) if (pieces[j].has(runId)) return true;
  return false;
}

/** When the first and last runs of `tiers` (groups and tiers in columns) were charged. */
function chargedSpan(tiers: readonly SettledRuns[]): ChargedSpan {
  const span: ChargedSpan = { firstCharged: null, lastCharged: null };
  for (const tier of tiers) {
    const { firstCharged, lastCharged } = (tier as GroupTier | ColumnTier).span;
    if (firstCharged === null || lastCharged === null) continue;
    span.firstCharged = Math.min(span.firstCharged ?? firstCharged, firstCharged);
    span.lastCharged = Math.max(span.lastCharged ?? lastCharged, lastCharged);
  }
  return span;
}

/**
 * The part of every tier `tier` is made of into `into`, the tier's own last: a group lists
 * its tiers' keys, and the store keeps the parts a snapshot lists. Its key.
 */
function* partsOf(tier: SettledRuns, into: SnapshotPart[]): Generator<void, string, void> {
  const piece = yield* settledPiece(tier);
  if (!(piece instanceof GroupTier)) {
    const part = yield* leafPart(piece);
    into.push(part);
    return part.key;
  }
  const keys: string[] = [];
  for (const each of piece.pieces) keys.push(yield* partsOf(each, into));
  let part = encodedTiers.get(piece);
  if (part === undefined) {
    part = { key: randomUUID(), text: piece.text(keys) };
    encodedTiers.set(piece, part);
  }
  into.push(part);
  return part.key;
}

/** Lines 2-5 of a part, each parsed the first time it is needed. */
class TierLines {
  private ids?: string[];
  private positions?: Map<string, number>;
  private charged?: number[];
  private rest?: { columns: RunColumns; refundableAt: number[]; rare: Map<number, RareFields> };
  /** Null in a tier written without one. */
  private filter?: RunIdFilter | null;

  constructor(
    private readonly idsLine: string,
    private readonly chargedLine: string,
    private readonly restLine: string,
    private readonly filterLine?: string,
    private readonly filterHashes?: number,
  ) {}

  /** Lines already parsed: a tier's columns just encoded. */
  static parsed({ ids, chargedAt, columns, filter }: EncodedTier): TierLines {
    const lines = new TierLines('', '', '');
    lines.ids = ids;
    lines.charged = chargedAt;
    lines.rest = withIndexes(columns);
    lines.filter = filter;
    return lines;
  }

  /** False only when `runId` is certainly not in the tier. */
  mayHold(runId: string): boolean {
    if (this.filter === undefined) {
      this.filter =
        this.filterLine === undefined || this.filterHashes === undefined
          ? null
          : RunIdFilter.read(JSON.parse(this.filterLine) as string, this.filterHashes);
    }
    return this.filter === null || this.filter.mayHold(runId);
  }

  /** The run ids, in column order. */
  runIds(): string[] {
    this.ids ??= JSON.parse(this.idsLine) as string[];
    return this.ids;
  }

  /** Each run id's index in the columns. */
  index(): Map<string, number> {
    if (this.positions === undefined) for (const _ of this.indexInSlices());
    return this.positions!;
  }

  /** As `index`, pausing every few thousand runs. */
  *indexInSlices(): Generator<void, void, void> {
    if (this.positions !== undefined) return;
    const ids = this.runIds();
    const positions = new Map<string, number>();
    for (let i = 0; i < ids.length; i++) {
      positions.set(ids[i], i);
      if (i % ELEMENTS_PER_SLICE === ELEMENTS_PER_SLICE - 1) yield;
    }
    this.positions = positions;
  }

  chargedAt(): number[] {
    this.charged ??= JSON.parse(this.chargedLine) as number[];
    return this.charged;
  }

  columns() {
    this.rest ??= withIndexes(JSON.parse(this.restLine) as RunColumns);
    return this.rest;
  }

  /** The run at index `i`, built from its columns. */
  run(i: number): CharmRun {
    const { columns, refundableAt, rare } = this.columns();
    const { names, charms, users, amounts, availableAfter } = columns;
    const flat = columns.refundable;
    const refundable: Allocation[] = [];
    const at = refundableAt[i];
    for (let j = 0; j < flat[at]; j++) {
      refundable.push({ grantId: names[flat[at + 1 + 2 * j]], amount: flat[at + 2 + 2 * j] });
    }
    const run: CharmRun = {
      runId: this.runIds()[i],
      charmId: names[charms[i]],
      userId: names[users[i]],
      amount: amounts[i],
      chargedAt: this.chargedAt()[i],
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

/** Line 4 of a part, with where each run's refundable allocations start and its rare fields. */
function withIndexes(columns: RunColumns) {
  const refundableAt: number[] = [];
  const flat = columns.refundable;
  for (let at = 0; at < flat.length; at += 1 + 2 * flat[at]) refundableAt.push(at);
  const rare = new Map<number, RareFields>();
  for (const fields of columns.rare) rare.set(fields[0], fields);
  return { columns, refundableAt, rare };
}

/**
 * A settled tier read from a snapshot: it reads its lines only when asked (see TierLines),
 * and pruning cuts it to the runs charged since a horizon from the `chargedAt` line alone.
 */
class ColumnTier implements SettledRuns {
  private constructor(
    private readonly lines: TierLines,
    private readonly summary: TierSummary,
    /** Runs charged before this are not in the tier (-Infinity: all are). */
    private readonly horizon: number,
    readonly size: number,
  ) {}

  /** The tier of a part. */
  static read(part: SnapshotPart): ColumnTier {
    const [summary, ids, charged, rest, filter] = part.text.split('\n');
    const read = JSON.parse(summary) as TierSummary;
    const lines = new TierLines(ids, charged, rest, filter, read.filterHashes);
    const tier = new ColumnTier(lines, read, -Infinity, read.size);
    encodedTiers.set(tier, part);
    return tier;
  }

  /** The tier of columns just encoded as `part`. */
  static encoded(encoded: EncodedTier, part: SnapshotPart): ColumnTier {
    const { summary } = encoded;
    const tier = new ColumnTier(TierLines.parsed(encoded), summary, -Infinity, summary.size);
    encodedTiers.set(tier, part);
    return tier;
  }

  /** Its run ids, those a horizon cut off included. */
  idColumn(): readonly string[] {
    return this.size === 0 ? [] : this.lines.runIds();
  }

  /** When its first and last runs were charged (before any horizon's cut). */
  get span(): ChargedSpan {
    return this.summary;
  }

  indexInSlices() {
    return this.lines.indexInSlices();
  }

  /** Its runs that `replaced` does not name, column by column into `builder`. */
  *copyInto(
    builder: ColumnsBuilder,
    replaced: (runId: string) => boolean,
  ): Generator<void, void, void> {
    if (this.size === 0) return;
    const ids = this.lines.runIds();
    const chargedAt = this.lines.chargedAt();
    const names = new Int32Array(this.lines.columns().columns.names.length).fill(-1);
    for (let i = 0; i < ids.length; i++) {
      if (chargedAt[i] < this.horizon || replaced(ids[i])) continue;
      builder.copy(this.lines, i, names);
      if (builder.summary.size % RUNS_PER_SLICE === 0) yield;
    }
  }

  has(runId: string) {
    return this.at(runId) !== undefined;
  }

  get(runId: string) {
    const i = this.at(runId);
    return i === undefined ? undefined : this.lines.run(i);
  }

  *values() {
    if (this.size === 0) return;
    const chargedAt = this.lines.chargedAt();
    for (let i = 0; i < chargedAt.length; i++) {
      if (chargedAt[i] >= this.horizon) yield this.lines.run(i);
    }
  }

  *runIds() {
    if (this.size === 0) return;
    const ids = this.lines.runIds();
    if (this.horizon === -Infinity) return yield* ids;
    const chargedAt = this.lines.chargedAt();
    for (let i = 0; i < ids.length; i++) if (chargedAt[i] >= this.horizon) yield ids[i];
  }

  since(horizon: number): SettledRuns {
    const { firstCharged, lastCharged } = this.summary;
    if (this.size === 0 || horizon <= this.horizon || horizon <= firstCharged!) return this;
    if (horizon > lastCharged!) return RunBook.empty().settled;
    let size = 0;
    for (const charged of this.lines.chargedAt()) if (charged >= horizon) size += 1;
    if (size === this.size) return this;
    return size === 0
      ? RunBook.empty().settled
      : new ColumnTier(this.lines, this.summary, horizon, size);
  }

  private at(runId: string): number | undefined {
    if (this.size === 0 || !this.lines.mayHold(runId)) return undefined;
    const i = this.lines.index().get(runId);
    if (i === undefined || this.horizon === -Infinity) return i;
    return this.lines.chargedAt()[i] >= this.horizon ? i : undefined;
  }
}

/**
 * The recent runs of a snapshot (its last line), read the first time one is asked for and
 * built one at a time: thousands of them restored into a persistent map were most of a cold
 * load. They replace settled runs of the same id (see LayeredTier).
 */
class RowTier implements SettledRuns {
  private parsed?: { rows: RunRow[]; index: Map<string, number> };

  constructor(
    /** The rows' line as read, or rows kept by a prune. A later row replaces an earlier one. */
    readonly source: string | RunRow[],
  ) {}

  private read() {
    if (this.parsed === undefined) {
      const rows =
        typeof this.source === 'string' ? (JSON.parse(this.source) as RunRow[]) : this.source;
      const index = new Map<string, number>();
      for (let i = 0; i < rows.length; i++) index.set(rows[i][0], i);
      this.parsed = { rows, index };
    }
    return this.parsed;
  }

  get size() {
    return this.read().index.size;
  }
  has(runId: string) {
    return this.read().index.has(runId);
  }
  get(runId: string) {
    const { rows, index } = this.read();
    const i = index.get(runId);
    return i === undefined ? undefined : runOfRow(rows[i]);
  }
  *values() {
    const { rows, index } = this.read();
    for (let i = 0; i < rows.length; i++) if (index.get(rows[i][0]) === i) yield runOfRow(rows[i]);
  }
  runIds() {
    return this.read().index.keys();
  }
  since(horizon: number): SettledRuns {
    const { rows, index } = this.read();
    const kept = rows.filter((row, i) => row[4] >= horizon && index.get(row[0]) === i);
    return kept.length === rows.length ? this : new RowTier(kept);
  }
}

/**
 * Settled tiers of one size class taken as one (see MergingTier), each kept as it is with its
 * own part: the group adds a filter of all their run ids, so that a run id absent from them
 * all costs one look, as in a merged tier. A run is in the first (newest) tier that holds it.
 */
class GroupTier implements SettledRuns {
  private filter?: RunIdFilter;

  constructor(
    /** Groups and tiers in columns, newest first. */
    readonly pieces: readonly SettledRuns[],
    /** Its filter, made or read the first time it is asked for. */
    private readonly filterOf: () => RunIdFilter,
    readonly span: ChargedSpan,
    /** Runs, counted once: counted when first asked if not known (see `groupOf`). */
    private counted?: number,
  ) {}

  /** The group of a part, its tiers read from `parts` as well. */
  static read(key: string, text: string, parts: ReadonlyMap<string, string>): GroupTier {
    const newline = text.indexOf('\n');
    const summary = JSON.parse(text.slice(0, newline)) as GroupSummary;
    const pieces = summary.tiers.map((piece) => tierOfPart(piece, parts));
    const filterOf = () =>
      RunIdFilter.read(JSON.parse(text.slice(newline + 1)) as string, summary.filterHashes);
    const group = new GroupTier(pieces, filterOf, summary, summary.size);
    encodedTiers.set(group, { key, text });
    return group;
  }

  /** Its part's text, its tiers' parts under `keys`. */
  text(keys: string[]): string {
    // The filter's own hashes: one read from an older part (and kept by pruning) may have
    // been made with other than RunIdFilter.HASHES.
    const filter = this.filterNow();
    const summary: GroupSummary = {
      size: this.counted,
      firstCharged: this.span.firstCharged,
      lastCharged: this.span.lastCharged,
      filterHashes: filter.hashes,
      tiers: keys,
    };
    return `${JSON.stringify(summary)}\n${JSON.stringify(filter.toText())}`;
  }

  get size(): number {
    if (this.counted === undefined) {
      let counted = 0;
      for (const _ of this.runIds()) counted += 1;
      this.counted = counted;
    }
    return this.counted;
  }

  get weight(): number {
    let weight = 0;
    for (const piece of this.pieces) weight += weightOf(piece);
    return weight;
  }

  has(runId: string): boolean {
    if (!this.mayHold(runId)) return false;
    for (const piece of this.pieces) if (piece.has(runId)) return true;
    return false;
  }

  get(runId: string): CharmRun | undefined {
    if (!this.mayHold(runId)) return undefined;
    for (const piece of this.pieces) {
      const run = piece.get(runId);
      if (run !== undefined) return run;
    }
    return undefined;
  }

  *values(): IterableIterator<CharmRun> {
    for (let k = 0; k < this.pieces.length; k++) {
      for (const run of this.pieces[k].values()) {
        if (k === 0 || !heldAbove(this.pieces, k, run.runId)) yield run;
      }
    }
  }

  *runIds(): IterableIterator<string> {
    for (let k = 0; k < this.pieces.length; k++) {
      for (const runId of this.pieces[k].runIds()) {
        if (k === 0 || !heldAbove(this.pieces, k, runId)) yield runId;
      }
    }
  }

  since(horizon: number): SettledRuns {
    const { firstCharged, lastCharged } = this.span;
    if (firstCharged === null || horizon <= firstCharged) return this;
    const empty = RunBook.empty().settled;
    if (horizon > lastCharged!) return empty;
    const kept = this.pieces
      .map((piece) => piece.since(horizon))
      .filter((piece) => piece !== empty && weightOf(piece) > 0);
    if (kept.length === this.pieces.length && kept.every((piece, k) => piece === this.pieces[k])) {
      return this;
    }
    if (kept.length <= 1) return kept[0] ?? empty;
    // Its filter still tells absent ids: the runs dropped are only more it may say yes to.
    return new GroupTier(kept, () => this.filterNow(), chargedSpan(kept));
  }

  private mayHold(runId: string): boolean {
    return this.filterNow().mayHold(runId);
  }

  private filterNow(): RunIdFilter {
    this.filter ??= this.filterOf();
    return this.filter;
  }
}

/** The settled tier of part `key`: a group, or a tier in columns. */
function tierOfPart(key: string, parts: ReadonlyMap<string, string>): SettledRuns {
  const text = parts.get(key);
  if (text === undefined) throw new Error(`snapshot part ${key} is missing`);
  // A group's part is two lines; a tier in columns has four or five.
  const newline = text.indexOf('\n');
  return newline >= 0 && text.indexOf('\n', newline + 1) < 0
    ? GroupTier.read(key, text, parts)
    : ColumnTier.read({ key, text });
}

function withRareFields(run: CharmRun, [, refunded, refunds, reservationId]: RareFields) {
  return {
    ...run,
    refunded,
    refunds: refunds.length === 0 ? NO_REFUNDS : ImmutableMap(refunds),
    ...(reservationId === null ? {} : { reservationId }),
  };
}

/** A snapshot at once (tests and tools). */
export function serializeOrganization(state: OrganizationState): OrganizationSnapshot {
  return inOneGo(serializeOrganizationInSlices(state));
}

/**
 * A snapshot taken a slice of runs at a time: the caller may pause where it yields (the state
 * is persistent, so it does not change meanwhile) and a large organization's snapshot does
 * not hold everything else up.
 */
export function* serializeOrganizationInSlices(
  state: OrganizationState,
): Generator<void, OrganizationSnapshot, void> {
  // Recent rows restored from a snapshot go back as they came, then the runs recorded since
  // (which replace them).
  let settled = state.runs.settled;
  const recent: string[] = [];
  const top = settled instanceof LayeredTier ? settled.upper : settled;
  if (top instanceof RowTier && typeof top.source === 'string') {
    if (top.source !== '[]') recent.push(top.source.slice(1, -1));
    settled = settled instanceof LayeredTier ? settled.lower : RunBook.empty().settled;
  }
  const parts: SnapshotPart[] = [];
  const runTiers: string[] = [];
  for (const tier of tiersOf(settled)) runTiers.push(yield* partsOf(tier, parts));
  for (const run of state.runs.recent.values()) {
    if (recent.push(encodedRun(run)) % RUNS_PER_SLICE === 0) yield;
  }
  const head = JSON.stringify({
    ...state,
    runs: undefined,
    runTiers,
    members: [...state.members],
    grants: [...state.grants],
    reservations: [...state.reservations],
    transfersOut: [...state.transfersOut],
    transfersIn: [...state.transfersIn],
  });
  return { state: `${head}\n[${recent.join(',')}]`, parts };
}

/**
 * The state of a snapshot, given its parts' texts by key. Versions 5 and 6 held their one
 * settled tier inline; the next snapshot writes it as a part.
 */
export function deserializeOrganization(
  text: string,
  schemaVersion: number = ORGANIZATION_SNAPSHOT_VERSION,
  parts: ReadonlyMap<string, string> = new Map(),
): OrganizationState {
  const first = text.indexOf('\n');
  const last = text.lastIndexOf('\n');
  const raw = JSON.parse(text.slice(0, first));
  const runTiers: string[] = raw.runTiers ?? [];
  delete raw.runTiers;
  const recent = text.slice(last + 1);
  let settled = RunBook.empty().settled;
  if (schemaVersion === ORGANIZATION_SNAPSHOT_VERSION || schemaVersion === VERSION_7) {
    // Stacked again as they were, grouping nothing: they were grouped as the policy wants.
    // Version 7 wrote no groups (it merged tiers into one).
    runTiers.reverse().forEach((key, i) => {
      const tier = tierOfPart(key, parts);
      settled = i === 0 ? tier : new LayeredTier(tier, settled);
    });
  } else {
    const inline = text.slice(first + 1, last);
    settled = ColumnTier.read({
      key: randomUUID(),
      text: schemaVersion === VERSION_5 ? tierFromVersion5(inline) : inline,
    });
  }
  return {
    ...raw,
    members: ImmutableMap(raw.members),
    grants: ImmutableMap(raw.grants),
    runs: RunBook.restore(
      recent === '[]' ? settled : new LayeredTier(new RowTier(recent), settled),
      [],
    ),
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

/**
 * Version 5's settled runs (one line: every column, ids and charge times included) as a
 * part's lines. Read once per load; the next snapshot writes the current version.
 */
function tierFromVersion5(line: string): string {
  const { ids, chargedAt, ...columns } = JSON.parse(line) as RunColumns & {
    ids: string[];
    chargedAt: number[];
  };
  const summary: TierSummary = { size: ids.length, firstCharged: null, lastCharged: null };
  for (const charged of chargedAt) {
    summary.firstCharged = Math.min(summary.firstCharged ?? charged, charged);
    summary.lastCharged = Math.max(summary.lastCharged ?? charged, charged);
  }
  return [summary, ids, chargedAt, columns].map((part) => JSON.stringify(part)).join('\n');
}

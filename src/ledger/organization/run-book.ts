import { RecentRuns } from './recent-runs';
import type { CharmRun } from './state';

/**
 * Runs recorded in one go and never changed afterwards: the lower tier of a RunBook. A tier
 * restored from a snapshot may build its runs only when asked (see snapshot.ts).
 */
export interface SettledRuns {
  readonly size: number;
  get(runId: string): CharmRun | undefined;
  has(runId: string): boolean;
  values(): IterableIterator<CharmRun>;
  /** The ids of `values()`, without building the runs. */
  runIds(): Iterable<string>;
  /**
   * The runs charged at or after `horizon`, as a tier of their own. Pruning asks this of a
   * tier it mostly drops, daily: a tier answers from what it holds, without building runs.
   */
  since(horizon: number): SettledRuns;
  /**
   * Its runs counted with a run held twice counted twice, where `size` is costly to count (a
   * group of tiers): what stacking sizes tiers by (see `weightOf`).
   */
  readonly weight?: number;
}

/** A settled tier over a plain Map, which it owns and never changes. */
class MapTier implements SettledRuns {
  constructor(private readonly runs: ReadonlyMap<string, CharmRun>) {}
  get size() {
    return this.runs.size;
  }
  get(runId: string) {
    return this.runs.get(runId);
  }
  has(runId: string) {
    return this.runs.has(runId);
  }
  values() {
    return this.runs.values();
  }
  runIds() {
    return this.runs.keys();
  }
  since(horizon: number): SettledRuns {
    const kept = new Map<string, CharmRun>();
    for (const run of this.runs.values()) if (run.chargedAt >= horizon) kept.set(run.runId, run);
    return kept.size === this.runs.size ? this : new MapTier(kept);
  }
}

/**
 * Two settled tiers as one: `upper` holds newer copies of runs that `lower` may also hold. A
 * RunBook's settled runs are a stack of these, the newest tier on top (see `stacked`).
 */
export class LayeredTier implements SettledRuns {
  private counted?: number;

  constructor(
    readonly upper: SettledRuns,
    readonly lower: SettledRuns,
  ) {}

  get size() {
    if (this.counted === undefined) {
      let both = 0;
      for (const runId of this.upper.runIds()) if (this.lower.has(runId)) both += 1;
      this.counted = this.upper.size + this.lower.size - both;
    }
    return this.counted;
  }
  get(runId: string) {
    return this.upper.get(runId) ?? this.lower.get(runId);
  }
  has(runId: string) {
    return this.upper.has(runId) || this.lower.has(runId);
  }
  *values() {
    yield* this.upper.values();
    for (const run of this.lower.values()) if (!this.upper.has(run.runId)) yield run;
  }
  *runIds() {
    yield* this.upper.runIds();
    for (const runId of this.lower.runIds()) if (!this.upper.has(runId)) yield runId;
  }
  since(horizon: number): SettledRuns {
    const upper = this.upper.since(horizon);
    const lower = this.lower.since(horizon);
    if (upper === this.upper && lower === this.lower) return this;
    if (weightOf(upper) === 0) return lower;
    return weightOf(lower) === 0 ? upper : new LayeredTier(upper, lower);
  }
}

/**
 * Tiers of one size class that are to become one (see `stacked`). Until a snapshot groups
 * them under one filter, a slice at a time, and hands the group over (`settle`), it answers
 * from all of them: a charge never waits for that, which took 40-70 ms at 30,000 runs when a
 * fold merged everything at once.
 */
export class MergingTier implements SettledRuns {
  private both?: LayeredTier;
  private one?: SettledRuns;

  constructor(upper: SettledRuns, lower: SettledRuns) {
    this.both = new LayeredTier(upper, lower);
  }

  /** The tier that took their place, once settled. */
  get merged(): SettledRuns | undefined {
    return this.one;
  }

  /** The tiers, newest first as one, until settled. */
  get layers(): LayeredTier | undefined {
    return this.both;
  }

  /**
   * Takes `merged` in place of the tiers. It must hold exactly their runs (the newest copy of
   * each), so that every state sharing this tier reads the same before and after.
   */
  settle(merged: SettledRuns) {
    this.one = merged;
    this.both = undefined;
  }

  /** See `weightOf`. */
  get weight(): number {
    return weightOf(this.one ?? this.both!);
  }

  private get tier(): SettledRuns {
    return this.one ?? this.both!;
  }
  get size() {
    return this.tier.size;
  }
  get(runId: string) {
    return this.tier.get(runId);
  }
  has(runId: string) {
    return this.tier.has(runId);
  }
  values() {
    return this.tier.values();
  }
  runIds() {
    return this.tier.runIds();
  }
  since(horizon: number): SettledRuns {
    if (this.one !== undefined) return this.one.since(horizon);
    const kept = this.both!.since(horizon);
    if (kept === this.both) return this;
    return kept instanceof LayeredTier ? new MergingTier(kept.upper, kept.lower) : kept;
  }
}

/** Runs in a tier, counting a run held by two of its layers twice: cheap, for `stacked`. */
export function weightOf(tier: SettledRuns): number {
  if (tier instanceof MergingTier) return tier.weight;
  if (tier instanceof LayeredTier) return weightOf(tier.upper) + weightOf(tier.lower);
  return tier.weight ?? tier.size;
}

/**
 * Tiers become one four at a time, once the four on top are of one size class (a power of
 * four of FOLD_AT runs), and the stack holds at most three tiers of each class (at most 12
 * at 70,000 runs, 18 at 1,000,000). A snapshot makes the four a group under one filter of
 * their run ids (see GroupTier in snapshot.ts), each keeping its own part: a run id absent
 * from them all is told by one filter, as by a tier merged from them, and no run is written
 * again. Merging their columns instead wrote each run about log4(n / FOLD_AT) times more;
 * only the largest classes are still merged (MERGED_FROM_CLASS in snapshot.ts).
 */
const MERGE_FANOUT = 4;

export function sizeClassOf(tier: SettledRuns): number {
  const ratio = weightOf(tier) / FOLD_AT;
  return ratio <= 1 ? 0 : Math.round(Math.log(ratio) / Math.log(MERGE_FANOUT));
}

/** `tier` on top of the stack `below`, the four on top taken as one while of one class. */
export function stacked(tier: SettledRuns, below: SettledRuns): SettledRuns {
  const tiers = [tier, ...tiersOf(below)];
  for (;;) {
    const top = tiers.slice(0, MERGE_FANOUT);
    const sizeClass = sizeClassOf(top[0]);
    if (top.length < MERGE_FANOUT || top.some((each) => sizeClassOf(each) !== sizeClass)) break;
    tiers.splice(0, MERGE_FANOUT, new MergingTier(top[0], layered(top.slice(1))));
  }
  return layered(tiers);
}

/** Tiers, newest first, as one: each replaces the runs of the same id below it. */
function layered(tiers: SettledRuns[]): SettledRuns {
  let stack = tiers[tiers.length - 1];
  for (let i = tiers.length - 2; i >= 0; i--) stack = new LayeredTier(tiers[i], stack);
  return stack;
}

/** The tiers of a stack, newest first. */
export function* tiersOf(settled: SettledRuns): Generator<SettledRuns> {
  if (settled instanceof LayeredTier) {
    yield* tiersOf(settled.upper);
    yield* tiersOf(settled.lower);
  } else if (weightOf(settled) > 0) {
    yield settled;
  }
}

/**
 * Recent runs become a settled tier of their own once they are this many: a snapshot writes
 * the recent runs in full every time, and the settled tiers only once. Since tiers are
 * grouped rather than merged (see GroupTier in snapshot.ts), a small tier costs no more
 * writing: bench/domain.ts, 200,000 charges, 3 rounds alternated, 8.9-10.4 µs a charge in all
 * at 512 against 11.8-12.1 at 2,048 (snapshots 3.3-3.7 against 5.3-5.8); hot, 4 rounds
 * alternated, 11,283-12,227 charges/s against 9,621-11,727 (cold load of the bench's 1M-event
 * organization 24.7 against 24.1 ms, one run each). Each class of size holds up to three
 * tiers more to ask about a new run id, one filter each.
 */
export const FOLD_AT = 512;

/**
 * What a fold's tier becomes: itself, unless the module that owns the tiers' format says
 * otherwise (`settleFoldedTiersWith`; snapshot.ts puts its runs in columns at once).
 */
let settleFolded = (tier: SettledRuns): SettledRuns => tier;

/** Sets what a fold's tier becomes: a tier holding exactly its runs, read the same. */
export function settleFoldedTiersWith(settle: (tier: SettledRuns) => SettledRuns) {
  settleFolded = settle;
}

/**
 * The runs an organization remembers for idempotency and refunds: a week of them, tens of
 * thousands on a busy organization. Persistent like the rest of the state, in two parts:
 * - `settled`: a stack of tiers, each recorded in one go (restored from a snapshot, or
 *   folded from recent runs) and never changed afterwards; a snapshot stores each tier once,
 *   as a part that its later snapshots share;
 * - `recent`: the runs charged or refunded after that, on top (see RecentRuns).
 * A cold load then does not build a persistent map of every run, a charge adds to the state
 * without copying it, and folding costs the same whatever the organization's size.
 */
export class RunBook {
  private static readonly EMPTY = new RunBook(new MapTier(new Map()), RecentRuns.empty(), 0);

  private constructor(
    readonly settled: SettledRuns,
    readonly recent: RecentRuns,
    /**
     * `size`, once known. Counted only when asked for (nothing that charges asks): keeping it
     * up meant asking every settled tier about each new run a second time, in `set`.
     */
    private counted?: number,
  ) {}

  static empty(): RunBook {
    return RunBook.EMPTY;
  }

  /** A book holding `runs`; the caller hands them over and does not change them after. */
  static of(runs: Iterable<CharmRun>): RunBook {
    const settled = new Map<string, CharmRun>();
    for (const run of runs) settled.set(run.runId, run);
    return settled.size === 0
      ? RunBook.EMPTY
      : new RunBook(new MapTier(settled), RecentRuns.empty(), settled.size);
  }

  /** A book from its two tiers, as a snapshot kept them (`recent` replaces `settled`). */
  static restore(settled: SettledRuns, recent: Iterable<CharmRun>): RunBook {
    let runs = RecentRuns.empty();
    for (const run of recent) runs = runs.set(run);
    const book = new RunBook(settled, runs);
    return runs.size >= FOLD_AT ? book.folded() : book;
  }

  get size(): number {
    if (this.counted === undefined) {
      // A recent run that replaces a settled one is counted once.
      let replacing = 0;
      for (const run of this.recent.values()) if (this.settled.has(run.runId)) replacing += 1;
      this.counted = this.settled.size + this.recent.size - replacing;
    }
    return this.counted;
  }

  get(runId: string): CharmRun | undefined {
    return this.recent.get(runId) ?? this.settled.get(runId);
  }

  has(runId: string): boolean {
    return this.recent.has(runId) || this.settled.has(runId);
  }

  /** A book with `run` recorded (new, or replacing the run of the same id). */
  set(run: CharmRun): RunBook {
    const recent = this.recent.set(run);
    const book = new RunBook(this.settled, recent);
    return recent.size >= FOLD_AT ? book.folded() : book;
  }

  /** The recent runs as a settled tier on top of the others. */
  private folded(): RunBook {
    const runs = new Map<string, CharmRun>();
    for (const run of this.recent.values()) runs.set(run.runId, run);
    return new RunBook(
      stacked(settleFolded(new MapTier(runs)), this.settled),
      RecentRuns.empty(),
      this.counted,
    );
  }

  /** Only the runs charged at or after `horizon` (a refund keeps a run's `chargedAt`). */
  chargedSince(horizon: number): RunBook {
    return RunBook.restore(
      this.settled.since(horizon),
      [...this.recent.values()].filter((run) => run.chargedAt >= horizon),
    );
  }

  /** Every run once: the recent tier first, then the settled runs it did not replace. */
  *values(): IterableIterator<CharmRun> {
    yield* this.recent.values();
    for (const run of this.settled.values()) {
      if (!this.recent.has(run.runId)) yield run;
    }
  }
}

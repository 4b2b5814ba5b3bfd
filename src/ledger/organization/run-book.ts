import { Map as ImmutableMap } from 'immutable';
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

/** Two settled tiers as one: `upper` holds newer copies of runs that `lower` may also hold. */
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
    if (upper.size === 0) return lower;
    return lower.size === 0 ? upper : new LayeredTier(upper, lower);
  }
}

/**
 * Recent runs are folded into a new settled tier once they are this many and at least as
 * many as the settled ones: each fold at least doubles the tier, so folding costs O(1) a run.
 */
const FOLD_AT_LEAST = 4_096;

/**
 * The runs an organization remembers for idempotency and refunds: a week of them, tens of
 * thousands on a busy organization. Persistent like the rest of the state, in two tiers:
 * - `settled`: runs recorded in one go (restored from a snapshot, or folded) and never
 *   changed afterwards; a snapshot writes such a tier once and reuses the text after;
 * - `recent`: an Immutable map of the runs charged or refunded after that, on top.
 * A cold load then does not build a persistent map of every run, and a charge still adds to
 * the state without copying it.
 */
export class RunBook {
  private static readonly EMPTY = new RunBook(new MapTier(new Map()), ImmutableMap(), 0);

  private constructor(
    readonly settled: SettledRuns,
    readonly recent: ImmutableMap<string, CharmRun>,
    /** Runs of `recent` that replace one of `settled` (counted once in `size`). */
    private readonly replacing: number,
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
      : new RunBook(new MapTier(settled), ImmutableMap(), 0);
  }

  /**
   * A book from its two tiers, as a snapshot kept them (`recent` replaces `settled`). The
   * recent runs go in as one batch: a snapshot can hold thousands, and adding them one by one
   * to the persistent map was most of a cold load.
   */
  static restore(settled: SettledRuns, recent: Iterable<CharmRun>): RunBook {
    let replacing = 0;
    const runs = ImmutableMap<string, CharmRun>().withMutations((map) => {
      for (const run of recent) {
        if (!map.has(run.runId) && settled.has(run.runId)) replacing += 1;
        map.set(run.runId, run);
      }
    });
    const book = new RunBook(settled, runs, replacing);
    return runs.size >= FOLD_AT_LEAST && runs.size >= settled.size
      ? RunBook.of(book.values())
      : book;
  }

  get size(): number {
    return this.settled.size + this.recent.size - this.replacing;
  }

  get(runId: string): CharmRun | undefined {
    return this.recent.get(runId) ?? this.settled.get(runId);
  }

  has(runId: string): boolean {
    return this.recent.has(runId) || this.settled.has(runId);
  }

  /** A book with `run` recorded (new, or replacing the run of the same id). */
  set(run: CharmRun): RunBook {
    const replaces = !this.recent.has(run.runId) && this.settled.has(run.runId);
    const recent = this.recent.set(run.runId, run);
    if (recent.size >= FOLD_AT_LEAST && recent.size >= this.settled.size) {
      return RunBook.of(this.valuesOf(recent));
    }
    return new RunBook(this.settled, recent, this.replacing + (replaces ? 1 : 0));
  }

  /** Only the runs charged at or after `horizon` (a refund keeps a run's `chargedAt`). */
  chargedSince(horizon: number): RunBook {
    return RunBook.restore(
      this.settled.since(horizon),
      this.recent.filter((run) => run.chargedAt >= horizon).values(),
    );
  }

  /** Every run once: the recent tier first, then the settled runs it did not replace. */
  values(): IterableIterator<CharmRun> {
    return this.valuesOf(this.recent);
  }

  private *valuesOf(recent: ImmutableMap<string, CharmRun>): IterableIterator<CharmRun> {
    yield* recent.values();
    for (const run of this.settled.values()) {
      if (!recent.has(run.runId)) yield run;
    }
  }
}

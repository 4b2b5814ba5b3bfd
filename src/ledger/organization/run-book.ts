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
  since(horizon: number): SettledRuns {
    const kept = new Map<string, CharmRun>();
    for (const run of this.runs.values()) if (run.chargedAt >= horizon) kept.set(run.runId, run);
    return kept.size === this.runs.size ? this : new MapTier(kept);
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

  /** A book from its two tiers, as a snapshot kept them (`recent` replaces `settled`). */
  static restore(settled: SettledRuns, recent: Iterable<CharmRun>): RunBook {
    let book = new RunBook(settled, ImmutableMap(), 0);
    for (const run of recent) book = book.set(run);
    return book;
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

import { Map as ImmutableMap } from 'immutable';
import type { CharmRun } from './state';

/**
 * The runs an organization remembers for idempotency and refunds: a week of them, tens of
 * thousands on a busy organization. Persistent like the rest of the state, in two tiers:
 * - `settled`: a plain Map built in one go (from a snapshot, or when keys past the window are
 *   dropped) and never changed afterwards;
 * - `since`: an Immutable map of the runs charged or refunded after that, on top.
 * A cold load then builds one native Map instead of a persistent map of every run, and a
 * charge still adds to the state without copying it.
 */
export class RunBook {
  private static readonly EMPTY = new RunBook(new Map(), ImmutableMap(), 0);

  private constructor(
    private readonly settled: ReadonlyMap<string, CharmRun>,
    private readonly since: ImmutableMap<string, CharmRun>,
    /** Runs of `since` that replace one of `settled` (counted once in `size`). */
    private readonly replacing: number,
  ) {}

  static empty(): RunBook {
    return RunBook.EMPTY;
  }

  /** A book holding `runs`; the caller hands them over and does not change them after. */
  static of(runs: Iterable<CharmRun>): RunBook {
    const settled = new Map<string, CharmRun>();
    for (const run of runs) settled.set(run.runId, run);
    return settled.size === 0 ? RunBook.EMPTY : new RunBook(settled, ImmutableMap(), 0);
  }

  get size(): number {
    return this.settled.size + this.since.size - this.replacing;
  }

  get(runId: string): CharmRun | undefined {
    return this.since.get(runId) ?? this.settled.get(runId);
  }

  has(runId: string): boolean {
    return this.since.has(runId) || this.settled.has(runId);
  }

  /** A book with `run` recorded (new, or replacing the run of the same id). */
  set(run: CharmRun): RunBook {
    const replaces = !this.since.has(run.runId) && this.settled.has(run.runId);
    return new RunBook(
      this.settled,
      this.since.set(run.runId, run),
      this.replacing + (replaces ? 1 : 0),
    );
  }

  /** Only the runs charged at or after `horizon`, folded into one settled tier. */
  chargedSince(horizon: number): RunBook {
    return RunBook.of([...this.values()].filter((run) => run.chargedAt >= horizon));
  }

  /** Every run once: the newer tier first, then the settled runs it did not replace. */
  *values(): IterableIterator<CharmRun> {
    yield* this.since.values();
    for (const run of this.settled.values()) {
      if (!this.since.has(run.runId)) yield run;
    }
  }
}

import type { CharmRun } from './state';

/** One copy of a run, and the copy it replaced (older versions of the same run id). */
interface Copy {
  readonly run: CharmRun;
  /** The version of the runs that recorded it. */
  readonly version: number;
  readonly older: Copy | undefined;
}

/** The copies of every version of one line of RecentRuns, and the newest version written. */
interface Versions {
  readonly copies: Map<string, Copy>;
  newest: number;
}

/**
 * The recent runs of a RunBook: persistent, as the state must be, yet a run is recorded in
 * place. Every version of one line shares a plain Map of copies, each stamped with the
 * version that recorded it; a version sees the newest copy of each run no newer than itself.
 * Recording on the newest version (what evolve does, charge after charge) adds a copy and
 * bumps the version: one small object per run, where a persistent hash map copied its path
 * (a tenth of the request thread's garbage in the hot bench). Recording on an older version
 * (a state decided on and then dropped) first copies what that version sees: correct, and
 * rare. Replaced copies are kept for the older versions until the runs are folded.
 */
export class RecentRuns {
  private constructor(
    private readonly versions: Versions,
    private readonly version: number,
    readonly size: number,
  ) {}

  static empty(): RecentRuns {
    return new RecentRuns({ copies: new Map(), newest: 0 }, 0, 0);
  }

  get(runId: string): CharmRun | undefined {
    return this.copyOf(runId)?.run;
  }

  has(runId: string): boolean {
    return this.copyOf(runId) !== undefined;
  }

  /** These runs with `run` recorded (new, or replacing the run of the same id). */
  set(run: CharmRun): RecentRuns {
    // An empty version starts its own line: nothing to share, and the shared empty book
    // must not keep the first organization's runs.
    const versions =
      this.size === 0
        ? { copies: new Map<string, Copy>(), newest: 0 }
        : this.version === this.versions.newest
          ? this.versions
          : this.branched();
    const older = versions.copies.get(run.runId);
    const version = versions.newest + 1;
    versions.copies.set(run.runId, { run, version, older });
    versions.newest = version;
    return new RecentRuns(versions, version, older === undefined ? this.size + 1 : this.size);
  }

  /** The runs this version sees, each once, in the order their ids were first recorded. */
  *values(): IterableIterator<CharmRun> {
    for (const copy of this.versions.copies.values()) {
      const seen = this.visible(copy);
      if (seen !== undefined) yield seen.run;
    }
  }

  private copyOf(runId: string): Copy | undefined {
    const copy = this.versions.copies.get(runId);
    return copy === undefined ? undefined : this.visible(copy);
  }

  private visible(newest: Copy): Copy | undefined {
    let copy: Copy | undefined = newest;
    while (copy !== undefined && copy.version > this.version) copy = copy.older;
    return copy;
  }

  /** A line of its own holding what this version sees, to record on without changing it. */
  private branched(): Versions {
    const copies = new Map<string, Copy>();
    for (const run of this.values()) copies.set(run.runId, { run, version: 0, older: undefined });
    return { copies, newest: 0 };
  }
}

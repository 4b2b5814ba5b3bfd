/** Latencies in milliseconds, kept in a growable typed array (no per-sample object). */
export class Latencies {
  private samples = new Float64Array(1 << 16);
  private count = 0;

  add(ms: number): void {
    if (this.count === this.samples.length) {
      const grown = new Float64Array(this.samples.length * 2);
      grown.set(this.samples);
      this.samples = grown;
    }
    this.samples[this.count++] = ms;
  }

  get size(): number {
    return this.count;
  }

  summary(): { p50: number; p99: number; max: number } {
    if (this.count === 0) return { p50: NaN, p99: NaN, max: NaN };
    const sorted = this.samples.slice(0, this.count).sort();
    const at = (q: number) => sorted[Math.min(this.count - 1, Math.floor(q * this.count))];
    return { p50: at(0.5), p99: at(0.99), max: sorted[this.count - 1] };
  }
}

/** What every load process prints as its last line. */
export interface LoadReport {
  /** Requests completed in the measured window. */
  completed: number;
  ok: number;
  rejected: number;
  failed: number;
  seconds: number;
  throughput: number;
  p50: number;
  p99: number;
  /** Credits charged by acknowledged requests, over the whole run (warm-up included). */
  charged: number;
  /** The load process's own CPU time over the whole run (warm-up included), in seconds. */
  cpuSeconds: number;
}

/** CPU time this process has used so far, user and system, in seconds. */
export function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

export type Outcomes = Pick<LoadReport, 'completed' | 'ok' | 'rejected' | 'failed'>;

/** Prints a load process's report (its last line) for the bench to read. */
export function printReport(
  counts: Outcomes,
  seconds: number,
  latencies: Latencies,
  charged: number,
) {
  const report: LoadReport = {
    ...counts,
    seconds,
    throughput: counts.ok / seconds,
    ...latencies.summary(),
    charged,
    cpuSeconds: ownCpuSeconds(),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

/** A load process's entry point: a failure is printed and the exit code says so. */
export function runMain(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}

import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { LedgerConfig } from '../config/config';
import { workerScript, type WorkerScript } from '../threads/worker-script';
import { Progress } from './progress';

/** What the read side's thread tells the service. Positions are decimal strings. */
export type ReadSideReport =
  | { kind: 'ready'; position: string }
  | { kind: 'progress'; position: string }
  | { kind: 'log'; level: 'log' | 'warn' | 'error'; message: string };

/** What the service tells the read side's thread. */
export type ReadSideOrder = { kind: 'wake' } | { kind: 'stop' };

/** The code the thread runs; `before` is for tests that sabotage it. */
export const readSideWorker = (before = ''): WorkerScript =>
  workerScript(join(__dirname, 'read-side.worker'), before);

export interface ReadSideLog {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

const RESTART_AFTER_MS = 1000;
const READ_SIDE_YOUNG_GENERATION_MB = 8;
const STOP_TIMEOUT_MS = 10_000;

/**
 * The projections and the JetStream publisher in a thread of their own, with their own
 * connections to the event store, the read models and NATS: the request thread only appends
 * and answers. The thread reports how far the projections got, which is all read-your-writes
 * needs here. A thread that dies is started again; both halves resume from their stored
 * checkpoints, and handling an event twice changes nothing.
 */
export class ReadSideThread {
  readonly progress = new Progress(() => this.order({ kind: 'wake' }));
  private worker?: Worker;
  private stopping = false;
  private restart?: NodeJS.Timeout;

  constructor(
    private readonly config: LedgerConfig,
    private readonly logger: ReadSideLog,
    private readonly script: WorkerScript = readSideWorker(),
  ) {}

  /** Resolves once the thread has loaded its checkpoints; rejects if it cannot start. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(this.script.filename, {
        eval: this.script.eval ?? false,
        workerData: { config: this.config },
        // It holds little for long (a page of events at a time): a small young generation
        // keeps its share of the process's memory small, at the cost of more frequent
        // scavenges in a thread that no request waits on.
        resourceLimits: { maxYoungGenerationSizeMb: READ_SIDE_YOUNG_GENERATION_MB },
      });
      this.worker = worker;
      let ready = false;
      worker.on('message', (report: ReadSideReport) => {
        if (report.kind === 'log') this.logger[report.level](report.message);
        else this.progress.advance(BigInt(report.position));
        if (report.kind === 'ready' && !ready) {
          ready = true;
          resolve();
        }
      });
      worker.on('error', (error) => {
        if (ready) this.logger.error(`the read side's thread failed: ${String(error)}`);
        else reject(error);
      });
      worker.on('exit', (code) => {
        if (this.worker === worker) this.worker = undefined;
        if (!ready) reject(new Error(`the read side's thread exited (${code}) before it started`));
        if (this.stopping || !ready) return;
        this.logger.error(`the read side's thread exited (${code}); starting it again`);
        this.restart = setTimeout(() => this.startAgain(), RESTART_AFTER_MS);
      });
    });
  }

  /** Lets the thread finish the batch in hand and close its connections. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restart);
    const worker = this.worker;
    if (!worker) return;
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    this.order({ kind: 'stop' });
    const timer = setTimeout(() => void worker.terminate(), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  private startAgain() {
    if (this.stopping) return;
    this.start().catch((error: unknown) => {
      this.logger.error(`the read side's thread did not start again: ${String(error)}`);
      if (!this.stopping) this.restart = setTimeout(() => this.startAgain(), RESTART_AFTER_MS);
    });
  }

  private order(order: ReadSideOrder) {
    this.worker?.postMessage(order);
  }
}

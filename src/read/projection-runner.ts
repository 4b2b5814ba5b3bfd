import { setImmediate } from 'node:timers/promises';
import type { DataSource, EntityManager } from 'typeorm';
import type { Projection } from '../../projections';
import type { EventStore, RecordedEvent } from '../event-store/event-store';
import { Progress } from './progress';
import { dialectOf } from './read-model-database';
import { applyChanges } from './sql-changes';

export interface RunnerOptions {
  pageSize?: number;
  /** How long to wait for new events once caught up, before looking again. */
  idleMs?: number;
  /** How long to wait after a failed batch before trying it again. */
  retryMs?: number;
  /** Fault injection for the crash tests: called after a batch's changes, before its checkpoint. */
  beforeCheckpoint?: () => void;
  onError?: (error: unknown) => void;
  /** Writes into `<table><suffix>` and keeps checkpoints as `<projection><suffix>` (rebuilds). */
  suffix?: string;
  /** Each page as read: the store's events after `after`, in order (the publisher's too). */
  onRead?: (after: bigint, events: RecordedEvent[]) => void;
}

const CHECKPOINTS = 'projection_checkpoints';

/**
 * Feeds every projection from its stored checkpoint, strictly in order. A page of events and
 * the checkpoints it moves commit in one transaction, so an event handled twice (after a
 * crash, a retry) changes nothing. Positions stay bigint; in the database they are decimal
 * strings.
 */
export class ProjectionRunner {
  private readonly checkpoints = new Map<string, bigint>();
  /** Where every projection has got to, for readers waiting on a position. */
  readonly progress = new Progress(() => this.lookNow());
  private running = false;
  /**
   * After a failed batch, whether its transaction committed is unknown: a connection lost
   * during COMMIT fails the call although the server kept the page. The stored checkpoints
   * say which it was, so they are read again before the next page.
   */
  private checkpointsInDoubt = false;
  private loop?: Promise<void>;
  private wake?: () => void;
  private readonly pageSize: number;
  private readonly idleMs: number;

  constructor(
    private readonly store: EventStore,
    private readonly dataSource: DataSource,
    private readonly projections: readonly Projection[],
    private readonly options: RunnerOptions = {},
  ) {
    // Small enough that a page never holds requests up for long.
    this.pageSize = options.pageSize ?? 250;
    this.idleMs = options.idleMs ?? 25;
  }

  /** The position every projection has reached. */
  get position(): bigint {
    let lowest: bigint | undefined;
    for (const projection of this.projections) {
      const at = this.checkpoints.get(this.checkpointOf(projection)) ?? 0n;
      if (lowest === undefined || at < lowest) lowest = at;
    }
    return lowest ?? 0n;
  }

  async start(): Promise<void> {
    await this.loadCheckpoints();
    this.running = true;
    this.loop = this.run();
  }

  async loadCheckpoints(): Promise<void> {
    const rows: { projection: string; position: string }[] = await this.dataSource.query(
      `SELECT "projection", "position" FROM "${CHECKPOINTS}"`,
    );
    for (const row of rows) this.checkpoints.set(row.projection, BigInt(row.position));
    this.progress.advance(this.position);
  }

  /**
   * Without the loop: handles pages until `until` (inclusive) is reached, in `manager`'s
   * transaction if given. For rebuilds and operator commands.
   */
  async handleUntil(
    until: bigint,
    onPage?: (position: bigint, events: number) => void,
    manager?: EntityManager,
  ): Promise<void> {
    while (this.position < until) {
      const handled = await this.handleNextPage(until, manager);
      if (handled === 0) return;
      onPage?.(this.position, handled);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  /** Resolves true once every projection has reached `position`, false after `timeoutMs`. */
  waitFor(position: bigint, timeoutMs: number): Promise<boolean> {
    return this.progress.waitFor(position, timeoutMs);
  }

  /** Looks for new events now instead of at the end of the idle wait. */
  lookNow(): void {
    this.wake?.();
  }

  /** Handles everything up to the store's head now (for tests and operator commands). */
  async catchUp(): Promise<void> {
    const head = await this.store.headPosition();
    if (!(await this.waitFor(head, 60_000))) throw new Error('projections did not catch up');
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        if (this.checkpointsInDoubt) {
          await this.loadCheckpoints();
          this.checkpointsInDoubt = false;
        }
        const handled = await this.handleNextPage();
        if (handled === 0) await this.idle();
        // A page's queries resolve without I/O (SQLite): let requests in between pages, or a
        // backlog would hold the event loop until it is worked off.
        else await setImmediate();
      } catch (error) {
        this.checkpointsInDoubt = true;
        this.options.onError?.(error);
        await this.idle(this.options.retryMs ?? 1000);
      }
    }
  }

  private idle(ms = this.idleMs) {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private checkpointOf(projection: Projection) {
    return `${projection.name}${this.options.suffix ?? ''}`;
  }

  private async handleNextPage(until?: bigint, outer?: EntityManager): Promise<number> {
    const after = this.position;
    const read = await this.store.readAll({ fromPosition: after, maxCount: this.pageSize });
    this.options.onRead?.(after, read);
    const page = until === undefined ? read : read.filter((event) => event.position <= until);
    if (page.length === 0) return 0;
    const last = page[page.length - 1].position;
    const batch = async (manager: EntityManager) => {
      for (const projection of this.projections) await this.handle(manager, projection, page);
      this.options.beforeCheckpoint?.();
      for (const projection of this.projections) {
        await saveCheckpoint(manager, this.checkpointOf(projection), last);
      }
    };
    if (outer) await batch(outer);
    else await this.dataSource.transaction(batch);
    for (const projection of this.projections) {
      this.checkpoints.set(this.checkpointOf(projection), last);
    }
    this.progress.advance(this.position);
    return page.length;
  }

  private async handle(manager: EntityManager, projection: Projection, page: RecordedEvent[]) {
    const reached = this.checkpoints.get(this.checkpointOf(projection)) ?? 0n;
    const suffix = this.options.suffix ?? '';
    // The whole page's changes at once, so that changes to one row fold into one write.
    const changes = page
      .filter((event) => event.position > reached)
      .flatMap((event) => projection.handle(event));
    await applyChanges(
      changes,
      (sql, parameters) => manager.query(sql, parameters),
      dialectOf(this.dataSource),
      (table) => `${table}${suffix}`,
    );
  }
}

export async function saveCheckpoint(manager: EntityManager, projection: string, position: bigint) {
  const postgres = manager.connection.options.type === 'postgres';
  const [a, b] = postgres ? ['$1', '$2'] : ['?', '?'];
  await manager.query(
    `INSERT INTO "${CHECKPOINTS}" ("projection", "position") VALUES (${a}, ${b}) ON CONFLICT ("projection") DO UPDATE SET "position" = excluded."position"`,
    [projection, position.toString()],
  );
}

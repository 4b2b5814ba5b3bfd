import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { HandlerScope, reportStoppedSubscription } from './adapter-support';
import type { EventHandler, RecordedEvent, SubscribeOptions, Subscription } from './event-store';

/** What a store that is read by position gives its catch-up-then-live subscriptions. */
export interface PollingSource {
  /** Events strictly after `afterPosition`, in global order, at most `limit`. */
  readPage(afterPosition: bigint, limit: number): Promise<RecordedEvent[]> | RecordedEvent[];
  /**
   * Events of `types` strictly after `afterPosition`, at most `limit`, and how far the read
   * looked: no event of those types at or below `scannedTo` is left unread.
   */
  readPageOfTypes(
    afterPosition: bigint,
    limit: number,
    types: readonly string[],
  ): Promise<PageOfTypes> | PageOfTypes;
  /** Counts appends seen by this process (its own, or notified), so a reader can tell if it missed one. */
  readonly appendsSoFar: number;
  /** Resolves after the next append seen or after `timeoutMs`; `cancel` resolves it early. */
  waitForAppend(timeoutMs: number): { wait: Promise<void>; cancel: () => void };
}

export interface PageOfTypes {
  events: RecordedEvent[];
  scannedTo: bigint;
  /** The read stopped short of the end (a store may look at a bounded range per read). */
  more?: boolean;
}

export interface PollingTuning {
  /** Events read per query. */
  pageSize: number;
  /** How long an idle subscription waits before looking again without being woken. */
  pollIntervalMs: number;
}

/**
 * One catch-up-then-live subscription. It always reads strictly after the last position it
 * handled, so the seam between catching up and live delivery has no gap and no repeat, and
 * a failing event is never skipped.
 */
export class PollingSubscription implements Subscription {
  /** Tells stop() whether it is being called from inside this subscription's own handler. */
  private static readonly handlers = new HandlerScope<PollingSubscription>();

  readonly finished: Promise<void>;
  private stopped = false;
  private cancelWait: (() => void) | undefined;

  constructor(
    private readonly source: PollingSource,
    private readonly handler: EventHandler,
    private readonly options: SubscribeOptions,
    private readonly tuning: PollingTuning,
  ) {
    this.finished = this.run();
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.cancelWait?.();
    if (PollingSubscription.handlers.isInside(this)) return Promise.resolve();
    return this.finished;
  }

  private async run(): Promise<void> {
    // The source picks out the event types; the stream prefixes are checked here.
    const { streamPrefixes: prefixes, eventTypes: types } = this.options;
    const wanted = (event: RecordedEvent) =>
      prefixes === undefined || prefixes.some((prefix) => event.streamId.startsWith(prefix));
    let lastPosition = this.options.fromPosition ?? 0n;
    let caughtUp = false;
    // Let the caller hold the subscription (and call stop()) before the first event arrives.
    await yieldToEventLoop();
    try {
      while (!this.stopped) {
        const appendsBeforeRead = this.source.appendsSoFar;
        const { events: page, scannedTo, more } = await this.nextPage(lastPosition, types);
        for (const event of page) {
          if (this.stopped) return;
          if (wanted(event)) {
            await PollingSubscription.handlers.run(this, () => this.handler(event));
          }
          // Advanced only once handled, so a failing event is never skipped.
          lastPosition = event.position;
        }
        // Past the events of other types too, so the next read does not look at them again.
        const full = page.length === this.tuning.pageSize;
        if (!full && scannedTo > lastPosition) lastPosition = scannedTo;
        if (full || more === true) {
          // More may follow at once; let timers and I/O run between pages.
          await yieldToEventLoop();
          continue;
        }
        if (!caughtUp) {
          caughtUp = true;
          if (this.options.onCaughtUp !== undefined && !this.stopped) {
            const onCaughtUp = this.options.onCaughtUp;
            await PollingSubscription.handlers.run(this, () => onCaughtUp());
          }
        }
        // An append since the read: read again at once, or it could be missed.
        if (this.stopped || this.source.appendsSoFar !== appendsBeforeRead) continue;
        // Otherwise wait for the next append, or poll for what nobody told us about.
        const { wait, cancel } = this.source.waitForAppend(this.tuning.pollIntervalMs);
        this.cancelWait = cancel;
        await wait;
        this.cancelWait = undefined;
      }
    } catch (error) {
      this.stopped = true;
      reportStoppedSubscription(this.options, error);
    }
  }

  /** The next page: only the wanted types, which the store picks out itself. */
  private async nextPage(after: bigint, types: string[] | undefined): Promise<PageOfTypes> {
    if (types !== undefined) return this.source.readPageOfTypes(after, this.tuning.pageSize, types);
    return { events: await this.source.readPage(after, this.tuning.pageSize), scannedTo: after };
  }
}

/** Wakes everyone waiting for an append; shared by the adapters that poll. */
export class AppendSignal {
  private readonly waiters = new Set<() => void>();
  private count = 0;

  get appendsSoFar(): number {
    return this.count;
  }

  notify(): void {
    this.count += 1;
    for (const wake of [...this.waiters]) wake();
  }

  waitForAppend(timeoutMs: number): { wait: Promise<void>; cancel: () => void } {
    let cancel!: () => void;
    const wait = new Promise<void>((resolve) => {
      const timer = setTimeout(() => cancel(), timeoutMs);
      cancel = () => {
        clearTimeout(timer);
        this.waiters.delete(cancel);
        resolve();
      };
      this.waiters.add(cancel);
    });
    return { wait, cancel };
  }
}

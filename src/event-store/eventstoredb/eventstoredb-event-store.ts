import { setTimeout as delay } from 'node:timers/promises';
import {
  ANY,
  type AllStreamResolvedEvent,
  type AllStreamSubscription,
  BACKWARDS,
  END,
  EventStoreDBClient,
  excludeSystemEvents,
  FORWARDS,
  jsonEvent,
  NO_STREAM,
  type Position,
  type ResolvedEvent,
  START,
  StreamNotFoundError,
  streamNameFilter,
  WrongExpectedVersionError,
} from '@eventstore/db-client';
import {
  type AppendResult,
  type EventHandler,
  type EventMetadata,
  type EventStore,
  type ExpectedRevision,
  type NewEvent,
  NO_REVISION,
  type ReadAllOptions,
  type ReadStreamOptions,
  type RecordedEvent,
  type Snapshot,
  type SnapshotStore,
  type SubscribeOptions,
  type Subscription,
  WrongExpectedRevisionError,
} from '../event-store';
import { checkedMaxCount, HandlerScope, reportStoppedSubscription } from '../adapter-support';
import { EventStoreDbSnapshots, SNAPSHOT_PREFIX } from './eventstoredb-snapshots';

/**
 * EventStoreDB positions are two unsigned 64-bit numbers; the port's position is one bigint.
 * `commit << 64 | prepare` keeps both without loss and orders as the server does.
 */
const PREPARE_BITS = 64n;
const PREPARE_MASK = (1n << PREPARE_BITS) - 1n;

export function toPortPosition(position: Position): bigint {
  return (position.commit << PREPARE_BITS) | position.prepare;
}

export function toServerPosition(position: bigint): Position {
  return { commit: position >> PREPARE_BITS, prepare: position & PREPARE_MASK };
}

/** Events read per request while looking backwards for the newest ledger event. */
const HEAD_PAGE_SIZE = 32;

export interface EventStoreDbOptions {
  /** Events read per request when paging through $all. */
  pageSize?: number;
  /** First wait before resubscribing after a dropped subscription; doubles up to 5 s. */
  resubscribeDelayMs?: number;
}

/**
 * The production event store: `@eventstore/db-client` against an EventStoreDB node or
 * cluster. Expected revisions map to NO_STREAM / ANY / bigint, WrongExpectedVersionError to
 * the port's conflict, a missing stream to an empty read. Event ids are the ledger's own, so a
 * retried append with the same expected revision is idempotent on the server.
 */
export class EventStoreDbEventStore implements EventStore, SnapshotStore {
  private readonly subscriptions = new Set<EventStoreDbSubscription>();
  private readonly tuning: Required<EventStoreDbOptions>;
  private readonly snapshots: EventStoreDbSnapshots;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly client: EventStoreDBClient,
    options: EventStoreDbOptions,
  ) {
    this.tuning = { pageSize: 500, resubscribeDelayMs: 100, ...options };
    this.snapshots = new EventStoreDbSnapshots(client);
  }

  /** Connects lazily, as the client does; `ping` tells whether the server answers. */
  static open(connectionString: string, options: EventStoreDbOptions = {}): EventStoreDbEventStore {
    return new EventStoreDbEventStore(
      EventStoreDBClient.connectionString(connectionString),
      options,
    );
  }

  async appendToStream(
    streamId: string,
    events: NewEvent[],
    expected: ExpectedRevision,
  ): Promise<AppendResult> {
    this.assertOpen();
    if (events.length === 0) return this.checkExpectation(streamId, expected);
    try {
      const result = await this.client.appendToStream(
        streamId,
        events.map((event) =>
          jsonEvent({
            id: event.eventId,
            type: event.type,
            data: event.data as Record<string, unknown>,
            metadata: event.metadata as unknown as Record<string, unknown>,
          }),
        ),
        { expectedRevision: toExpectedRevision(expected) },
      );
      if (result.position === undefined) {
        throw new Error(`EventStoreDB did not report the position of the append to ${streamId}`);
      }
      return {
        nextExpectedRevision: result.nextExpectedRevision,
        position: toPortPosition(result.position),
      };
    } catch (error) {
      if (error instanceof WrongExpectedVersionError) {
        throw new WrongExpectedRevisionError(streamId, expected, toActualRevision(error));
      }
      throw error;
    }
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    const backwards = options.direction === 'backwards';
    if (options.maxCount === 0) return [];
    const events: RecordedEvent[] = [];
    try {
      for await (const resolved of this.client.readStream(streamId, {
        direction: backwards ? BACKWARDS : FORWARDS,
        fromRevision: options.fromRevision ?? (backwards ? END : START),
        ...(options.maxCount === undefined ? {} : { maxCount: options.maxCount }),
      })) {
        const event = toRecordedEvent(resolved);
        if (event !== undefined) events.push(event);
      }
    } catch (error) {
      if (error instanceof StreamNotFoundError) return [];
      throw error;
    }
    return events;
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    return this.readAllAfter(options.fromPosition ?? 0n, options.maxCount);
  }

  subscribeToAll(handler: EventHandler, options: SubscribeOptions = {}): Subscription {
    this.assertOpen();
    const subscription = new EventStoreDbSubscription(this.client, handler, options, this.tuning);
    this.subscriptions.add(subscription);
    void subscription.finished.then(() => this.subscriptions.delete(subscription));
    return subscription;
  }

  /** The position of the newest ledger event (system and snapshot events do not count). */
  async headPosition(): Promise<bigint> {
    this.assertOpen();
    let from: Position | typeof END = END;
    // Each page is read to its end: leaving a read call half-consumed can stall the client.
    for (;;) {
      let read = 0;
      let newest: bigint | undefined;
      for await (const resolved of this.client.readAll({
        direction: BACKWARDS,
        fromPosition: from,
        maxCount: HEAD_PAGE_SIZE,
      })) {
        read += 1;
        if (resolved.event !== undefined) from = resolved.event.position;
        newest ??= toRecordedEvent(resolved)?.position;
      }
      if (newest !== undefined) return newest;
      if (read < HEAD_PAGE_SIZE) return 0n;
    }
  }

  async ping(): Promise<void> {
    this.assertOpen();
    for await (const _ of this.client.readAll({
      direction: BACKWARDS,
      fromPosition: END,
      maxCount: 1,
    })) {
      break;
    }
  }

  loadSnapshot(streamId: string): Promise<Snapshot | undefined> {
    this.assertOpen();
    return this.snapshots.load(streamId);
  }

  saveSnapshot(snapshot: Snapshot): Promise<void> {
    this.assertOpen();
    return this.snapshots.save(snapshot);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.subscriptions].map((subscription) => subscription.stop()));
      await this.client.dispose();
    })();
    return this.closing;
  }

  /** Ledger events strictly after `after` (the server's read is inclusive), up to `maxCount`. */
  private async readAllAfter(
    after: bigint,
    maxCount: number | undefined,
  ): Promise<RecordedEvent[]> {
    const wanted = checkedMaxCount(maxCount) ?? Number.POSITIVE_INFINITY;
    const events: RecordedEvent[] = [];
    let from: Position | typeof START = after === 0n ? START : toServerPosition(after);
    // Everything up to here was read already (each page repeats the event it starts from).
    let seen = after;
    // Pages, since system events between ours must not shorten a page into looking like the end.
    while (events.length < wanted) {
      let read = 0;
      // One more than wanted: the page starts with the event it starts from. Each page is
      // read to its end, since leaving a read call half-consumed can stall the client.
      const limit = Math.min(this.tuning.pageSize, wanted - events.length + 1);
      for await (const resolved of this.client.readAll({
        direction: FORWARDS,
        fromPosition: from,
        maxCount: limit,
      })) {
        read += 1;
        if (resolved.event === undefined || events.length === wanted) continue;
        const position = toPortPosition(resolved.event.position);
        if (position <= seen) continue;
        seen = position;
        from = resolved.event.position;
        const event = toRecordedEvent(resolved);
        if (event === undefined) continue;
        events.push(event);
      }
      if (read < limit) break;
    }
    return events;
  }

  private async checkExpectation(
    streamId: string,
    expected: ExpectedRevision,
  ): Promise<AppendResult> {
    const [last] = await this.readStream(streamId, { direction: 'backwards', maxCount: 1 });
    const actual = last?.revision ?? NO_REVISION;
    const matches =
      expected === 'any' ||
      (expected === 'no_stream' ? actual === NO_REVISION : expected === actual);
    if (!matches) throw new WrongExpectedRevisionError(streamId, expected, actual);
    return {
      nextExpectedRevision: actual,
      position: last?.position ?? (await this.headPosition()),
    };
  }

  private assertOpen(): void {
    if (this.closing !== undefined) throw new Error('the EventStoreDB event store is closed');
  }
}

/**
 * Catch-up then live on `$all`, from a position (exclusive on the server). When the server
 * drops the subscription it resubscribes from the last handled position, so nothing is
 * skipped or repeated; a failing handler stops it and is reported through onError.
 */
class EventStoreDbSubscription implements Subscription {
  /** Tells stop() whether it is being called from inside this subscription's own handler. */
  private static readonly handlers = new HandlerScope<EventStoreDbSubscription>();

  readonly finished: Promise<void>;
  private stopped = false;
  private current: AllStreamSubscription | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly client: EventStoreDBClient,
    private readonly handler: EventHandler,
    private readonly options: SubscribeOptions,
    private readonly tuning: Required<EventStoreDbOptions>,
  ) {
    this.finished = this.run();
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    void this.current?.unsubscribe().catch(() => undefined);
    if (EventStoreDbSubscription.handlers.isInside(this)) return Promise.resolve();
    return this.finished;
  }

  private async run(): Promise<void> {
    let last = this.options.fromPosition ?? 0n;
    let caughtUp = false;
    let backoff = this.tuning.resubscribeDelayMs;
    await delay(0);
    while (!this.stopped) {
      const subscription = this.client.subscribeToAll({
        fromPosition: last === 0n ? START : toServerPosition(last),
        filter:
          this.options.streamPrefixes === undefined
            ? excludeSystemEvents()
            : streamNameFilter({ prefixes: this.options.streamPrefixes }),
      });
      this.current = subscription;
      const queue = new SubscriptionQueue(subscription);
      try {
        for (;;) {
          const item = await queue.next((wake) => (this.wake = wake));
          if (this.stopped) return;
          if (item.kind === 'end') throw new Error('EventStoreDB ended the subscription');
          if (item.kind === 'error') throw item.error;
          if (item.kind === 'caught-up') {
            if (!caughtUp) {
              caughtUp = true;
              await this.inside(() => this.options.onCaughtUp?.());
            }
            continue;
          }
          backoff = this.tuning.resubscribeDelayMs;
          const event = toRecordedEvent(item.event);
          if (event === undefined || event.position <= last) continue;
          // The server filters by stream or by type, not both: the type is checked here.
          const types = this.options.eventTypes;
          if (types !== undefined && !types.includes(event.type)) {
            last = event.position;
            continue;
          }
          try {
            await this.inside(() => this.handler(event));
          } catch (error) {
            this.stopped = true;
            reportStoppedSubscription(this.options, error);
            return;
          }
          last = event.position;
        }
      } catch {
        // Dropped by the server or the network: resubscribe from the last handled event.
        if (this.stopped) return;
        await delay(backoff);
        backoff = Math.min(backoff * 2, 5000);
      } finally {
        // Not awaited: a dropped call may never confirm the cancel.
        void subscription.unsubscribe().catch(() => undefined);
      }
    }
  }

  private async inside(run: () => unknown): Promise<void> {
    await EventStoreDbSubscription.handlers.run(this, run);
  }
}

type QueueItem =
  | { kind: 'event'; event: AllStreamResolvedEvent }
  | { kind: 'caught-up' }
  | { kind: 'error'; error: unknown }
  | { kind: 'end' };

/**
 * The client's stream events in arrival order, so that `caught up` sits exactly between the
 * history and the first live event. The stream is paused while the queue is long.
 */
class SubscriptionQueue {
  private static readonly HIGH_WATER = 1000;
  private readonly items: QueueItem[] = [];
  private waiting: (() => void) | undefined;

  constructor(private readonly subscription: AllStreamSubscription) {
    subscription.on('data', (event: AllStreamResolvedEvent) => this.push({ kind: 'event', event }));
    subscription.on('caughtUp', () => this.push({ kind: 'caught-up' }));
    subscription.on('error', (error: unknown) => this.push({ kind: 'error', error }));
    subscription.on('end', () => this.push({ kind: 'end' }));
  }

  async next(onWait: (wake: () => void) => void): Promise<QueueItem> {
    while (this.items.length === 0) {
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
        onWait(resolve);
      });
      if (this.items.length === 0) return { kind: 'end' };
    }
    const item = this.items.shift()!;
    if (this.items.length < SubscriptionQueue.HIGH_WATER / 2 && this.subscription.isPaused()) {
      this.subscription.resume();
    }
    return item;
  }

  private push(item: QueueItem): void {
    this.items.push(item);
    if (this.items.length >= SubscriptionQueue.HIGH_WATER) this.subscription.pause();
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.();
  }
}

function toExpectedRevision(expected: ExpectedRevision): typeof NO_STREAM | typeof ANY | bigint {
  if (expected === 'no_stream') return NO_STREAM;
  if (expected === 'any') return ANY;
  return expected;
}

function toActualRevision(error: WrongExpectedVersionError): bigint {
  const actual = error.actualVersion;
  return typeof actual === 'bigint' ? actual : NO_REVISION;
}

/** A ledger event, or undefined for system events, snapshots and unresolved links. */
function toRecordedEvent(
  resolved: ResolvedEvent | AllStreamResolvedEvent,
): RecordedEvent | undefined {
  const event = resolved.event;
  if (event === undefined) return undefined;
  if (event.streamId.startsWith('$') || event.type.startsWith('$')) return undefined;
  if (event.streamId.startsWith(SNAPSHOT_PREFIX)) return undefined;
  if (event.position === undefined) {
    // Servers before 22.6 leave positions out of stream reads; the ledger needs them.
    throw new Error('EventStoreDB sent an event without its position: use a server >= 22.6');
  }
  return {
    eventId: event.id,
    type: event.type,
    streamId: event.streamId,
    revision: event.revision,
    position: toPortPosition(event.position),
    data: event.data as unknown,
    metadata: event.metadata as unknown as EventMetadata,
  };
}

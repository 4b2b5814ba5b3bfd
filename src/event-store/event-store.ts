/**
 * The event-store port. Adapters (sqlite, later postgres and eventstoredb) implement it and
 * pass one contract suite (test/contract). Revisions are per stream and start at 0n; positions
 * are global, strictly increasing, and always bigint so that no store's position can round.
 */

import type { Actor } from '../ledger/actor';

export type { Actor, ActorKind } from '../ledger/actor';

export interface EventMetadata {
  eventId: string;
  occurredAt: string;
  actor: Actor;
  correlationId: string;
  causationId: string;
}

/** An event about to be appended: the store assigns revision and position. */
export interface NewEvent {
  eventId: string;
  type: string;
  data: unknown;
  metadata: EventMetadata;
}

export interface RecordedEvent {
  eventId: string;
  type: string;
  streamId: string;
  revision: bigint;
  position: bigint;
  data: unknown;
  metadata: EventMetadata;
}

/**
 * What the writer believes the stream looks like: `no_stream` (must not exist yet),
 * `any`, or the revision of the stream's last event.
 */
export type ExpectedRevision = 'no_stream' | 'any' | bigint;

/** The revision of an empty stream, as appends report it. */
export const NO_REVISION = -1n;

export interface AppendResult {
  /** Revision of the last event written (NO_REVISION if nothing was written). */
  nextExpectedRevision: bigint;
  /** Global position of the last event written. */
  position: bigint;
}

export interface ReadStreamOptions {
  direction?: 'forwards' | 'backwards';
  /** Inclusive; defaults to the first (forwards) or last (backwards) event. */
  fromRevision?: bigint;
  maxCount?: number;
}

export interface ReadAllOptions {
  /** Exclusive: events strictly after this position. 0n reads from the start. */
  fromPosition?: bigint;
  maxCount?: number;
}

export interface SubscribeOptions {
  /** Exclusive, as for readAll. */
  fromPosition?: bigint;
  /** Only streams whose id starts with one of these prefixes. */
  streamPrefixes?: string[];
  /**
   * Only events of these types. A store read by position skips the others without reading
   * them, so a subscriber that cares about a few rare types does not pay for the history.
   */
  eventTypes?: string[];
  /** Called once when the subscription first reaches the end of the store. */
  onCaughtUp?: () => void | Promise<void>;
  onError?: (error: unknown) => void;
}

export type EventHandler = (event: RecordedEvent) => void | Promise<void>;

export interface Subscription {
  /**
   * Stops delivering; resolves once the handler in progress (if any) has finished. Called
   * from inside the subscription's own handler it resolves at once (waiting would deadlock)
   * and no further event is delivered.
   */
  stop(): Promise<void>;
}

/** Thrown when the expected revision does not match the stream. */
export class WrongExpectedRevisionError extends Error {
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedRevision,
    readonly actual: bigint,
  ) {
    super(`stream ${streamId}: expected revision ${String(expected)}, actual ${actual.toString()}`);
    this.name = 'WrongExpectedRevisionError';
  }
}

/**
 * Thrown when an appended event's id is already in the store (or twice in one append); the
 * whole append is rejected and nothing of it is written.
 */
export class DuplicateEventIdError extends Error {
  constructor(
    readonly streamId: string,
    readonly eventId: string,
  ) {
    super(`stream ${streamId}: event ${eventId} is already in the store`);
    this.name = 'DuplicateEventIdError';
  }
}

export interface EventStore {
  appendToStream(
    streamId: string,
    events: NewEvent[],
    expected: ExpectedRevision,
  ): Promise<AppendResult>;
  /** An empty array when the stream does not exist. */
  readStream(streamId: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  readAll(options?: ReadAllOptions): Promise<RecordedEvent[]>;
  /** Catch-up from `fromPosition`, then live; the handler is awaited, one event at a time. */
  subscribeToAll(handler: EventHandler, options?: SubscribeOptions): Subscription;
  /** Position of the newest event in the store (0n when empty). */
  headPosition(): Promise<bigint>;
  /** A cheap check that the store answers, for /health. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The event a stream must end with for an append to go on after it. */
export interface AppendAfter {
  revision: bigint;
  eventId: string;
}

/**
 * A store that writes one process's appends in the order they were asked (the embedded
 * SQLite store, through its one writer), and can make an append depend on the event it goes
 * after. The write pipeline then sends a stream's next batch while the one before is still
 * being written.
 */
export interface OrderedAppends {
  /**
   * As `appendToStream` with `after.revision` expected, and only if the stream's event at
   * that revision is `after.eventId`; else WrongExpectedRevisionError. A batch decided on top
   * of one still being written is never written after somebody else's events, even when they
   * are as many.
   */
  appendAfter(streamId: string, events: NewEvent[], after: AppendAfter): Promise<AppendResult>;
}

export function appendsInOrder(store: EventStore): store is EventStore & OrderedAppends {
  return typeof (store as Partial<OrderedAppends>).appendAfter === 'function';
}

export const EVENT_STORE = Symbol('EVENT_STORE');

/** Latest saved state of a stream, so that loading never reads a whole history. */
export interface Snapshot {
  streamId: string;
  revision: bigint;
  position: bigint;
  schemaVersion: number;
  state: string;
  /**
   * Pieces of the state that several snapshots of the stream share, such as a settled tier
   * of runs: written with the first snapshot that lists them and kept while each later one
   * lists them again, so that a snapshot writes what changed, not the whole state. Loading
   * gives every part with its text; the state refers to them by key.
   */
  parts: SnapshotPart[];
}

export interface SnapshotPart {
  key: string;
  /** Left out when the stream's stored snapshot already holds a part of this key. */
  text?: string;
}

/**
 * A snapshot listed a part without its text, and the stream's stored snapshot does not hold
 * it (another process saved a snapshot without it meanwhile, say). Nothing was saved.
 */
export class SnapshotPartsMissingError extends Error {
  constructor(
    readonly streamId: string,
    readonly keys: string[],
  ) {
    super(`the stored snapshot of ${streamId} holds no part ${keys.join(', ')}`);
    this.name = 'SnapshotPartsMissingError';
  }
}

export interface SnapshotStore {
  loadSnapshot(streamId: string): Promise<Snapshot | undefined>;
  /**
   * Replaces the stream's snapshot, all of it or nothing: the new parts are stored, and parts
   * the snapshot no longer lists are dropped. SnapshotPartsMissingError when a part without
   * text is not already stored for the stream.
   */
  saveSnapshot(snapshot: Snapshot): Promise<void>;
}
export const SNAPSHOT_STORE = Symbol('SNAPSHOT_STORE');

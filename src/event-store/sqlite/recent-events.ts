import type { NewEvent, RecordedEvent } from '../event-store';

/**
 * What this instance just committed, for the readers that follow right behind it: they take
 * it from memory instead of reading it back from the file. Kept as written, column by column;
 * a RecordedEvent is built only for the reader that takes it. The request thread's one reader
 * (the follow-ups) wants a few types, and building and freezing every charge for it was 5%
 * of that thread's time in the hot bench. Positions have no gaps, so a gap means another
 * connection wrote in between: then it starts over, and readers before the first kept
 * position read the file.
 */
export class RecentEvents {
  private events: NewEvent[] = [];
  private streams: string[] = [];
  /** Revisions as numbers: a stream would need 2^53 events to lose one. */
  private revisions: number[] = [];
  /** Position of `events[0]`. */
  private first = 0n;

  constructor(
    /** Events kept at most; past it, the older half is let go. */
    private readonly capacity: number,
  ) {}

  get length(): number {
    return this.events.length;
  }

  /** An append's events, committed at `firstPosition` and `firstRevision` onwards. */
  keep(streamId: string, events: NewEvent[], firstRevision: bigint, firstPosition: bigint) {
    if (events.length === 0) return;
    if (this.events.length > 0 && this.first + BigInt(this.events.length) !== firstPosition) {
      this.events = [];
      this.streams = [];
      this.revisions = [];
    }
    if (this.events.length === 0) this.first = firstPosition;
    const revision = Number(firstRevision);
    for (let i = 0; i < events.length; i++) {
      this.events.push(events[i]);
      this.streams.push(streamId);
      this.revisions.push(revision + i);
    }
    if (this.events.length > this.capacity) {
      const from = this.events.length - this.capacity / 2;
      this.events = this.events.slice(from);
      this.streams = this.streams.slice(from);
      this.revisions = this.revisions.slice(from);
      this.first += BigInt(from);
    }
  }

  /** Where the events after `afterPosition` start, if the first of them is kept. */
  indexAfter(afterPosition: bigint): number | undefined {
    if (this.events.length === 0 || afterPosition < this.first - 1n) return undefined;
    const start = Number(afterPosition - this.first + 1n);
    return start < this.events.length ? start : undefined;
  }

  type(index: number): string {
    return this.events[index].type;
  }

  position(index: number): bigint {
    return this.first + BigInt(index);
  }

  /** Kept event `index` as read from the store. */
  recorded(index: number): RecordedEvent {
    const { eventId, type, data, metadata } = this.events[index];
    return deepFreeze({
      eventId,
      type,
      streamId: this.streams[index],
      revision: BigInt(this.revisions[index]),
      position: this.position(index),
      data,
      metadata,
    });
  }
}

/**
 * Readers share the kept events' data (and the writer its state): frozen, so that a reader
 * that changed one would fail at once instead of changing what the others see.
 */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

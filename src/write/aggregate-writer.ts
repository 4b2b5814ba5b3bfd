import { setImmediate as nextTurn } from 'node:timers/promises';
import { LRUCache } from 'lru-cache';
import type { Actor } from '../ledger/actor';
import { unavailable } from '../ledger/errors';
import {
  appendsInOrder,
  NO_REVISION,
  WrongExpectedRevisionError,
  type AppendResult,
  type EventStore,
  type NewEvent,
  type OrderedAppends,
  type RecordedEvent,
  SnapshotPartsMissingError,
  type SnapshotStore,
} from '../event-store/event-store';
import type { AggregateType, DomainEvent, SnapshotOf } from './aggregate';
import type { Clock } from './clock';
import { newEventId } from './event-ids';

/** Who asked, and which request it was part of: stamped on every event it causes. */
export interface CommandContext {
  actor: Actor;
  correlationId: string;
  causationId?: string;
}

/** An aggregate as the writer holds it: its state and where its stream stands. */
export interface Loaded<State> {
  state: State;
  revision: bigint;
  position: bigint;
  /** Revision of the newest snapshot, NO_REVISION if none. */
  snapshotRevision: bigint;
  /**
   * Keys of the parts the stream's stored snapshot holds, as far as this process knows: a
   * snapshot sends only the others' texts. One set, shared by the stream's later states.
   */
  storedParts: Set<string>;
}

export interface Outcome<State, Event> {
  /** The state right after this command (later commands of the batch not yet applied). */
  state: State;
  events: Event[];
  /** True when the command had already been carried out and changed nothing now. */
  replayed: boolean;
}

export interface Written<Answer> {
  answer: Answer;
  /** Global position of the batch's write, for read-your-writes (`?minPosition=`). */
  position: bigint;
}

interface Pending<State, Command, Event> {
  command: Command;
  context: CommandContext;
  answer: (outcome: Outcome<State, Event>) => unknown;
  resolve: (written: Written<unknown>) => void;
  reject: (error: unknown) => void;
}

/** What the last batch sent leaves, and the last event it writes (the next goes on after it). */
interface Tip<State> {
  loaded: Loaded<State>;
  lastEventId?: string;
}

/** A batch decided and on its way to the store. */
interface Sent<State, Command, Event> {
  batch: Pending<State, Command, Event>[];
  events: NewEvent[];
  settled: ((position: bigint) => void)[];
  counts: Record<'written' | 'replayed' | 'rejected', number>;
  /** The state it leaves (its revision and position final once written). */
  tip: Tip<State>;
  /**
   * Set once the write is done, or at once when the batch had nothing to write (then with
   * neither field).
   */
  outcome?: { written?: AppendResult; error?: unknown };
}

/** One aggregate's commands waiting and batches in flight. */
interface Lane<State, Command, Event> {
  id: string;
  queue: Pending<State, Command, Event>[];
  /** Oldest first; `pipelineDepth` at most. */
  inFlight: Sent<State, Command, Event>[];
  /** Undefined when nothing is in flight and the state is to be loaded again. */
  tip?: Tip<State>;
  /** Conflicting writes in a row. */
  conflicts: number;
  /** In `due`: to be sent from at the next turn of the event loop. */
  due: boolean;
  /** Its state is being read from the store. */
  loading: boolean;
}

export interface WriterOptions {
  cacheSize: number;
  snapshotEvery: number;
  /**
   * Batches of one aggregate in flight at once, with a store that writes appends in order
   * (default 2); other stores write one batch at a time.
   */
  pipelineDepth?: number;
  /** Called for failures nobody is waiting on (a snapshot that could not be saved). */
  onBackgroundError?: (error: unknown) => void;
  observer?: WriterObserver;
  /** Time a large snapshot may take per event-loop turn (default 1 ms). */
  snapshotSliceMs?: number;
  /** Fault injection (crash tests): a batch of several commands is durable, nobody answered. */
  afterGroupAppend?: () => void;
}

/** What the pipeline reports, for metrics. */
export interface WriterObserver {
  decided(outcome: 'written' | 'replayed' | 'rejected' | 'failed', count: number): void;
  appended(commands: number, seconds: number): void;
  conflicted(): void;
  /** An aggregate not in the cache was loaded: from its snapshot (and the events after it), or from its events alone. */
  loaded(from: 'snapshot' | 'events', seconds: number): void;
}

/** Stream revisions may move under us when another process writes: redo the batch this often. */
const MAX_ATTEMPTS = 5;
const READ_PAGE = 1000;
/**
 * A snapshot that writes n entries is taken at most every n / 40 events (see
 * AggregateType.snapshots), so about 40 entries of snapshot per event at most. Not larger: a
 * cold load replays up to the interval, about 20 µs an event here (2,000 events after the
 * snapshot of the 1M-event bench organization took 33-48 ms to load, 500 took 16-26 ms).
 */
const SNAPSHOT_SIZE_DIVISOR = 40;

/** Events between two snapshots of a state of `size` entries. */
export function snapshotInterval(snapshotEvery: number, size: number): number {
  return Math.max(snapshotEvery, Math.ceil(size / SNAPSHOT_SIZE_DIVISOR));
}
/**
 * A slice held every request that arrived meanwhile: latency at 5,500 charges/s, 6 rounds
 * alternated, p99 19.1-23.8 ms with 4 ms slices against 11.6-14.6 with 1 ms (0.5 ms: 11.9-
 * 24.2), the same CPU a charge; hot 11,725-12,019 charges/s against 11,762-12,648.
 */
const SNAPSHOT_SLICE_MS = 1;
/** Commands waiting, with nothing in flight, from which a batch goes out in two halves. */
const SPLIT_FROM = 16;

/**
 * The write pipeline of one aggregate type: one queue per aggregate id, group commit.
 * Every command waiting is decided in order on the running state, and all their events are
 * appended in a single write with the expected revision. Each caller gets its own answer, only
 * after the write is durable; a rejected command fails alone.
 */
export class AggregateWriter<State, Command, Event extends DomainEvent> {
  /** The aggregates with commands waiting or batches in flight. */
  private readonly lanes = new Map<string, Lane<State, Command, Event>>();
  /** Lanes that got commands this turn: all sent from in one callback at the next. */
  private due: Lane<State, Command, Event>[] = [];
  private readonly cache: LRUCache<string, Loaded<State>>;
  /** Streams whose snapshot is being written a slice at a time. */
  private readonly snapshotting = new Map<string, Promise<void>>();
  /** With a store that writes appends in order, batches are pipelined (see `pump`). */
  private readonly ordered: (EventStore & OrderedAppends) | undefined;
  private readonly pipelineDepth: number;

  constructor(
    private readonly type: AggregateType<State, Command, Event>,
    private readonly store: EventStore,
    private readonly snapshots: SnapshotStore | undefined,
    private readonly clock: Clock,
    private readonly options: WriterOptions,
  ) {
    this.cache = new LRUCache({ max: options.cacheSize });
    this.ordered = appendsInOrder(store) ? store : undefined;
    this.pipelineDepth = this.ordered ? Math.max(1, options.pipelineDepth ?? 2) : 1;
  }

  /** Runs `command` against aggregate `id`; `answer` turns its outcome into the reply. */
  execute<Answer>(
    id: string,
    command: Command,
    context: CommandContext,
    answer: (outcome: Outcome<State, Event>) => Answer,
  ): Promise<Written<Answer>> {
    return new Promise<Written<unknown>>((resolve, reject) => {
      let lane = this.lanes.get(id);
      if (lane === undefined) {
        lane = { id, queue: [], inFlight: [], conflicts: 0, due: false, loading: false };
        this.lanes.set(id, lane);
      }
      lane.queue.push({ command, context, answer, resolve, reject });
      this.markDue(lane);
    }) as Promise<Written<Answer>>;
  }

  /** As `execute`, with the write's position folded into the answer. */
  async reply<Answer extends object>(
    id: string,
    command: Command,
    context: CommandContext,
    answer: (outcome: Outcome<State, Event>) => Answer,
  ): Promise<Answer & { position: bigint }> {
    const { answer: made, position } = await this.execute(id, command, context, answer);
    // `answer` made this object for this command alone: the position goes into it. A copy
    // with it (an object spread) cost 0.7 µs a charge, V8's slow path.
    const answered = made as Answer & { position: bigint };
    answered.position = position;
    return answered;
  }

  /** The current state (strongly consistent within this process). */
  async read(id: string): Promise<Loaded<State>> {
    return this.load(id);
  }

  /** Forget cached state, e.g. when a test or an operator rewrote the store. */
  evict(id: string): void {
    this.cache.delete(id);
  }

  /**
   * Requests read off one socket read reach their queues at different promise depths (each
   * is validated first): lanes are sent from at the next turn, so the first batch holds all
   * of them rather than the first alone, with the rest waiting a whole write behind it. One
   * callback for every lane due: spread over a thousand organizations nearly every charge is
   * a batch of its own, and a coroutine per lane (its own next-turn wait, a race between its
   * write and its next command) cost the request thread 0.067-0.077 ms a charge against
   * 0.063-0.070 now (spread bench, 3 rounds alternated).
   */
  private markDue(lane: Lane<State, Command, Event>): void {
    if (lane.due) return;
    lane.due = true;
    this.due.push(lane);
    if (this.due.length === 1) setImmediate(this.sendDue);
  }

  private readonly sendDue = () => {
    const lanes = this.due;
    this.due = [];
    for (const lane of lanes) {
      lane.due = false;
      this.pump(lane);
    }
  };

  /**
   * Answers the lane's batches that are written, oldest first, and sends what waits. With a
   * store that writes appends in order, the next batch is decided on the state the batch
   * being written will leave, and sent while it is written (pipelined, `pipelineDepth`
   * batches at most): the store's writer goes from one commit to the next without waiting
   * for this thread. Answers still go out in order, each only once its own write is durable;
   * a batch that fails takes the ones sent after it down with it (the store checks the event
   * each goes on after), and those are redone. Runs at each turn the lane is due and after
   * each of its writes.
   */
  private pump(lane: Lane<State, Command, Event>): void {
    this.answerWritten(lane);
    // Commands that arrived this turn wait for its end (sendDue) even if a write finishes
    // meanwhile, so that they go as one batch, not in pieces.
    while (
      !lane.due &&
      !lane.loading &&
      lane.queue.length > 0 &&
      lane.inFlight.length < this.pipelineDepth
    ) {
      if (lane.tip === undefined) {
        const cached = this.cache.get(lane.id);
        if (cached === undefined) {
          this.loadInto(lane);
          return;
        }
        lane.tip = { loaded: cached };
      }
      const batch = lane.queue.splice(0, this.batchSize(lane.queue, lane.inFlight));
      const sent = this.send(lane, lane.tip, batch);
      lane.inFlight.push(sent);
      lane.tip = sent.tip;
      // One with nothing to write is answered at once if nothing is ahead of it.
      if (sent.outcome !== undefined) this.answerWritten(lane);
    }
    const idle = lane.queue.length === 0 && lane.inFlight.length === 0 && !lane.loading;
    if (idle && this.lanes.get(lane.id) === lane) this.lanes.delete(lane.id);
  }

  /** Reads the lane's state from the store (it is not cached), then goes on sending. */
  private loadInto(lane: Lane<State, Command, Event>): void {
    lane.loading = true;
    this.load(lane.id).then(
      (loaded) => {
        lane.loading = false;
        lane.tip = { loaded };
        this.pump(lane);
      },
      (error: unknown) => {
        lane.loading = false;
        lane.queue.splice(0).forEach((pending) => pending.reject(storeUnavailable(error)));
        this.pump(lane);
      },
    );
  }

  /** Completes the lane's written batches, oldest first; after a failed one, redoes the rest. */
  private answerWritten(lane: Lane<State, Command, Event>): void {
    const { inFlight } = lane;
    while (inFlight.length > 0 && inFlight[0].outcome !== undefined) {
      const oldest = inFlight[0];
      const outcome = oldest.outcome!;
      if (outcome.written !== undefined || oldest.events.length === 0) {
        inFlight.shift();
        this.completed(lane.id, oldest, outcome.written);
        lane.conflicts = 0;
        continue;
      }
      // Every batch sent after this one was decided on its events: none of them can have been
      // written, unless this write's failure was not one (the store lost touch after its
      // commit). Once they are all done, whichever were written are answered, the rest
      // redone from the store.
      if (inFlight.some((sent) => sent.outcome === undefined)) return;
      inFlight.shift();
      const redo: Pending<State, Command, Event>[] = [];
      if (outcome.error instanceof WrongExpectedRevisionError) {
        this.options.observer?.conflicted();
        redo.push(...oldest.batch);
      } else {
        oldest.batch.forEach((pending) => pending.reject(storeUnavailable(outcome.error)));
        this.options.observer?.decided('failed', oldest.batch.length);
      }
      for (const follower of inFlight.splice(0)) {
        const { written } = follower.outcome!;
        if (written !== undefined) this.completed(lane.id, follower, written);
        else redo.push(...follower.batch);
      }
      this.cache.delete(lane.id);
      lane.tip = undefined;
      if (redo.length === 0) return;
      if (++lane.conflicts >= MAX_ATTEMPTS) {
        redo.forEach((pending) =>
          pending.reject(
            unavailable(`${this.type.name} ${lane.id} is being written by others; retry`),
          ),
        );
        this.options.observer?.decided('failed', redo.length);
        lane.conflicts = 0;
        return;
      }
      lane.queue.unshift(...redo);
    }
  }

  /**
   * The commands to send now: all that wait, but half of them when nothing is being written
   * and many wait, the other half going out right behind (pipelined). Callers who wait for
   * their answer before the next command (a closed loop, the bench's 64 requesters) otherwise
   * all land in one batch, and this thread and the writer take turns idling: one decides
   * while the other commits. Halves keep both busy, and the first half's callers answered a
   * commit earlier come back while the second half is written. Hot bench, 5 rounds
   * alternated: cores idle 26-30% -> 19-22%, the same CPU a charge.
   */
  private batchSize(queue: unknown[], inFlight: unknown[]): number {
    const split = this.pipelineDepth > 1 && inFlight.length === 0 && queue.length >= SPLIT_FROM;
    return split ? Math.ceil(queue.length / 2) : queue.length;
  }

  /**
   * Decides `batch` on `tip` and starts its write (none if it changes nothing); the lane is
   * pumped again once it is done.
   */
  private send(
    lane: Lane<State, Command, Event>,
    tip: Tip<State>,
    batch: Pending<State, Command, Event>[],
  ): Sent<State, Command, Event> {
    const { state, events, settled, counts } = this.decideBatch(tip.loaded.state, batch);
    if (events.length === 0) {
      const same = { loaded: { ...tip.loaded, state }, lastEventId: tip.lastEventId };
      return { batch, events, settled, counts, tip: same, outcome: {} };
    }
    const streamId = this.type.streamId(lane.id);
    const { revision } = tip.loaded;
    const next: Loaded<State> = {
      state,
      // Revisions follow each other: the position is known once written.
      revision: revision + BigInt(events.length),
      position: tip.loaded.position,
      snapshotRevision: tip.loaded.snapshotRevision,
      storedParts: tip.loaded.storedParts,
    };
    const sent: Sent<State, Command, Event> = {
      batch,
      events,
      settled,
      counts,
      tip: { loaded: next, lastEventId: events[events.length - 1].eventId },
    };
    const started = performance.now();
    this.write(streamId, events, tip).then(
      (written) => {
        if (batch.length > 1) this.options.afterGroupAppend?.();
        this.options.observer?.appended(counts.written, (performance.now() - started) / 1000);
        sent.outcome = { written };
        this.pump(lane);
      },
      (error: unknown) => {
        sent.outcome = { error };
        this.pump(lane);
      },
    );
    return sent;
  }

  /** Appends `events` where `tip` left the stream: right after its last event if it knows it. */
  private write(streamId: string, events: NewEvent[], tip: Tip<State>): Promise<AppendResult> {
    const { revision } = tip.loaded;
    try {
      return tip.lastEventId !== undefined && this.ordered
        ? this.ordered.appendAfter(streamId, events, { revision, eventId: tip.lastEventId })
        : this.store.appendToStream(
            streamId,
            events,
            revision === NO_REVISION ? 'no_stream' : revision,
          );
    } catch (error) {
      // A store that throws rather than rejects still fails only this batch.
      return Promise.reject(error);
    }
  }

  /** A batch is durable (or changed nothing): cache its state and answer its callers. */
  private completed(id: string, sent: Sent<State, Command, Event>, written?: AppendResult) {
    if (written === undefined) {
      // Decided on what the batches before it left, all of them durable by now.
      const position = this.cache.get(id)?.position ?? sent.tip.loaded.position;
      sent.settled.forEach((settle) => settle(position));
      this.report(sent.counts);
      return;
    }
    const loaded = sent.tip.loaded;
    loaded.revision = written.nextExpectedRevision;
    loaded.position = written.position;
    // A snapshot taken meanwhile (by the batch before) is the newer base.
    const previous = this.cache.get(id);
    if (previous && previous.snapshotRevision > loaded.snapshotRevision) {
      loaded.snapshotRevision = previous.snapshotRevision;
    }
    this.cache.set(id, loaded);
    sent.settled.forEach((settle) => settle(written.position));
    this.report(sent.counts);
    this.maybeSnapshot(this.type.streamId(id), loaded);
  }

  private report(counts: Record<'written' | 'replayed' | 'rejected', number>) {
    const observer = this.options.observer;
    if (!observer) return;
    for (const outcome of ['written', 'replayed', 'rejected'] as const) {
      if (counts[outcome] > 0) observer.decided(outcome, counts[outcome]);
    }
  }

  /** Decides each command on the state left by the ones before it. */
  private decideBatch(initial: State, batch: Pending<State, Command, Event>[]) {
    const now = this.clock.now();
    let state = initial;
    const events: NewEvent[] = [];
    const settled: ((position: bigint) => void)[] = [];
    const counts = { written: 0, replayed: 0, rejected: 0 };
    for (const pending of batch) {
      try {
        const decided = this.type.decide(pending.command, state, now);
        let next = state;
        for (const event of decided) next = this.type.evolve(next, event);
        const answer = pending.answer({
          state: next,
          events: decided,
          replayed: decided.length === 0,
        });
        state = next;
        events.push(...decided.map((event) => toNewEvent(event, pending.context)));
        settled.push((position) => pending.resolve({ answer, position }));
        counts[decided.length === 0 ? 'replayed' : 'written']++;
      } catch (error) {
        settled.push(() => pending.reject(error));
        counts.rejected++;
      }
    }
    return { state, events, settled, counts };
  }

  private async load(id: string): Promise<Loaded<State>> {
    const cached = this.cache.get(id);
    if (cached) return cached;
    const started = performance.now();
    const streamId = this.type.streamId(id);
    const loaded: Loaded<State> = (await this.loadSnapshot(streamId)) ?? {
      state: this.type.initialState(),
      revision: NO_REVISION,
      position: 0n,
      snapshotRevision: NO_REVISION,
      storedParts: new Set(),
    };
    for (;;) {
      const page = await this.store.readStream(streamId, {
        fromRevision: loaded.revision + 1n,
        maxCount: READ_PAGE,
      });
      // Nobody else holds `loaded` until it is cached below: folded in place, not copied.
      for (const recorded of page) {
        loaded.state = this.type.evolve(loaded.state, fromRecorded<Event>(recorded));
        loaded.revision = recorded.revision;
        loaded.position = recorded.position;
      }
      if (page.length < READ_PAGE) break;
    }
    this.options.observer?.loaded(
      loaded.snapshotRevision === NO_REVISION ? 'events' : 'snapshot',
      (performance.now() - started) / 1000,
    );
    // A write may have finished while we read: keep whichever is newer.
    const meanwhile = this.cache.get(id);
    if (meanwhile && meanwhile.revision >= loaded.revision) return meanwhile;
    this.cache.set(id, loaded);
    return loaded;
  }

  /** The aggregate as its snapshot left it, if it has one this version reads. */
  private async loadSnapshot(streamId: string): Promise<Loaded<State> | undefined> {
    const snapshots = this.type.snapshots;
    if (!snapshots || !this.snapshots) return undefined;
    const snapshot = await this.snapshots.loadSnapshot(streamId);
    if (snapshot === undefined) return undefined;
    const { schemaVersion } = snapshot;
    if (
      schemaVersion !== snapshots.schemaVersion &&
      !snapshots.alsoReads?.includes(schemaVersion)
    ) {
      return undefined;
    }
    // A part without its text is left out: the state then names a part it cannot read.
    const parts = new Map<string, string>();
    for (const { key, text } of snapshot.parts) if (text !== undefined) parts.set(key, text);
    try {
      return {
        state: snapshots.deserialize(snapshot.state, schemaVersion, parts),
        revision: snapshot.revision,
        position: snapshot.position,
        snapshotRevision: snapshot.revision,
        storedParts: new Set(parts.keys()),
      };
    } catch (error) {
      // A snapshot that cannot be read is only a shortcut lost: the events are the record.
      this.options.onBackgroundError?.(error);
      return undefined;
    }
  }

  /** Resolves once the snapshots being written now are saved (or failed). */
  async snapshotsWritten(): Promise<void> {
    await Promise.all(this.snapshotting.values());
  }

  private maybeSnapshot(streamId: string, loaded: Loaded<State>) {
    const snapshots = this.type.snapshots;
    if (!snapshots || !this.snapshots || this.snapshotting.has(streamId)) return;
    const every = snapshotInterval(this.options.snapshotEvery, snapshots.size?.(loaded.state) ?? 0);
    if (loaded.revision - loaded.snapshotRevision < BigInt(every)) return;
    loaded.snapshotRevision = loaded.revision;
    const store = this.snapshots;
    const { revision, position, state, storedParts } = loaded;
    const budget = this.options.snapshotSliceMs ?? SNAPSHOT_SLICE_MS;
    const writing = (async () => {
      try {
        // From the next turn of the event loop, once this batch's answers have gone out; a
        // large state a few milliseconds per turn, so that requests keep being answered.
        const slices = snapshots.serialize(state);
        let step: IteratorResult<void, SnapshotOf>;
        do {
          await nextTurn();
          step = sliceFor(slices, budget);
        } while (!step.done);
        const { state: text, parts } = step.value;
        await store.saveSnapshot({
          streamId,
          revision,
          position,
          schemaVersion: snapshots.schemaVersion,
          state: text,
          parts: parts.map((part) => (storedParts.has(part.key) ? { key: part.key } : part)),
        });
        storedParts.clear();
        for (const part of parts) storedParts.add(part.key);
      } catch (error) {
        // Somebody else's snapshot dropped a part we took as stored: send every text next time.
        if (error instanceof SnapshotPartsMissingError) storedParts.clear();
        this.options.onBackgroundError?.(error);
      } finally {
        this.snapshotting.delete(streamId);
      }
    })();
    this.snapshotting.set(streamId, writing);
  }
}

/** Runs a snapshot's slices for `budgetMs`, at least one. */
function sliceFor<Result>(
  slices: Generator<void, Result, void>,
  budgetMs: number,
): IteratorResult<void, Result> {
  const until = performance.now() + budgetMs;
  let step = slices.next();
  while (!step.done && performance.now() < until) step = slices.next();
  return step;
}

function toNewEvent(event: DomainEvent, context: CommandContext): NewEvent {
  const eventId = newEventId();
  return {
    eventId,
    type: event.type,
    data: event.data,
    metadata: {
      eventId,
      occurredAt: event.occurredAt,
      actor: context.actor,
      correlationId: context.correlationId,
      causationId: context.causationId ?? context.correlationId,
    },
  };
}

export function fromRecorded<Event extends DomainEvent>(recorded: RecordedEvent): Event {
  return {
    type: recorded.type,
    data: recorded.data,
    occurredAt: recorded.metadata.occurredAt,
  } as Event;
}

function storeUnavailable(error: unknown) {
  return unavailable('the event store could not take the write', {
    cause: error instanceof Error ? error.message : String(error),
  });
}

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { RecentEvents } from './recent-events';
import { SAFETY_VALVE_PAGES, WalCheckpointer } from './wal-checkpointer';
import {
  type AppendRequest,
  type BatchOutcome,
  type BatchWriter,
  type PartPiece,
  prepareWriteConnection,
  SNAPSHOT_PARTS_MISSING,
  SqliteWriter,
  SqliteWriterThread,
  type SnapshotWrite,
  type WriteFailure,
  writeHere,
} from './sqlite-writer';
import {
  type AppendAfter,
  type AppendResult,
  DuplicateEventIdError,
  type EventHandler,
  type EventMetadata,
  type EventStore,
  type ExpectedRevision,
  type NewEvent,
  type OrderedAppends,
  type ReadAllOptions,
  type ReadStreamOptions,
  type RecordedEvent,
  type Snapshot,
  SnapshotPartsMissingError,
  type SnapshotStore,
  type SubscribeOptions,
  type Subscription,
  WrongExpectedRevisionError,
} from '../event-store';
import { checkedMaxCount } from '../adapter-support';
import {
  AppendSignal,
  type PageOfTypes,
  PollingSubscription,
  type PollingSource,
} from '../polling-subscription';

export interface SqliteEventStoreOptions {
  /** Events read per query while a subscription catches up. */
  pageSize?: number;
  /** How often an idle subscription looks for events appended by other processes. */
  pollIntervalMs?: number;
  /** How long a write waits for another connection's write lock before failing. */
  busyTimeoutMs?: number;
  /**
   * `full` (the default): an append is on disk when it returns. `off` only for building
   * bench datasets: appends are not durable, a crash can lose them.
   */
  synchronous?: 'full' | 'off';
  /**
   * `background`: the log is copied back into the file by a thread of its own (the service);
   * `inline` (the default): by SQLite, inside the commit that fills it.
   */
  walCheckpoints?: 'inline' | 'background';
  /**
   * Run SQLite's quick_check on open (the default). A second connection to a file the
   * service has already opened and checked (the read side's) skips it.
   */
  integrityCheck?: boolean;
  /**
   * `thread`: commits (and their fsync) run in a thread of their own, so the event loop goes
   * on meanwhile (the service); `inline` (the default): on the caller's thread.
   */
  writes?: 'inline' | 'thread';
  /**
   * Positions a subscription to some event types looks at per read, at most: the scan is
   * synchronous, and a long history skipped in one go would hold the event loop (50,000,
   * about 10 ms).
   */
  typesScanWindow?: number;
}

interface AskedAppend {
  streamId: string;
  events: NewEvent[];
  expected: ExpectedRevision;
  afterEventId?: string;
}

/** What waits for the writer's next batch, and its caller: one shape for every queue. */
interface Queued<Item, Result> {
  item: Item;
  resolve: (result: Result) => void;
  reject: (error: unknown) => void;
}

type QueuedAppend = Queued<AskedAppend, AppendResult>;
type QueuedSnapshot = Queued<SnapshotWrite, void>;
type QueuedPiece = Queued<PartPiece, void>;

interface EventRow {
  position: bigint;
  event_id: string;
  stream_id: string;
  revision: bigint;
  type: string;
  data: string;
  metadata: string;
}

interface SnapshotRow {
  stream_id: string;
  revision: bigint;
  position: bigint;
  schema_version: bigint;
  state: string;
}

interface SnapshotPartRow {
  part_key: string;
  text: string;
  /** Set when the text is kept as that many pieces (see PIECE_LENGTH). */
  pieces: bigint | null;
}

/** Each entry brings a database at user_version i to i + 1; never edit one that shipped. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE events (
     position INTEGER PRIMARY KEY AUTOINCREMENT,
     event_id TEXT NOT NULL UNIQUE,
     stream_id TEXT NOT NULL,
     revision INTEGER NOT NULL,
     type TEXT NOT NULL,
     data TEXT NOT NULL,
     metadata TEXT NOT NULL,
     UNIQUE (stream_id, revision)
   ) STRICT;
   CREATE TABLE streams (
     stream_id TEXT PRIMARY KEY,
     revision INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE snapshots (
     stream_id TEXT PRIMARY KEY,
     revision INTEGER NOT NULL,
     position INTEGER NOT NULL,
     schema_version INTEGER NOT NULL,
     state TEXT NOT NULL
   ) STRICT;`,
  // A rowid table, not WITHOUT ROWID: parts are large texts, which that layout stores badly.
  `CREATE TABLE snapshot_parts (
     stream_id TEXT NOT NULL,
     part_key TEXT NOT NULL,
     text TEXT NOT NULL,
     PRIMARY KEY (stream_id, part_key)
   ) STRICT;`,
  // A long part's text as pieces, each written in a commit of its own (see PIECE_LENGTH).
  `ALTER TABLE snapshot_parts ADD COLUMN pieces INTEGER;
   CREATE TABLE snapshot_part_pieces (
     stream_id TEXT NOT NULL,
     part_key TEXT NOT NULL,
     piece INTEGER NOT NULL,
     text TEXT NOT NULL,
     PRIMARY KEY (stream_id, part_key, piece)
   ) STRICT;`,
  // A stream's revision is read from its events (the (stream_id, revision) index).
  `DROP TABLE IF EXISTS streams;`,
];

/**
 * Characters of a snapshot part's text that go to the writer in one commit at most. A part
 * is written in one go otherwise, and every append waits for it: a settled tier of 8,192 runs
 * is 2.2 MB, and a commit with one took 8-18 ms against 0.24 ms at the median (latency bench
 * at 8,800 charges/s); the tiers above it are 4 and 16 times larger. Longer texts go as
 * pieces of this length, one a commit, ahead of the snapshot that lists them.
 */
export const PIECE_LENGTH = 256 * 1024;

/**
 * Batches handed to the writer at once: one committing and the next. Two took the share of
 * charges the service answered within 10 ms at 4,000/s from 86.9-95.1% to 89.3-96.1% (four
 * rounds, alternated) and the hot scenario from 8,250 and 8,608/s to 8,877 and 9,082/s.
 */
const BATCHES_IN_FLIGHT = 2;
/**
 * Events waiting, with nothing being written, from which their appends go to the writer in
 * two batches: see writeQueued.
 */
const SPLIT_FROM = 16;

/** SQLite's largest integer: the open upper bound of a backwards read. */
const MAX_INT64 = 9223372036854775807n;
/** SQLite reads a negative LIMIT as "no limit". */
const NO_LIMIT = -1;

const DEFAULTS: Required<SqliteEventStoreOptions> = {
  pageSize: 500,
  pollIntervalMs: 500,
  busyTimeoutMs: 5000,
  synchronous: 'full',
  walCheckpoints: 'inline',
  integrityCheck: true,
  writes: 'inline',
  typesScanWindow: 50_000,
};

/**
 * The embedded event store: one SQLite file in WAL mode with synchronous=FULL, so an append
 * is on disk when its promise resolves. better-sqlite3 is synchronous; every method still
 * returns a promise so that callers code against the port, not against this adapter.
 */
export class SqliteEventStore implements EventStore, OrderedAppends, SnapshotStore, PollingSource {
  private readonly db: Database.Database;
  private readonly options: Required<SqliteEventStoreOptions>;
  private readonly subscriptions = new Set<PollingSubscription>();
  /** Woken after each append of this instance, so local subscribers need not wait a poll. */
  private readonly appended = new AppendSignal();
  private closing: Promise<void> | undefined;

  private readonly statements: ReturnType<SqliteEventStore['prepareStatements']>;
  private readonly writer: BatchWriter;
  private queuedAppends: QueuedAppend[] = [];
  private queuedSnapshots: QueuedSnapshot[] = [];
  private queuedPieces: QueuedPiece[] = [];
  private writeScheduled = false;
  /** The batches handed to the writer and not answered yet (BATCHES_IN_FLIGHT at most). */
  private readonly writes = new Set<Promise<void>>();
  private stopCheckpoints?: () => Promise<void>;
  /** The last events this instance committed, positions without gaps. */
  private readonly recent = new RecentEvents(RECENT_EVENTS);

  /** `filename` is a path (its folder is created if missing) or ':memory:'. */
  constructor(
    readonly filename: string,
    options: SqliteEventStoreOptions = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
    if (filename !== ':memory:' && filename !== '') {
      mkdirSync(dirname(filename), { recursive: true });
    }
    this.db = new Database(filename);
    try {
      if (this.options.integrityCheck) this.assertIntact();
      const background = this.options.walCheckpoints === 'background' && filename !== ':memory:';
      const connection = {
        durable: this.options.synchronous === 'full',
        busyTimeoutMs: this.options.busyTimeoutMs,
        walValvePages: background ? SAFETY_VALVE_PAGES : undefined,
      };
      prepareWriteConnection(this.db, connection);
      if (background) this.stopCheckpoints = WalCheckpointer.register(this.filename);
      this.migrate();
      this.statements = this.prepareStatements();
      this.writer =
        // A memory or temporary database belongs to its one connection: written here.
        this.options.writes === 'thread' && filename !== ':memory:' && filename !== ''
          ? new SqliteWriterThread({ ...connection, filename })
          : writeHere(new SqliteWriter(this.db, connection.durable));
    } catch (error) {
      this.db.close();
      throw error;
    }
  }

  /** The PRAGMA values in force, for tests and diagnostics. */
  pragmas(): { journalMode: string; synchronous: number; foreignKeys: boolean } {
    return {
      journalMode: String(this.db.pragma('journal_mode', { simple: true })),
      // 2 is FULL.
      synchronous: Number(this.db.pragma('synchronous', { simple: true })),
      foreignKeys: Number(this.db.pragma('foreign_keys', { simple: true })) === 1,
    };
  }

  /**
   * Appends asked for in the same turn of the event loop, or while the batch before was
   * being written (typically by many organizations' queues at once), share one transaction
   * and one fsync: group commit across streams. Each still succeeds or fails on its own, and
   * none resolves before the commit is on disk.
   */
  appendToStream(
    streamId: string,
    events: NewEvent[],
    expected: ExpectedRevision,
  ): Promise<AppendResult> {
    return this.queueAppend({ streamId, events, expected });
  }

  /** Appends are written in the order they were asked: one queue, one writer. */
  appendAfter(streamId: string, events: NewEvent[], after: AppendAfter): Promise<AppendResult> {
    return this.queueAppend({
      streamId,
      events,
      expected: after.revision,
      afterEventId: after.eventId,
    });
  }

  private queueAppend(append: AskedAppend): Promise<AppendResult> {
    return this.enqueue(this.queuedAppends, append);
  }

  /** Puts `item` in `queue` for the next batch; settles once that batch is committed. */
  private enqueue<Item, Result>(queue: Queued<Item, Result>[], item: Item): Promise<Result> {
    return new Promise((resolve, reject) => {
      this.assertOpen();
      queue.push({ item, resolve, reject });
      this.scheduleWrite();
    });
  }

  private scheduleWrite(): void {
    if (this.writeScheduled || this.writes.size >= BATCHES_IN_FLIGHT) return;
    this.writeScheduled = true;
    // The turn's other appends share the commit (sending at once to the writer thread
    // measured no faster).
    setImmediate(() => {
      this.writeScheduled = false;
      void this.writeQueued();
    });
  }

  /**
   * Writes everything waiting as one batch: batches are sized by what is waiting. The next
   * batch is handed over while one commits (BATCHES_IN_FLIGHT), so the writer goes from one
   * commit to the next without waiting for this thread to take the answer; it takes batches
   * in order, so positions still follow the order appends were asked in.
   *
   * Many events waiting with nothing being written (a wave: callers who each wait for their
   * answer) go as two batches, the second right behind the first, cut between two appends.
   * The first half's answers come a commit earlier and their callers' next requests are
   * decided while the second half commits, so the wave splits in two and this thread and the
   * writer stop taking turns idling. Spread bench, 3 rounds alternated: cores idle 25-28%
   * -> 13-16% of the load, charges/s 0.70-0.74 -> 0.81-0.87 of what the cores fit, for one
   * commit more a wave (writer thread 0.023 -> 0.025-0.032 ms a charge). A hot
   * organization's wave is two appends of half the wave each (see AggregateWriter.batchSize),
   * and counted by appends it went as one commit.
   */
  private async writeQueued(): Promise<void> {
    if (this.writes.size >= BATCHES_IN_FLIGHT) return;
    const appends: QueuedAppend[] = [];
    const requests: AppendRequest[] = [];
    // Written here, a batch is done before the next is taken: halves would only commit twice.
    const split = this.writer instanceof SqliteWriterThread && this.writes.size === 0;
    const taken = split ? firstHalf(this.queuedAppends) : this.queuedAppends.length;
    const rest = this.queuedAppends.slice(taken);
    for (const append of this.queuedAppends.slice(0, taken)) {
      try {
        requests.push(toAppendRequest(append.item));
        appends.push(append);
      } catch (error) {
        append.reject(error);
      }
    }
    const snapshots = this.queuedSnapshots;
    const pieces = this.takePieces();
    this.queuedAppends = rest;
    this.queuedSnapshots = [];
    if (this.somethingQueued()) this.scheduleWrite();
    if (appends.length === 0 && snapshots.length === 0 && pieces.length === 0) return;
    const writing = (async () => {
      const outcome = await this.writer.write({
        appends: requests,
        snapshots: snapshots.map((queued) => queued.item),
        ...(pieces.length === 0 ? {} : { pieces: pieces.map((queued) => queued.item) }),
      });
      this.settle(appends, snapshots, outcome, pieces);
    })();
    this.writes.add(writing);
    try {
      await writing;
    } finally {
      this.writes.delete(writing);
      if (this.somethingQueued()) this.scheduleWrite();
    }
  }

  /** The pieces for one batch: PIECE_LENGTH characters of them, at least one piece. */
  private takePieces(): QueuedPiece[] {
    let length = 0;
    let count = 0;
    for (const { item: piece } of this.queuedPieces) {
      if (count > 0 && length + piece.text.length > PIECE_LENGTH) break;
      length += piece.text.length;
      count += 1;
    }
    return this.queuedPieces.splice(0, count);
  }

  private somethingQueued(): boolean {
    return this.queuedAppends.length + this.queuedSnapshots.length + this.queuedPieces.length > 0;
  }

  private settle(
    appends: QueuedAppend[],
    snapshots: QueuedSnapshot[],
    outcome: BatchOutcome,
    pieces: QueuedPiece[],
  ) {
    if ('failed' in outcome) {
      const error = writeError(outcome.failed);
      appends.forEach((append) => append.reject(error));
      snapshots.forEach((snapshot) => snapshot.reject(error));
      pieces.forEach((piece) => piece.reject(error));
      return;
    }
    pieces.forEach((queued, index) => {
      const failure = outcome.pieces?.[index] ?? null;
      if (failure === null) queued.resolve();
      else queued.reject(writeError(failure));
    });
    let wrote = false;
    appends.forEach(({ item: append, resolve, reject }, index) => {
      const result = outcome.appends[index];
      if ('written' in result) {
        wrote ||= append.events.length > 0;
        this.remember(append.streamId, append.events, result.written);
        resolve(result.written);
      } else if ('conflict' in result) {
        reject(new WrongExpectedRevisionError(append.streamId, append.expected, result.conflict));
      } else if ('duplicateEventId' in result) {
        reject(new DuplicateEventIdError(append.streamId, result.duplicateEventId));
      } else {
        reject(writeError(result.failed));
      }
    });
    snapshots.forEach((queued, index) => {
      const failure = outcome.snapshots[index];
      if (failure === null) queued.resolve();
      else queued.reject(snapshotError(queued.item, failure));
    });
    if (wrote) this.appended.notify();
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    const limit = toLimit(options.maxCount);
    const rows =
      options.direction === 'backwards'
        ? this.statements.readStreamBackwards.all(
            streamId,
            options.fromRevision ?? MAX_INT64,
            limit,
          )
        : this.statements.readStreamForwards.all(streamId, options.fromRevision ?? 0n, limit);
    return rows.map(toRecordedEvent);
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    return this.readPage(options.fromPosition ?? 0n, toLimit(options.maxCount));
  }

  subscribeToAll(handler: EventHandler, options: SubscribeOptions = {}): Subscription {
    this.assertOpen();
    const subscription = new PollingSubscription(this, handler, options, this.options);
    this.subscriptions.add(subscription);
    void subscription.finished.then(() => this.subscriptions.delete(subscription));
    return subscription;
  }

  async headPosition(): Promise<bigint> {
    this.assertOpen();
    return this.statements.headPosition.get() as bigint;
  }

  async ping(): Promise<void> {
    this.assertOpen();
    this.statements.ping.get();
  }

  async loadSnapshot(streamId: string): Promise<Snapshot | undefined> {
    this.assertOpen();
    return this.statements.readSnapshot(streamId);
  }

  /**
   * Rides along with the next batch of appends, or goes alone without an fsync. A part
   * longer than PIECE_LENGTH goes first, a piece a batch, so that no commit holds the
   * appends for the whole of it; the snapshot then lists it by its number of pieces.
   */
  async saveSnapshot(snapshot: Snapshot): Promise<void> {
    this.assertOpen();
    const parts: SnapshotWrite['parts'] = [];
    for (const part of snapshot.parts) {
      if (part.text === undefined || part.text.length <= PIECE_LENGTH) {
        parts.push(part);
        continue;
      }
      const pieces = piecesOf(part.text);
      // Each piece waits for the one before: one piece a commit.
      for (const [piece, text] of pieces.entries()) {
        const { streamId } = snapshot;
        await this.enqueue(this.queuedPieces, { streamId, key: part.key, piece, text });
      }
      parts.push({ key: part.key, pieces: pieces.length });
    }
    return this.enqueue(this.queuedSnapshots, { ...snapshot, parts });
  }

  /** Stops every subscription (waiting for handlers in progress), then closes the file. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // What was asked before close() is still written.
      while (this.writes.size > 0 || this.somethingQueued()) {
        if (this.somethingQueued() && this.writes.size < BATCHES_IN_FLIGHT) {
          await this.writeQueued();
        } else {
          await Promise.race(this.writes);
        }
      }
      await this.writer.close();
      await Promise.all([...this.subscriptions].map((subscription) => subscription.stop()));
      await this.stopCheckpoints?.();
      this.db.close();
    })();
    return this.closing;
  }

  /** @internal Events strictly after `afterPosition`, in global order. */
  readPage(afterPosition: bigint, limit: number): RecordedEvent[] {
    const start = this.recent.indexAfter(afterPosition);
    if (start !== undefined) {
      const end =
        limit === NO_LIMIT ? this.recent.length : Math.min(start + limit, this.recent.length);
      const events: RecordedEvent[] = [];
      for (let i = start; i < end; i++) events.push(this.recent.recorded(i));
      return events;
    }
    return this.statements.readAll.all(afterPosition, limit).map(toRecordedEvent);
  }

  /** @internal Events of `types` after `afterPosition`, at most `typesScanWindow` further on. */
  readPageOfTypes(afterPosition: bigint, limit: number, types: readonly string[]): PageOfTypes {
    const start = this.recent.indexAfter(afterPosition);
    if (start !== undefined) {
      // Just written here: picked from memory, not scanned for again in the file (the
      // follow-ups' subscription did that after every append of a hot organization). Nor is
      // the head asked for: what another connection wrote after our last append is found
      // as its writes always are, by the next look (our next append, or the poll).
      const wanted = new Set(types);
      const events: RecordedEvent[] = [];
      let last = start - 1;
      for (let i = start; i < this.recent.length; i++) {
        if (limit !== NO_LIMIT && events.length >= limit) break;
        last = i;
        if (wanted.has(this.recent.type(i))) events.push(this.recent.recorded(i));
      }
      const scannedTo = last < start ? afterPosition : this.recent.position(last);
      return { events, scannedTo, more: last < this.recent.length - 1 };
    }
    // Later commits get higher positions: nothing can appear at or below this head after.
    const head = this.statements.headPosition.get() as bigint;
    const window = BigInt(this.options.typesScanWindow);
    const upTo = head - afterPosition > window ? afterPosition + window : head;
    const rows = this.statements.readAllOfTypes.all(
      afterPosition,
      upTo,
      JSON.stringify(types),
      limit,
    );
    return { events: rows.map(toRecordedEvent), scannedTo: upTo, more: upTo < head };
  }

  /** Keeps what this instance just committed (see RecentEvents). */
  private remember(streamId: string, events: NewEvent[], result: AppendResult): void {
    const count = BigInt(events.length);
    this.recent.keep(
      streamId,
      events,
      result.nextExpectedRevision - count + 1n,
      result.position - count + 1n,
    );
  }

  /** @internal Counts this instance's appends, so a subscriber can tell if it missed one. */
  get appendsSoFar(): number {
    return this.appended.appendsSoFar;
  }

  /** @internal Resolves after this instance's next append or after `timeoutMs`. */
  waitForAppend(timeoutMs: number): { wait: Promise<void>; cancel: () => void } {
    return this.appended.waitForAppend(timeoutMs);
  }

  /**
   * Refuses a damaged file before anything is written on top of it: without this the service
   * started, answered from what it could read and failed later on the pages that were broken.
   * quick_check reads every page once (no index cross-check), so it stays cheap at start.
   */
  private assertIntact(): void {
    let problems: string[];
    try {
      const rows = this.db.pragma('quick_check(5)') as { quick_check: string }[];
      problems = rows.map((row) => row.quick_check).filter((line) => line !== 'ok');
    } catch (error) {
      // A broken header or first page: SQLITE_NOTADB / SQLITE_CORRUPT before any check runs.
      const code = (error as { code?: unknown }).code;
      if (code !== 'SQLITE_NOTADB' && code !== 'SQLITE_CORRUPT') throw error;
      problems = [(error as Error).message];
    }
    if (problems.length > 0) throw new EventStoreDamagedError(this.filename, problems);
  }

  private migrate(): void {
    const migrate = this.db.transaction(() => {
      const version = Number(this.db.pragma('user_version', { simple: true }));
      if (version > MIGRATIONS.length) {
        throw new Error(
          `${this.filename} has event-store schema version ${version}; this build knows up to ${MIGRATIONS.length}`,
        );
      }
      for (let next = version; next < MIGRATIONS.length; next += 1) {
        this.db.exec(MIGRATIONS[next]);
        this.db.pragma(`user_version = ${next + 1}`);
      }
    });
    // IMMEDIATE so that two processes opening a new file do not both create the tables.
    migrate.immediate();
  }

  private prepareStatements() {
    const db = this.db;
    const loadSnapshot = db.prepare<[string], SnapshotRow>(
      `SELECT stream_id, revision, position, schema_version, state
       FROM snapshots WHERE stream_id = ?`,
    );
    const loadSnapshotParts = db.prepare<[string], SnapshotPartRow>(
      'SELECT part_key, text, pieces FROM snapshot_parts WHERE stream_id = ? ORDER BY part_key',
    );
    const loadPieces = db
      .prepare<[string, string, bigint], string>(
        `SELECT text FROM snapshot_part_pieces
         WHERE stream_id = ? AND part_key = ? AND piece < ? ORDER BY piece`,
      )
      .pluck();
    /** A part's text, or none if a piece is missing: the snapshot then cannot be read. */
    const textOf = (streamId: string, part: SnapshotPartRow): string | undefined => {
      if (part.pieces === null) return part.text;
      const pieces = loadPieces.all(streamId, part.part_key, part.pieces);
      return BigInt(pieces.length) === part.pieces ? pieces.join('') : undefined;
    };
    const eventColumns = 'position, event_id, stream_id, revision, type, data, metadata';
    return {
      headPosition: db.prepare<[], bigint>('SELECT coalesce(max(position), 0) FROM events').pluck(),
      readStreamForwards: db.prepare<[string, bigint, number], EventRow>(
        `SELECT ${eventColumns} FROM events
         WHERE stream_id = ? AND revision >= ? ORDER BY revision ASC LIMIT ?`,
      ),
      readStreamBackwards: db.prepare<[string, bigint, number], EventRow>(
        `SELECT ${eventColumns} FROM events
         WHERE stream_id = ? AND revision <= ? ORDER BY revision DESC LIMIT ?`,
      ),
      readAll: db.prepare<[bigint, number], EventRow>(
        `SELECT ${eventColumns} FROM events WHERE position > ? ORDER BY position ASC LIMIT ?`,
      ),
      readAllOfTypes: db.prepare<[bigint, bigint, string, number], EventRow>(
        `SELECT ${eventColumns} FROM events
         WHERE position > ? AND position <= ? AND type IN (SELECT value FROM json_each(?))
         ORDER BY position ASC LIMIT ?`,
      ),
      ping: db.prepare<[], unknown>('SELECT 1'),
      // One read transaction: the head and its parts come from the same save.
      readSnapshot: db.transaction((streamId: string): Snapshot | undefined => {
        const row = loadSnapshot.get(streamId);
        if (row === undefined) return undefined;
        return {
          streamId: row.stream_id,
          revision: row.revision,
          position: row.position,
          schemaVersion: Number(row.schema_version),
          state: row.state,
          parts: loadSnapshotParts.all(streamId).map((part) => {
            const text = textOf(streamId, part);
            return text === undefined ? { key: part.part_key } : { key: part.part_key, text };
          }),
        };
      }),
    };
  }

  private assertOpen(): void {
    if (this.closing !== undefined) throw new Error(`event store ${this.filename} is closed`);
  }
}

/**
 * Events kept in memory for the readers close behind (see RecentEvents). The follow-ups read
 * within a batch or two of each append. Kept longer, the events outlive two scavenges and die
 * in the old generation: the latency bench at 5,500/s promoted 905-943 KB a scavenge at 4,096
 * and 857-873 KB at 512 (3 rounds alternated), with as many full collections.
 */
const RECENT_EVENTS = 512;

function toRecordedEvent(row: EventRow): RecordedEvent {
  return {
    eventId: row.event_id,
    type: row.type,
    streamId: row.stream_id,
    revision: row.revision,
    position: row.position,
    data: JSON.parse(row.data) as unknown,
    metadata: JSON.parse(row.metadata) as EventMetadata,
  };
}

/**
 * `text` cut into pieces of PIECE_LENGTH characters, or one less where a cut would part a
 * surrogate pair: each piece is stored as UTF-8, where half a pair cannot be written.
 */
export function piecesOf(text: string): string[] {
  const pieces: string[] = [];
  let start = 0;
  while (start < text.length) {
    let end = Math.min(start + PIECE_LENGTH, text.length);
    if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1))) end -= 1;
    pieces.push(text.slice(start, end));
    start = end;
  }
  return pieces;
}

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;

/** The event's data and metadata as JSON, for the writer (possibly in another thread). */
function toAppendRequest({ streamId, events, expected, afterEventId }: AskedAppend): AppendRequest {
  return {
    streamId,
    expected,
    ...(afterEventId === undefined ? {} : { afterEventId }),
    events: events.map((event) => ({
      eventId: event.eventId,
      type: event.type,
      data: JSON.stringify(event.data),
      metadata: JSON.stringify(event.metadata),
    })),
  };
}

/**
 * How many of `appends` hold the first half of their events, when they hold SPLIT_FROM or
 * more and are more than one; all of them otherwise.
 */
function firstHalf(appends: QueuedAppend[]): number {
  let events = 0;
  for (const { item } of appends) events += item.events.length;
  if (appends.length < 2 || events < SPLIT_FROM) return appends.length;
  let taken = 0;
  for (let counted = 0; counted < events / 2; taken++) counted += appends[taken].item.events.length;
  return Math.min(taken, appends.length - 1);
}

/** A failed write as an Error again, with SQLite's code (SQLITE_FULL...) when it had one. */
function writeError(failure: WriteFailure): Error {
  return Object.assign(new Error(failure.message), failure.code ? { code: failure.code } : {});
}

/**
 * A failed snapshot save as an Error again: missing parts as the port's own error, made on
 * this side so that `instanceof` holds even when the writer ran in its thread.
 */
function snapshotError(snapshot: Snapshot, failure: WriteFailure): Error {
  return failure.code === SNAPSHOT_PARTS_MISSING
    ? new SnapshotPartsMissingError(snapshot.streamId, failure.keys ?? [])
    : writeError(failure);
}

function toLimit(maxCount: number | undefined): number {
  return checkedMaxCount(maxCount) ?? NO_LIMIT;
}

/** The event store's file fails SQLite's integrity check: nothing may start on top of it. */
export class EventStoreDamagedError extends Error {
  constructor(
    readonly filename: string,
    readonly problems: string[],
  ) {
    super(
      `event store ${filename} is damaged (${problems.join('; ').replace(/\s+/g, ' ')}); ` +
        'restore it from a backup or copy, the service does not start on a damaged file',
    );
    this.name = 'EventStoreDamagedError';
  }
}

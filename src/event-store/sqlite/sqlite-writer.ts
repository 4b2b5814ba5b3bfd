import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { workerScript } from '../../threads/worker-script';
import {
  type AppendResult,
  type ExpectedRevision,
  NO_REVISION,
  type Snapshot,
} from '../event-store';

/** One append as the writer takes it: its events' data and metadata already JSON. */
export interface AppendRequest {
  streamId: string;
  expected: ExpectedRevision;
  /** The id of the event at revision `expected`, when the append must go on after it. */
  afterEventId?: string;
  events: { eventId: string; type: string; data: string; metadata: string }[];
}

/** Why a write failed, as plain data: it may cross from a thread. */
export interface WriteFailure {
  message: string;
  code?: string;
  /** With SNAPSHOT_PARTS_MISSING: the keys listed without text that were not stored. */
  keys?: string[];
}

/** A snapshot listed parts without text that its stream does not hold: nothing was saved. */
export const SNAPSHOT_PARTS_MISSING = 'SNAPSHOT_PARTS_MISSING';

export type AppendOutcome =
  | { written: AppendResult }
  | { conflict: bigint }
  | { duplicateEventId: string }
  | { failed: WriteFailure };

/**
 * A snapshot as the writer takes it. A part is given by its text, by the number of pieces of
 * its text written before (`PartPiece`), or by neither when the stream's stored snapshot
 * holds it already.
 */
export interface SnapshotWrite extends Omit<Snapshot, 'parts'> {
  parts: { key: string; text?: string; pieces?: number }[];
}

/** One piece of a long part's text, written in a batch of its own ahead of its snapshot. */
export interface PartPiece {
  streamId: string;
  key: string;
  /** 0, 1, ...: the text is the pieces in this order. */
  piece: number;
  text: string;
}

/** What waits to be written: appends, and snapshots and pieces that ride along in the same commit. */
export interface WriteBatch {
  appends: AppendRequest[];
  snapshots: SnapshotWrite[];
  pieces?: PartPiece[];
}

/**
 * Each append's, snapshot's and piece's outcome, or the commit's failure (then nothing is
 * written).
 */
export type BatchOutcome =
  | {
      appends: AppendOutcome[];
      snapshots: (WriteFailure | null)[];
      pieces?: (WriteFailure | null)[];
    }
  | { failed: WriteFailure };

/**
 * Writes a batch in one IMMEDIATE transaction, so one fsync for all of it (group commit
 * across streams). Each append is a SAVEPOINT of its own: a conflict or a duplicate event id
 * undoes only that append. IMMEDIATE takes the write lock before any revision is read, so
 * two writers, even in two processes, never both append after the same revision. The same
 * code runs on the service's thread or in the writer's thread (`sqlite-writer.worker.ts`).
 */
export class SqliteWriter {
  private readonly statements: ReturnType<typeof prepareWrites>;
  private readonly commitGroup: (batch: WriteBatch) => BatchOutcome;
  private readonly commitGroupUnguarded: (batch: WriteBatch) => BatchOutcome;
  private readonly appendOne: (append: AppendRequest) => AppendResult;
  private readonly saveOne: (snapshot: SnapshotWrite) => void;
  private readonly savePieceOne: (piece: PartPiece) => void;

  constructor(
    private readonly db: Database.Database,
    private readonly durable: boolean,
  ) {
    this.statements = prepareWrites(db);
    this.appendOne = db.transaction((append: AppendRequest) => this.append(append));
    this.saveOne = db.transaction((snapshot: SnapshotWrite) => this.saveSnapshot(snapshot));
    this.savePieceOne = db.transaction(({ streamId, key, piece, text }: PartPiece) => {
      this.statements.savePiece.run(streamId, key, piece, text);
    });
    const group = (outcomeOf: (append: AppendRequest) => AppendOutcome) => {
      const transaction = db.transaction((batch: WriteBatch) => ({
        appends: batch.appends.map(outcomeOf),
        snapshots: batch.snapshots.map((snapshot) => failureIn(() => this.saveOne(snapshot))),
        ...(batch.pieces === undefined
          ? {}
          : { pieces: batch.pieces.map((piece) => failureIn(() => this.savePieceOne(piece))) }),
      }));
      return transaction.immediate.bind(transaction);
    };
    this.commitGroup = group((append) => this.outcomeOf(append));
    this.commitGroupUnguarded = group((append) => this.outcomeWithoutSavepoint(append));
  }

  write(batch: WriteBatch): BatchOutcome {
    // Snapshots alone need no fsync: one can always be rebuilt from the events, WAL mode with
    // NORMAL cannot corrupt the file, and the next append's commit syncs it anyway.
    const relaxed = this.durable && batch.appends.length === 0;
    if (relaxed) this.db.pragma('synchronous = NORMAL');
    try {
      try {
        return this.commitGroupUnguarded(batch);
      } catch (error) {
        // An append failed halfway (a duplicate event id, say) and the whole transaction was
        // rolled back: write the batch again, each append in its own SAVEPOINT this time.
        if (!(error instanceof Halfway)) throw error;
        return this.commitGroup(batch);
      }
    } catch (error) {
      // The commit itself failed (disk full, I/O error): nothing of the batch is durable.
      return { failed: failureOf(error) };
    } finally {
      if (relaxed) this.db.pragma('synchronous = FULL');
    }
  }

  private outcomeOf(append: AppendRequest): AppendOutcome {
    try {
      return { written: this.appendOne(append) };
    } catch (error) {
      if (error instanceof Conflict) return { conflict: error.actual };
      if (error instanceof DuplicateId) return { duplicateEventId: error.eventId };
      return { failed: failureOf(error) };
    }
  }

  /**
   * As `outcomeOf` without the SAVEPOINT, which cost as much as the inserts themselves (0.45
   * ms for 64 events here): a conflict is found before anything is written, and any failure
   * after the first insert throws `Halfway`, which rolls back the whole transaction.
   */
  private outcomeWithoutSavepoint(append: AppendRequest): AppendOutcome {
    try {
      return { written: this.append(append) };
    } catch (error) {
      if (error instanceof Conflict) return { conflict: error.actual };
      throw new Halfway();
    }
  }

  private append({ streamId, expected, afterEventId, events }: AppendRequest): AppendResult {
    const current = this.statements.streamRevision.get(streamId) ?? NO_REVISION;
    const matches =
      expected === 'any' ||
      (expected === 'no_stream' ? current === NO_REVISION : expected === current);
    if (!matches) throw new Conflict(current);
    if (
      afterEventId !== undefined &&
      this.statements.eventIdAt.get(streamId, current) !== afterEventId
    ) {
      throw new Conflict(current);
    }
    if (events.length === 0) {
      return { nextExpectedRevision: current, position: this.statements.headPosition.get()! };
    }
    let revision = current;
    let position = 0n;
    for (const event of events) {
      revision += 1n;
      try {
        // The position is the rowid. Not `RETURNING position`: inside the append's SAVEPOINT
        // that made each insert twice as slow (1.9 ms against 0.9 ms for 64 events here).
        position = this.statements.insertEvent.run(
          event.eventId,
          streamId,
          revision,
          event.type,
          event.data,
          event.metadata,
        ).lastInsertRowid as bigint;
      } catch (error) {
        if (isUniqueViolation(error, 'events.event_id')) throw new DuplicateId(event.eventId);
        throw error;
      }
    }
    return { nextExpectedRevision: revision, position };
  }

  /**
   * Runs in a SAVEPOINT of its own (`saveOne`), so a failure leaves the batch's appends and
   * the stream's stored snapshot as they were. Missing parts (kept ones not held, or pieces
   * not all there) are found before anything is written; parts and pieces the snapshot no
   * longer lists are dropped, so the tables do not grow.
   */
  private saveSnapshot(snapshot: SnapshotWrite): void {
    const { streamId, parts } = snapshot;
    // The keys the stream holds, read once; what is missing and what to drop is worked out
    // here. The same in SQL (IN and NOT IN over json_each of the listed keys) took 0.82 ms a
    // save at 520 parts and 3.9 ms at 2,000, where this takes 0.15 and 0.62: a busy
    // organization's snapshot lists a part per tier of 512 runs.
    const held = new Set(this.statements.storedPartKeys.all(streamId));
    const missing = parts
      .filter((part) =>
        part.pieces === undefined
          ? part.text === undefined && !held.has(part.key)
          : this.statements.piecesHeld.get(streamId, part.key, part.pieces) !== BigInt(part.pieces),
      )
      .map((part) => part.key);
    if (missing.length > 0) throw new PartsMissing(missing);
    this.statements.saveSnapshot.run(
      streamId,
      snapshot.revision,
      snapshot.position,
      snapshot.schemaVersion,
      snapshot.state,
    );
    for (const { key, text, pieces } of parts) {
      if (pieces !== undefined) this.statements.savePart.run(streamId, key, '', pieces);
      else if (text !== undefined) this.statements.savePart.run(streamId, key, text, null);
    }
    const listed = new Set(parts.map((part) => part.key));
    for (const key of held) if (!listed.has(key)) this.statements.dropPart.run(streamId, key);
    // Pieces no snapshot lists: of a dropped part, or left by a save that never got to its
    // snapshot (a crash, a refusal).
    for (const key of this.statements.piecedPartKeys.all(streamId)) {
      if (!listed.has(key)) this.statements.dropPieces.run(streamId, key);
    }
  }
}

class Conflict extends Error {
  constructor(readonly actual: bigint) {
    super('wrong expected revision');
  }
}

/** An append failed after writing part of itself: only a rollback undoes that part. */
class Halfway extends Error {
  constructor() {
    super('an append failed halfway');
  }
}

class DuplicateId extends Error {
  constructor(readonly eventId: string) {
    super('duplicate event id');
  }
}

/** Crosses back as a WriteFailure with its keys; the store turns it into the port's error. */
class PartsMissing extends Error {
  readonly code = SNAPSHOT_PARTS_MISSING;

  constructor(readonly keys: string[]) {
    super(`the stored snapshot holds no part ${keys.join(', ')}`);
  }
}

function prepareWrites(db: Database.Database) {
  return {
    // From the events' own (stream_id, revision) index, not a row per stream kept beside it:
    // over a thousand organizations that row dirtied a page of its own for every append.
    streamRevision: db
      .prepare<[string], bigint | null>('SELECT max(revision) FROM events WHERE stream_id = ?')
      .pluck(),
    headPosition: db.prepare<[], bigint>('SELECT coalesce(max(position), 0) FROM events').pluck(),
    eventIdAt: db
      .prepare<[string, bigint], string>(
        'SELECT event_id FROM events WHERE stream_id = ? AND revision = ?',
      )
      .pluck(),
    insertEvent: db.prepare<[string, string, bigint, string, string, string]>(
      `INSERT INTO events (event_id, stream_id, revision, type, data, metadata)
         VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    saveSnapshot: db.prepare<[string, bigint, bigint, number, string]>(
      `INSERT INTO snapshots (stream_id, revision, position, schema_version, state)
       VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (stream_id) DO UPDATE SET
         revision = excluded.revision,
         position = excluded.position,
         schema_version = excluded.schema_version,
         state = excluded.state`,
    ),
    storedPartKeys: db
      .prepare<[string], string>('SELECT part_key FROM snapshot_parts WHERE stream_id = ?')
      .pluck(),
    savePart: db.prepare<[string, string, string, number | null]>(
      `INSERT INTO snapshot_parts (stream_id, part_key, text, pieces) VALUES (?, ?, ?, ?)
       ON CONFLICT (stream_id, part_key) DO UPDATE SET text = excluded.text, pieces = excluded.pieces`,
    ),
    dropPart: db.prepare<[string, string]>(
      'DELETE FROM snapshot_parts WHERE stream_id = ? AND part_key = ?',
    ),
    savePiece: db.prepare<[string, string, number, string]>(
      `INSERT INTO snapshot_part_pieces (stream_id, part_key, piece, text) VALUES (?, ?, ?, ?)
       ON CONFLICT (stream_id, part_key, piece) DO UPDATE SET text = excluded.text`,
    ),
    /** How many of pieces 0..n-1 of a part are there: all n, or the part cannot be listed. */
    piecesHeld: db
      .prepare<[string, string, number], bigint>(
        `SELECT count(*) FROM snapshot_part_pieces
         WHERE stream_id = ? AND part_key = ? AND piece < ?`,
      )
      .pluck(),
    piecedPartKeys: db
      .prepare<[string], string>(
        'SELECT DISTINCT part_key FROM snapshot_part_pieces WHERE stream_id = ?',
      )
      .pluck(),
    dropPieces: db.prepare<[string, string]>(
      'DELETE FROM snapshot_part_pieces WHERE stream_id = ? AND part_key = ?',
    ),
  };
}

/** Null when `write` went through, else why not (it threw). */
function failureIn(write: () => void): WriteFailure | null {
  try {
    write();
    return null;
  } catch (error) {
    return failureOf(error);
  }
}

function failureOf(error: unknown): WriteFailure {
  const code = (error as { code?: unknown } | null)?.code;
  return {
    message: error instanceof Error ? error.message : String(error),
    ...(typeof code === 'string' ? { code } : {}),
    ...(error instanceof PartsMissing ? { keys: error.keys } : {}),
  };
}

/**
 * By code, not `instanceof SqliteError`: the native addon throws the SqliteError class of
 * whichever copy of better-sqlite3 registered last (Jest loads one copy per test file).
 */
function isUniqueViolation(error: unknown, column: string): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return (
    code === 'SQLITE_CONSTRAINT_UNIQUE' && typeof message === 'string' && message.includes(column)
  );
}

export interface WriteConnectionOptions {
  /** synchronous=FULL (an append is on disk when it returns); false only for bench datasets. */
  durable: boolean;
  busyTimeoutMs: number;
  /** Raise SQLite's own checkpoint to this many pages: a thread copies the log back. */
  walValvePages?: number;
}

/** The settings of a connection that writes events, wherever it runs. */
export function prepareWriteConnection(db: Database.Database, options: WriteConnectionOptions) {
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${options.durable ? 'FULL' : 'OFF'}`);
  db.pragma('foreign_keys = ON');
  db.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs)}`);
  if (options.walValvePages !== undefined) {
    db.pragma(`wal_autocheckpoint = ${options.walValvePages}`);
  }
  // Integers come back as bigint everywhere, so a position never passes through a number.
  db.defaultSafeIntegers(true);
}

/** Where a store's batches are written: on its own thread, or in the writer's thread. */
export interface BatchWriter {
  write(batch: WriteBatch): Promise<BatchOutcome>;
  close(): Promise<void>;
}

export const writeHere = (writer: SqliteWriter): BatchWriter => ({
  write: async (batch) => writer.write(batch),
  close: async () => undefined,
});

/** What the writer's thread is told: a batch to write, or to close its connection. */
export type WriterOrder = { batch: WriteBatch } | { close: true };

/**
 * The writer's thread (`sqlite-writer.worker.ts`) owns a connection of its own and runs the
 * SqliteWriter there, so that the commit and its fsync never hold the service's event loop:
 * requests keep coming in and the next batch fills meanwhile. Batches are written and
 * answered in the order they were handed over; a batch may be handed over while the one
 * before is committing. If the thread dies, every batch in hand fails (the caller reloads
 * and retries as after any failed write) and the next batch starts a new thread.
 */
export class SqliteWriterThread implements BatchWriter {
  private worker?: Worker;
  /** Oldest first, as the thread answers them. */
  private readonly waiting: { worker: Worker; resolve: (outcome: BatchOutcome) => void }[] = [];

  constructor(private readonly options: WriteConnectionOptions & { filename: string }) {}

  write(batch: WriteBatch): Promise<BatchOutcome> {
    const worker = (this.worker ??= this.start());
    return new Promise((resolve) => {
      this.waiting.push({ worker, resolve });
      // Referenced only while a batch is in hand: an idle writer keeps no process alive.
      worker.ref();
      worker.postMessage({ batch } satisfies WriterOrder);
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = undefined;
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.ref();
    worker.postMessage({ close: true } satisfies WriterOrder);
    await exited;
  }

  private start(): Worker {
    const script = workerScript(join(__dirname, 'sqlite-writer.worker'));
    const worker = new Worker(script.filename, {
      eval: script.eval ?? false,
      workerData: this.options,
    });
    worker.on('message', (outcome: BatchOutcome) => {
      if (this.waiting[0]?.worker !== worker) return;
      this.waiting.shift()!.resolve(outcome);
      if (this.waiting.length === 0) worker.unref();
    });
    worker.on('error', (error) => this.failAll(worker, { failed: failureOf(error) }));
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = undefined;
      this.failAll(worker, {
        failed: { message: `the event store's writer thread exited (${code})` },
      });
    });
    return worker;
  }

  /** Only the thread a batch went to answers for it (an old thread may still be exiting). */
  private failAll(worker: Worker, outcome: BatchOutcome) {
    for (const waiting of this.waiting.filter((batch) => batch.worker === worker)) {
      this.waiting.splice(this.waiting.indexOf(waiting), 1);
      waiting.resolve(outcome);
    }
  }
}

import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import Database from 'better-sqlite3';
import {
  DuplicateEventIdError,
  type RecordedEvent,
  type Snapshot,
  SnapshotPartsMissingError,
  WrongExpectedRevisionError,
} from '../../src/event-store/event-store';
import {
  EventStoreDamagedError,
  PIECE_LENGTH,
  piecesOf,
  SqliteEventStore,
} from '../../src/event-store/sqlite/sqlite-event-store';
import { RecentEvents } from '../../src/event-store/sqlite/recent-events';
import { SqliteWriterThread, type WriteBatch } from '../../src/event-store/sqlite/sqlite-writer';
import { THREAD_NAMES } from '../../src/threads/thread-name';
import { threadNames } from '../support/threads';
import { describeEventStoreContract, newEvent, newEvents, waitFor } from './event-store.contract';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ledger-sqlite-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const newFile = () => join(dir, `${randomUUID()}.sqlite`);

/** Reads the file on a connection of its own, as any other process would. */
function readFile<T>(file: string, read: (db: Database.Database) => T): T {
  const db = new Database(file, { readonly: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

/** Commits on the caller's thread (the default), and in a writer thread (the service's). */
const WRITES = ['inline', 'thread'] as const;

describe.each(WRITES)('with writes %s', (writes) => {
  describeEventStoreContract(
    'SqliteEventStore',
    async () => new SqliteEventStore(newFile(), { writes }),
    {
      locate: (store) => ({ adapter: 'sqlite', file: (store as SqliteEventStore).filename }),
      storedSnapshotParts: async (store, streamId) =>
        readFile((store as SqliteEventStore).filename, (db) =>
          db
            .prepare<[string, string], string>(
              // Pieces count as the part they are of: none may stay once it is dropped.
              `SELECT part_key FROM snapshot_parts WHERE stream_id = ?
               UNION SELECT part_key FROM snapshot_part_pieces WHERE stream_id = ?`,
            )
            .pluck()
            .all(streamId, streamId),
        ),
    },
  );
});

describe.each(WRITES)('SqliteEventStore, writes %s', (writes) => {
  const opened: SqliteEventStore[] = [];
  const open = (file: string, options?: ConstructorParameters<typeof SqliteEventStore>[1]) => {
    const store = new SqliteEventStore(file, { writes, ...options });
    opened.push(store);
    return store;
  };

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((store) => store.close()));
  });

  it('creates a missing folder and opens in WAL mode with synchronous=FULL', () => {
    const store = open(join(dir, randomUUID(), 'nested', 'events.sqlite'));
    expect(store.pragmas()).toEqual({ journalMode: 'wal', synchronous: 2, foreignKeys: true });
  });

  it('records its schema version, and refuses a file from a newer build', async () => {
    const file = newFile();
    await open(file).close();
    const raw = new Database(file);
    expect(raw.pragma('user_version', { simple: true })).toBe(4);
    raw.pragma('user_version = 99');
    raw.close();
    expect(() => open(file)).toThrow(/schema version 99/);
  });

  it('brings a file of schema version 1 up to date, its snapshot loading with no parts', async () => {
    const file = newFile();
    await open(file).close();
    // Version 1 had no snapshot parts.
    const raw = new Database(file);
    raw.exec('DROP TABLE snapshot_parts; DROP TABLE snapshot_part_pieces');
    raw.prepare("INSERT INTO snapshots VALUES ('organization-old', 9, 10, 1, '{}')").run();
    raw.pragma('user_version = 1');
    raw.close();

    const store = open(file);
    expect(readFile(file, (db) => db.pragma('user_version', { simple: true }))).toBe(4);
    const old = await store.loadSnapshot('organization-old');
    expect(old).toEqual({
      streamId: 'organization-old',
      revision: 9n,
      position: 10n,
      schemaVersion: 1,
      state: '{}',
      parts: [],
    });
    const next = { ...old!, revision: 19n, parts: [{ key: 'tier-0', text: '[]' }] };
    await store.saveSnapshot(next);
    expect(await store.loadSnapshot('organization-old')).toEqual(next);
  });

  it('brings a file of schema version 2 up to date, its parts loading as they were', async () => {
    const file = newFile();
    await open(file).close();
    // Version 2 kept every part whole.
    const raw = new Database(file);
    raw.exec(`DROP TABLE snapshot_part_pieces;
      ALTER TABLE snapshot_parts DROP COLUMN pieces;
      INSERT INTO snapshots VALUES ('organization-old', 9, 10, 1, '{}');
      INSERT INTO snapshot_parts VALUES ('organization-old', 'tier-0', '[1,2]');`);
    raw.pragma('user_version = 2');
    raw.close();

    const store = open(file);
    expect(readFile(file, (db) => db.pragma('user_version', { simple: true }))).toBe(4);
    expect(await store.loadSnapshot('organization-old')).toMatchObject({
      revision: 9n,
      parts: [{ key: 'tier-0', text: '[1,2]' }],
    });
  });

  it('brings a file of schema version 3 up to date: appends go on from the revisions its events reached', async () => {
    const file = newFile();
    const before = open(file);
    await before.appendToStream('organization-old', newEvents(3), 'no_stream');
    await before.close();
    // Version 3 kept each stream's revision in a table of its own beside the events.
    const raw = new Database(file);
    raw.exec(`CREATE TABLE streams (stream_id TEXT PRIMARY KEY, revision INTEGER NOT NULL) STRICT;
      INSERT INTO streams VALUES ('organization-old', 2);`);
    raw.pragma('user_version = 3');
    raw.close();

    const store = open(file);
    const tables = readFile(file, (db) =>
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all(),
    );
    expect(tables).not.toContain('streams');
    expect(readFile(file, (db) => db.pragma('user_version', { simple: true }))).toBe(4);
    await expect(store.appendToStream('organization-old', [newEvent()], 1n)).rejects.toThrow(
      WrongExpectedRevisionError,
    );
    await expect(
      store.appendToStream('organization-old', [newEvent()], 'no_stream'),
    ).rejects.toThrow(WrongExpectedRevisionError);
    const appended = await store.appendToStream('organization-old', [newEvent()], 2n);
    expect(appended.nextExpectedRevision).toBe(3n);
    const fresh = await store.appendToStream('organization-new', [newEvent()], 'no_stream');
    expect(fresh.nextExpectedRevision).toBe(0n);
  });

  it('refuses a damaged file at open, naming it, and leaves it as it was', async () => {
    const file = newFile();
    const store = open(file);
    for (let i = 0; i < 200; i++) await store.appendToStream(`s-${i}`, [newEvent()], 'no_stream');
    await store.close();
    const { size } = statSync(file);
    // A page of garbage in the middle of the file, as a torn or rotten sector leaves it.
    const descriptor = openSync(file, 'r+');
    writeSync(descriptor, randomBytes(4096), 0, 4096, Math.floor(size / 8192) * 4096);
    closeSync(descriptor);
    const damaged = readFileSync(file);
    expect(() => new SqliteEventStore(file)).toThrow(EventStoreDamagedError);
    expect(() => new SqliteEventStore(file)).toThrow(file);
    expect(readFileSync(file).equals(damaged)).toBe(true);
  });

  it('with background checkpoints, copies the log into the file from its own thread, named for it', async () => {
    const file = newFile();
    const store = open(file, { walCheckpoints: 'background' });
    const sizeOf = (path: string) => {
      try {
        return statSync(path).size;
      } catch {
        return 0;
      }
    };
    const before = sizeOf(file);
    // Well under the 1,000 pages at which SQLite would copy it back inside a commit.
    for (let i = 0; i < 20; i++) {
      await store.appendToStream(`organization-${i}`, newEvents(50), 'no_stream');
    }
    expect(sizeOf(`${file}-wal`)).toBeGreaterThan(0);
    // The file itself grows only when a checkpoint copies the pages in.
    await waitFor(() => sizeOf(file) > before + 100_000, 'a background checkpoint', 5_000);
    expect(threadNames()).toContain(THREAD_NAMES.walCheckpointer);
    const reopened = new Database(file, { readonly: true });
    try {
      expect(reopened.prepare('SELECT count(*) FROM events').pluck().get()).toBe(1_000);
    } finally {
      reopened.close();
    }
  });

  it('hands readers right behind it what it just wrote from memory, missing nothing another wrote', async () => {
    const file = newFile();
    const writer = open(file);
    const other = open(file);
    await writer.appendToStream('organization-a', newEvents(3), 'no_stream');
    const first = await writer.readAll({ fromPosition: 0n });
    const again = await writer.readAll({ fromPosition: 1n, maxCount: 1 });
    // The kept event, not read back and parsed again: its data is the object appended...
    expect(again[0]).toEqual(first[1]);
    expect(again[0].data).toBe(first[1].data);
    // ...equal to what the file holds, and frozen so no reader changes them for the others.
    expect(first).toEqual(await open(file).readAll({ fromPosition: 0n }));
    expect(() => {
      (first[0].data as Record<string, unknown>).changed = true;
    }).toThrow(TypeError);
    // A page of some types from memory says whether it stopped short of what is kept.
    const type = first[0].type;
    expect(writer.readPageOfTypes(0n, 1, [type])).toMatchObject({ scannedTo: 1n, more: true });
    expect(writer.readPageOfTypes(1n, 10, [type])).toMatchObject({ scannedTo: 3n, more: false });
    expect(writer.readPageOfTypes(0n, 10, ['NoSuchType'])).toEqual({
      events: [],
      scannedTo: 3n,
      more: false,
    });

    // Another connection writes in between: its events are read from the file, in order.
    await other.appendToStream('organization-b', newEvents(2), 'no_stream');
    await writer.appendToStream('organization-a', newEvents(2), 2n);
    const after = await writer.readAll({ fromPosition: 3n });
    expect(after.map((event) => [event.streamId, event.position])).toEqual([
      ['organization-b', 4n],
      ['organization-b', 5n],
      ['organization-a', 6n],
      ['organization-a', 7n],
    ]);
    expect(after.map((event) => event.revision)).toEqual([0n, 1n, 3n, 4n]);
  });

  it('keeps every event across close and reopen', async () => {
    const file = newFile();
    const first = open(file);
    const written = newEvents(3);
    const appended = await first.appendToStream('organization-acme', written, 'no_stream');
    await first.close();

    const reopened = open(file);
    const events = await reopened.readStream('organization-acme');
    expect(events.map((event) => event.eventId)).toEqual(written.map((event) => event.eventId));
    expect(events.map((event) => event.data)).toEqual(written.map((event) => event.data));
    expect(await reopened.headPosition()).toBe(appended.position);

    const next = await reopened.appendToStream('organization-acme', newEvents(1), 2n);
    expect(next).toEqual({ nextExpectedRevision: 3n, position: appended.position + 1n });
  });

  it('commits appends to many streams asked for at once together, each failing on its own', async () => {
    const store = open(newFile());
    await store.appendToStream('organization-taken', newEvents(1), 'no_stream');
    const original = newEvent();
    await store.appendToStream('organization-original', [original], 'no_stream');
    const head = await store.headPosition();

    const results = await Promise.allSettled([
      ...Array.from({ length: 50 }, (_, i) =>
        store.appendToStream(`organization-${i}`, newEvents(2), 'no_stream'),
      ),
      store.appendToStream('organization-taken', newEvents(1), 'no_stream'),
      store.appendToStream(
        'organization-copy',
        [{ ...newEvent(), eventId: original.eventId }],
        'no_stream',
      ),
    ]);
    const written = results.slice(0, 50).map((result) => {
      if (result.status !== 'fulfilled') throw new Error('an innocent append failed');
      return result.value.position;
    });
    expect(results[50]).toMatchObject({
      status: 'rejected',
      reason: { name: 'WrongExpectedRevisionError' },
    });
    expect(results[51]).toMatchObject({
      status: 'rejected',
      reason: { name: 'DuplicateEventIdError' },
    });
    // The positions follow each other in the order the appends were asked.
    expect(written).toEqual(Array.from({ length: 50 }, (_, i) => head + 2n * BigInt(i + 1)));
    expect(await store.readStream('organization-copy')).toEqual([]);
    expect(await store.readStream('organization-taken')).toHaveLength(1);
  });

  it('writes a wave of appends asked at once, with nothing being written, as two batches in order when a thread writes', async () => {
    const store = open(newFile());
    const head = await store.headPosition();
    const batches: number[] = [];
    const writer = (store as unknown as { writer: { write: (batch: unknown) => unknown } }).writer;
    const write = writer.write.bind(writer);
    jest.spyOn(writer, 'write').mockImplementation((batch) => {
      batches.push((batch as { appends: unknown[] }).appends.length);
      return write(batch);
    });
    const wave = (size: number, name: string) =>
      Promise.all(
        Array.from({ length: size }, (_, i) =>
          store.appendToStream(`organization-${name}-${i}`, newEvents(1), 'no_stream'),
        ),
      );

    const written = await wave(40, 'wave');
    // A few at once still share one commit.
    await wave(15, 'few');
    // A hot organization's wave: two appends of many events each, cut between them.
    const [first, second] = [newEvents(32), newEvents(32)];
    await Promise.all([
      store.appendToStream('organization-hot', first, 'no_stream'),
      store.appendAfter('organization-hot', second, { revision: 31n, eventId: first[31].eventId }),
    ]);
    const hot = await store.readStream('organization-hot');
    expect(hot.map((event) => event.eventId)).toEqual([...first, ...second].map((e) => e.eventId));
    // One append of many events stays whole.
    await store.appendToStream('organization-alone', newEvents(40), 'no_stream');

    // Written inline, the first half would be done before the second is taken: no overlap.
    expect(batches).toEqual(writes === 'thread' ? [20, 20, 15, 1, 1, 1] : [40, 15, 2, 1]);
    expect(written.map((result) => result.position)).toEqual(
      Array.from({ length: 40 }, (_, i) => head + BigInt(i + 1)),
    );
  });

  it('answers an append once committed, and lets the event loop turn during the commit only with writes in a thread', async () => {
    const store = open(newFile());
    const events = Array.from({ length: 20_000 }, () => ({
      ...newEvent(),
      data: { note: 'x'.repeat(200) },
    }));
    let turns = 0;
    let done = false;
    const spin = () => {
      if (done) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    const appended = await store.appendToStream('organization-big', events, 'no_stream');
    done = true;

    expect(appended.position).toBe(20_000n);
    expect(await store.headPosition()).toBe(20_000n);
    // Inline, the commit holds the loop from start to end; in a thread, it turns meanwhile.
    if (writes === 'thread') expect(turns).toBeGreaterThan(20);
    else expect(turns).toBeLessThan(5);
  });

  it('numbers positions 1..N without gaps, even after rejected appends', async () => {
    const store = open(newFile());
    const taken = newEvent();
    await store.appendToStream('organization-a', [taken], 'no_stream');
    await expect(
      store.appendToStream('organization-b', [newEvent(), taken], 'no_stream'),
    ).rejects.toThrow(DuplicateEventIdError);
    await expect(store.appendToStream('organization-a', newEvents(2), 5n)).rejects.toThrow(
      WrongExpectedRevisionError,
    );
    await store.appendToStream('organization-b', newEvents(2), 'no_stream');

    const positions = (await store.readAll()).map((event) => event.position);
    expect(positions).toEqual([1n, 2n, 3n]);
  });

  it('appends after a named event only if the stream ends with that very event', async () => {
    const store = open(newFile());
    const [first, second] = newEvents(2);
    await store.appendToStream('organization-a', [first, second], 'no_stream');
    // The right revision with another event at it, and the right event at an old revision.
    await expect(
      store.appendAfter('organization-a', newEvents(1), { revision: 1n, eventId: first.eventId }),
    ).rejects.toThrow(WrongExpectedRevisionError);
    await expect(
      store.appendAfter('organization-a', newEvents(1), { revision: 0n, eventId: first.eventId }),
    ).rejects.toThrow(WrongExpectedRevisionError);
    expect(await store.readStream('organization-a')).toHaveLength(2);

    const written = await store.appendAfter('organization-a', newEvents(2), {
      revision: 1n,
      eventId: second.eventId,
    });
    expect(written.nextExpectedRevision).toBe(3n);
    expect(await store.readStream('organization-a')).toHaveLength(4);
  });

  it('writes appends in the order they were asked, each after the one before', async () => {
    const store = open(newFile());
    const [first] = newEvents(1);
    const chain = [store.appendToStream('organization-a', [first], 'no_stream')];
    let last = first;
    for (let revision = 0n; revision < 20n; revision += 1n) {
      const [next] = newEvents(1);
      chain.push(store.appendAfter('organization-a', [next], { revision, eventId: last.eventId }));
      last = next;
    }
    const written = await Promise.all(chain);
    expect(written.map((result) => result.nextExpectedRevision)).toEqual(
      Array.from({ length: 21 }, (_, i) => BigInt(i)),
    );
  });

  it('names the duplicate event id', async () => {
    const store = open(newFile());
    const taken = newEvent();
    await store.appendToStream('organization-a', [taken], 'no_stream');
    const error: unknown = await store
      .appendToStream('organization-a', [taken], 0n)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DuplicateEventIdError);
    expect(error).toMatchObject({ streamId: 'organization-a', eventId: taken.eventId });
  });

  it('hands back positions beyond 2^53 exactly', async () => {
    const file = newFile();
    const store = open(file);
    await store.appendToStream('organization-a', newEvents(1), 'no_stream');
    // Move the position counter past what a JS number can hold exactly.
    const raw = new Database(file);
    raw.prepare("UPDATE sqlite_sequence SET seq = 9007199254740992 WHERE name = 'events'").run();
    raw.close();

    const result = await store.appendToStream('organization-a', newEvents(2), 0n);
    expect(result.position).toBe(9007199254740994n);
    expect(await store.headPosition()).toBe(9007199254740994n);
    const after = await store.readAll({ fromPosition: 9007199254740993n });
    expect(after.map((event) => event.position)).toEqual([9007199254740994n]);

    const delivered: bigint[] = [];
    const subscription = store.subscribeToAll((event) => void delivered.push(event.position), {
      fromPosition: 9007199254740992n,
    });
    await waitFor(() => delivered.length === 2, 'the two events');
    await subscription.stop();
    expect(delivered).toEqual([9007199254740993n, 9007199254740994n]);
  });

  it('saves, replaces and loads snapshots exactly', async () => {
    const store = open(newFile());
    expect(await store.loadSnapshot('organization-acme')).toBeUndefined();
    const first = {
      streamId: 'organization-acme',
      revision: 499n,
      position: 9007199254740993n,
      schemaVersion: 1,
      state: JSON.stringify({ available: 10 }),
      parts: [],
    };
    await store.saveSnapshot(first);
    expect(await store.loadSnapshot('organization-acme')).toEqual(first);

    const second = { ...first, revision: 999n, position: 12n, schemaVersion: 2, state: '{}' };
    await store.saveSnapshot(second);
    expect(await store.loadSnapshot('organization-acme')).toEqual(second);
    expect(await store.loadSnapshot('organization-other')).toBeUndefined();
  });

  it('fails a snapshot missing parts on its own, not the appends and snapshots written with it', async () => {
    const store = open(newFile());
    const snapshot = (streamId: string, parts: Snapshot['parts']): Snapshot => ({
      streamId,
      revision: 9n,
      position: 10n,
      schemaVersion: 1,
      state: '{}',
      parts,
    });
    const stored = snapshot('organization-a', [{ key: 'tier-0', text: 'zero' }]);
    await store.saveSnapshot(stored);
    const taken = newEvent();
    await store.appendToStream('organization-taken', [taken], 'no_stream');
    const write = jest.spyOn(store['writer'], 'write');

    // Asked in one turn: one batch. The duplicate event id rolls the first try of the whole
    // transaction back, so the batch is written a second time, appends in SAVEPOINTs.
    const [appended, duplicate, missing, other] = await Promise.allSettled([
      store.appendToStream('organization-a', newEvents(2), 'no_stream'),
      store.appendToStream('organization-b', [{ ...newEvent(), eventId: taken.eventId }], 'any'),
      store.saveSnapshot(snapshot('organization-a', [{ key: 'tier-0' }, { key: 'tier-9' }])),
      store.saveSnapshot(snapshot('organization-c', [{ key: 'tier-0', text: 'of c' }])),
    ]);
    expect(write).toHaveBeenCalledTimes(1);
    expect(write.mock.calls[0][0]).toMatchObject({
      appends: [{ streamId: 'organization-a' }, { streamId: 'organization-b' }],
      snapshots: [{ streamId: 'organization-a' }, { streamId: 'organization-c' }],
    });

    expect(appended).toMatchObject({ status: 'fulfilled', value: { nextExpectedRevision: 1n } });
    expect(duplicate).toMatchObject({
      status: 'rejected',
      reason: { name: 'DuplicateEventIdError' },
    });
    expect(other).toEqual({ status: 'fulfilled', value: undefined });
    // Made on this side of the thread, so the port's own class.
    if (missing.status !== 'rejected') throw new Error('the snapshot missing a part was saved');
    expect(missing.reason).toBeInstanceOf(SnapshotPartsMissingError);
    expect(missing.reason).toMatchObject({ streamId: 'organization-a', keys: ['tier-9'] });

    expect(await store.readStream('organization-a')).toHaveLength(2);
    expect(await store.loadSnapshot('organization-a')).toEqual(stored);
    expect(await store.loadSnapshot('organization-c')).toEqual(
      snapshot('organization-c', [{ key: 'tier-0', text: 'of c' }]),
    );
  });

  it('writes a long part a piece a commit ahead of its snapshot, appends going out meanwhile', async () => {
    const store = open(newFile());
    const batches: { appends: number; snapshots: number; pieces: number[] }[] = [];
    const writer = (store as unknown as { writer: { write: (batch: WriteBatch) => unknown } })
      .writer;
    const write = writer.write.bind(writer);
    jest.spyOn(writer, 'write').mockImplementation((batch) => {
      batches.push({
        appends: batch.appends.length,
        snapshots: batch.snapshots.length,
        pieces: (batch.pieces ?? []).map((piece) => piece.text.length),
      });
      return write(batch);
    });
    const long = 'x'.repeat(PIECE_LENGTH * 2 + 10);
    const snapshot: Snapshot = {
      streamId: 'organization-a',
      revision: 9n,
      position: 10n,
      schemaVersion: 1,
      state: '{}',
      parts: [
        { key: 'tier-0', text: long },
        { key: 'tier-1', text: 'short' },
      ],
    };

    const order: string[] = [];
    await Promise.all([
      store.saveSnapshot(snapshot).then(() => order.push('snapshot')),
      store
        .appendToStream('organization-a', newEvents(1), 'no_stream')
        .then(() => order.push('append')),
    ]);

    // The append went out with the first piece; the snapshot, short part and all, after the last.
    expect(batches).toEqual([
      { appends: 1, snapshots: 0, pieces: [PIECE_LENGTH] },
      { appends: 0, snapshots: 0, pieces: [PIECE_LENGTH] },
      { appends: 0, snapshots: 0, pieces: [10] },
      { appends: 0, snapshots: 1, pieces: [] },
    ]);
    expect(order).toEqual(['append', 'snapshot']);
    expect(await store.loadSnapshot('organization-a')).toEqual(snapshot);
  });

  it('loads a part with a piece missing without its text, and drops pieces no saved snapshot lists', async () => {
    const file = newFile();
    const store = open(file);
    const snapshotOf = (revision: bigint, parts: Snapshot['parts']): Snapshot => ({
      streamId: 'organization-a',
      revision,
      position: revision + 1n,
      schemaVersion: 1,
      state: '{}',
      parts,
    });
    const long = 'y'.repeat(PIECE_LENGTH + 1);
    await store.saveSnapshot(snapshotOf(9n, [{ key: 'tier-0', text: long }]));
    // Refused once its pieces are written (it lists a part the stream does not hold): they stay
    // behind until the next save.
    await expect(
      store.saveSnapshot(snapshotOf(19n, [{ key: 'tier-9' }, { key: 'tier-1', text: long }])),
    ).rejects.toBeInstanceOf(SnapshotPartsMissingError);
    const piecesOf = (key: string) =>
      readFile(file, (db) =>
        db
          .prepare<[string], number>('SELECT piece FROM snapshot_part_pieces WHERE part_key = ?')
          .pluck()
          .all(key),
      );
    expect(piecesOf('tier-1')).toEqual([0, 1]);
    expect(await store.loadSnapshot('organization-a')).toEqual(
      snapshotOf(9n, [{ key: 'tier-0', text: long }]),
    );

    await store.saveSnapshot(snapshotOf(29n, [{ key: 'tier-0' }]));
    expect(piecesOf('tier-1')).toEqual([]);
    expect(piecesOf('tier-0')).toEqual([0, 1]);

    // Lost a piece (a damaged file): the part comes without its text, so the state cannot be
    // read from the snapshot and is replayed from the events.
    const raw = new Database(file);
    raw.prepare("DELETE FROM snapshot_part_pieces WHERE part_key = 'tier-0' AND piece = 1").run();
    raw.close();
    expect(await store.loadSnapshot('organization-a')).toEqual(
      snapshotOf(29n, [{ key: 'tier-0' }]),
    );
  });

  it('cuts a long text into pieces of PIECE_LENGTH characters, never between the halves of a pair', () => {
    const pair = '😀';
    // A pair across the first cut: that piece ends before it.
    const text = `${'a'.repeat(PIECE_LENGTH - 1)}${pair}${'b'.repeat(PIECE_LENGTH - 1)}${pair}c`;
    const pieces = piecesOf(text);
    expect(pieces.join('')).toBe(text);
    expect(pieces.map((piece) => piece.length)).toEqual([PIECE_LENGTH - 1, PIECE_LENGTH, 4]);
    expect(piecesOf('short')).toEqual(['short']);
    expect(piecesOf('')).toEqual([]);
  });

  it('skips a long run of other event types a bounded range at a time, turning the event loop between', async () => {
    const store = open(newFile(), { typesScanWindow: 100, pageSize: 50 });
    const start = await store.headPosition();
    const types = ['CharmRunCharged', 'MemberAdded'];
    for (let i = 0; i < 10; i += 1) {
      await store.appendToStream(
        `organization-${i}`,
        [...newEvents(99, 'CharmRunCharged'), newEvent('MemberAdded', { i })],
        'no_stream',
      );
    }
    // Event-loop turns, counted by a callback that runs once a turn, and the turn each read
    // happened in (a 1 ms timer counted time instead: a fast machine read all in under 3 ms).
    let turns = 0;
    let counting = true;
    const tick = () => {
      turns += 1;
      if (counting) setImmediate(tick);
    };
    setImmediate(tick);
    const readInTurn: number[] = [];
    const read = store.readPageOfTypes.bind(store);
    jest.spyOn(store, 'readPageOfTypes').mockImplementation((...args) => {
      readInTurn.push(turns);
      return read(...args);
    });
    const seen: string[] = [];
    const subscription = store.subscribeToAll(
      (event) => void seen.push(`${event.streamId} ${event.type}`),
      {
        fromPosition: start,
        eventTypes: [types[1]],
        onCaughtUp: () => void seen.push('caught up'),
      },
    );
    try {
      await waitFor(() => seen.includes('caught up'), 'onCaughtUp');
      expect(seen).toEqual([
        ...Array.from({ length: 10 }, (_, i) => `organization-${i} MemberAdded`),
        'caught up',
      ]);
      // 1,000 positions looked at 100 per read, with the event loop turning between reads.
      const catchUp = readInTurn.slice(0, 10);
      catchUp.slice(1).forEach((turn, i) => expect(turn).toBeGreaterThan(catchUp[i]));
      await store.appendToStream('organization-0', newEvents(1, 'MemberAdded'), 99n);
      await waitFor(() => seen.length === 12, 'the live event');
      expect(seen[11]).toBe('organization-0 MemberAdded');
    } finally {
      counting = false;
      await subscription.stop();
    }
  });

  it("sees another instance's appends on the same file through polling", async () => {
    const file = newFile();
    const writer = open(file);
    const reader = open(file, { pollIntervalMs: 100 });
    await writer.appendToStream('organization-a', newEvents(2), 'no_stream');

    const delivered: RecordedEvent[] = [];
    let caughtUp = false;
    reader.subscribeToAll((event) => void delivered.push(event), {
      onCaughtUp: () => void (caughtUp = true),
    });
    await waitFor(() => caughtUp, 'the catch-up');
    expect(delivered).toHaveLength(2);

    await writer.appendToStream('organization-a', newEvents(3), 1n);
    await writer.appendToStream('organization-b', newEvents(1), 'no_stream');
    await waitFor(() => delivered.length >= 6, 'the other instance’s appends', 5000);
    await delay(250);
    expect(delivered.map((event) => event.position)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
  });

  it('close() stops its subscriptions, is idempotent, and later calls fail clearly', async () => {
    const store = new SqliteEventStore(newFile());
    const delivered: bigint[] = [];
    const subscription = store.subscribeToAll((event) => void delivered.push(event.position));
    await store.appendToStream('organization-a', newEvents(1), 'no_stream');
    await waitFor(() => delivered.length === 1, 'the event');

    await Promise.all([store.close(), store.close()]);
    await store.close();
    await subscription.stop();
    await expect(store.ping()).rejects.toThrow(/closed/);
    await expect(store.appendToStream('organization-a', newEvents(1), 0n)).rejects.toThrow(
      /closed/,
    );
    expect(() => store.subscribeToAll(() => undefined)).toThrow(/closed/);
  });
});

describe('SqliteWriterThread', () => {
  it('fails a batch whose thread cannot open the file, each time, without hanging', async () => {
    const thread = new SqliteWriterThread({
      filename: join(dir, 'missing-folder', 'events.sqlite'),
      durable: true,
      busyTimeoutMs: 100,
    });
    const batch = { appends: [], snapshots: [] };
    await expect(thread.write(batch)).resolves.toEqual({
      failed: expect.objectContaining({
        message: expect.stringMatching(/directory does not exist/),
      }),
    });
    // Two in hand when the thread dies: both fail.
    await expect(Promise.all([thread.write(batch), thread.write(batch)])).resolves.toEqual([
      { failed: expect.anything() },
      { failed: expect.anything() },
    ]);
    await thread.close();
  });

  it('takes the next batch while one is committing, and writes and answers them in order, on a thread named for it', async () => {
    const file = newFile();
    // The store lays out the file; the thread writes it as the service's store does.
    await new SqliteEventStore(file).close();
    const thread = new SqliteWriterThread({ filename: file, durable: true, busyTimeoutMs: 1000 });
    const event = () => ({ eventId: randomUUID(), type: 'Tested', data: '{}', metadata: '{}' });
    const first = [event(), event()];
    const batches = [
      { appends: [{ streamId: 'organization-a', expected: 'no_stream' as const, events: first }] },
      // Decided on the first batch's events before it is durable, as the pipeline does.
      {
        appends: [
          {
            streamId: 'organization-a',
            expected: 1n,
            afterEventId: first[1].eventId,
            events: [event()],
          },
        ],
      },
      { appends: [{ streamId: 'organization-a', expected: 1n, events: [event()] }] },
    ];
    const outcomes = await Promise.all(
      batches.map((batch) => thread.write({ ...batch, snapshots: [] })),
    );
    expect(threadNames()).toContain(THREAD_NAMES.eventStoreWriter);
    await thread.close();
    expect(outcomes).toEqual([
      { appends: [{ written: { nextExpectedRevision: 1n, position: 2n } }], snapshots: [] },
      { appends: [{ written: { nextExpectedRevision: 2n, position: 3n } }], snapshots: [] },
      // Handed over at once too, yet written after the second: the stream has moved on.
      { appends: [{ conflict: 2n }], snapshots: [] },
    ]);
  });
});

describe('RecentEvents (what the store keeps for the readers close behind)', () => {
  it('lets the older half go past its capacity, and starts over at a gap in positions', () => {
    const recent = new RecentEvents(8);
    recent.keep('organization-a', newEvents(6), 0n, 1n);
    recent.keep('organization-b', newEvents(3), 0n, 7n);
    // Nine kept past eight: the older half went, positions 6..9 stay.
    expect(recent.length).toBe(4);
    expect(recent.indexAfter(4n)).toBeUndefined();
    expect(recent.indexAfter(5n)).toBe(0);
    expect(recent.recorded(0)).toMatchObject({
      streamId: 'organization-a',
      revision: 5n,
      position: 6n,
    });
    expect(recent.recorded(1)).toMatchObject({
      streamId: 'organization-b',
      revision: 0n,
      position: 7n,
    });
    expect(recent.indexAfter(9n)).toBeUndefined();

    // Another connection wrote 10 and 11: what is kept now starts at 12.
    recent.keep('organization-a', newEvents(1), 6n, 12n);
    expect(recent.length).toBe(1);
    expect(recent.indexAfter(9n)).toBeUndefined();
    expect(recent.indexAfter(11n)).toBe(0);
    expect(recent.position(0)).toBe(12n);
  });
});

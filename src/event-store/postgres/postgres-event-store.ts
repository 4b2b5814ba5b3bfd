import { type Notification, Pool, type PoolClient } from 'pg';
import {
  type AppendResult,
  DuplicateEventIdError,
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
  type SnapshotPart,
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

export interface PostgresEventStoreOptions {
  /** Connections in the pool (appends, reads and subscriptions share it). */
  poolSize?: number;
  /** Events read per query while a subscription catches up. */
  pageSize?: number;
  /** How often an idle subscription looks again without a notification. */
  pollIntervalMs?: number;
  /**
   * Test seam: awaited inside an append's transaction, just before COMMIT, so a test can hold
   * one append open while others commit.
   */
  beforeCommit?: (streamId: string) => Promise<void>;
}

/**
 * Global positions are `(transaction id << 20) + index in the append`: one bigint ordered by
 * (pg_current_xact_id(), index). An append therefore holds at most 2^20 events.
 */
const INDEX_BITS = 20n;
const MAX_EVENTS_PER_APPEND = 1 << Number(INDEX_BITS);
const CHANNEL = 'ledger_events';

/** Each entry brings the schema at version i to i + 1; never edit one that shipped. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE ledger_events (
     position bigint PRIMARY KEY,
     event_id text NOT NULL UNIQUE,
     stream_id text NOT NULL,
     revision bigint NOT NULL,
     type text NOT NULL,
     data text NOT NULL,
     metadata text NOT NULL,
     UNIQUE (stream_id, revision)
   );
   CREATE TABLE ledger_streams (
     stream_id text PRIMARY KEY,
     revision bigint NOT NULL
   );
   CREATE TABLE ledger_snapshots (
     stream_id text PRIMARY KEY,
     revision bigint NOT NULL,
     position bigint NOT NULL,
     schema_version integer NOT NULL,
     state text NOT NULL
   );`,
  // Listeners hear of appends at COMMIT, from the server: an append is then one statement.
  `CREATE FUNCTION ledger_events_appended() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN PERFORM pg_notify('${CHANNEL}', ''); RETURN NULL; END
   $$;
   CREATE TRIGGER ledger_events_appended AFTER INSERT ON ledger_events
     FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_appended();`,
  // Parts that a stream's snapshots share, each written once (see Snapshot.parts).
  `CREATE TABLE ledger_snapshot_parts (
     stream_id text NOT NULL,
     part_key text NOT NULL,
     text text NOT NULL,
     PRIMARY KEY (stream_id, part_key)
   );`,
];

/** What an append's statement answers: both null when the expected revision did not hold. */
interface AppendedRow {
  revision: string | null;
  position: string | null;
}

const EVENT_COLUMNS = 'position, event_id, stream_id, revision, type, data, metadata';

/**
 * Only events of transactions older than every transaction still running: nothing can commit
 * later below this bound, so a reader that checkpoints never skips a late commit.
 */
const VISIBLE_BOUND = `(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << ${INDEX_BITS})`;

interface EventRow {
  position: string;
  event_id: string;
  stream_id: string;
  revision: string;
  type: string;
  data: string;
  metadata: string;
}

/**
 * The event store in PostgreSQL. Optimistic concurrency by a conditional update of the
 * stream's row (and a unique (stream, revision) underneath); an append is one transaction,
 * durable at COMMIT. Readers of all streams see an event only once every transaction that
 * could still commit before it has ended (pg_snapshot_xmin), so positions never appear out of
 * order. LISTEN/NOTIFY wakes live subscriptions; a poll covers missed notifications.
 */
export class PostgresEventStore implements EventStore, SnapshotStore, PollingSource {
  private readonly pool: Pool;
  private readonly options: Required<Omit<PostgresEventStoreOptions, 'beforeCommit'>>;
  private readonly subscriptions = new Set<PollingSubscription>();
  private readonly appended = new AppendSignal();
  private listener: PoolClient | undefined;
  private listening: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    readonly url: string,
    private readonly tuning: PostgresEventStoreOptions,
  ) {
    this.options = {
      poolSize: tuning.poolSize ?? 10,
      pageSize: tuning.pageSize ?? 500,
      pollIntervalMs: tuning.pollIntervalMs ?? 250,
    };
    this.pool = new Pool({ connectionString: url, max: this.options.poolSize });
    // An idle connection that breaks (server restart) must not crash the process; the pool
    // replaces it on the next query.
    this.pool.on('error', () => undefined);
  }

  /** Connects and brings the schema up to date. */
  static async open(
    url: string,
    options: PostgresEventStoreOptions = {},
  ): Promise<PostgresEventStore> {
    const store = new PostgresEventStore(url, options);
    try {
      await store.migrate();
    } catch (error) {
      await store.pool.end();
      throw error;
    }
    return store;
  }

  async appendToStream(
    streamId: string,
    events: NewEvent[],
    expected: ExpectedRevision,
  ): Promise<AppendResult> {
    this.assertOpen();
    if (events.length === 0) return this.checkExpectation(streamId, expected);
    if (events.length >= MAX_EVENTS_PER_APPEND) {
      throw new RangeError(`an append holds at most ${MAX_EVENTS_PER_APPEND - 1} events`);
    }
    const { sql, parameters } = appendStatement(streamId, events, expected);
    let appended: AppendedRow;
    try {
      appended = await this.inOneTransaction(streamId, sql, parameters);
    } catch (error) {
      const duplicate = duplicateEventId(error, events);
      if (duplicate !== undefined) throw new DuplicateEventIdError(streamId, duplicate);
      throw error;
    }
    if (appended.revision === null || appended.position === null) {
      throw new WrongExpectedRevisionError(
        streamId,
        expected,
        await currentRevision(this.pool, streamId),
      );
    }
    this.appended.notify();
    return { nextExpectedRevision: BigInt(appended.revision), position: BigInt(appended.position) };
  }

  /**
   * Runs an append's one statement: on its own it is its own transaction, one round trip.
   * With the `beforeCommit` test seam, inside BEGIN ... COMMIT, so a test can hold it open.
   */
  private async inOneTransaction(
    streamId: string,
    sql: string,
    parameters: unknown[],
  ): Promise<AppendedRow> {
    const beforeCommit = this.tuning.beforeCommit;
    if (beforeCommit === undefined) {
      return (await this.pool.query<AppendedRow>(sql, parameters)).rows[0];
    }
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<AppendedRow>(sql, parameters);
      await beforeCommit(streamId);
      await client.query('COMMIT');
      client.release();
      return rows[0];
    } catch (error) {
      // The connection may be mid-transaction or broken: do not give it back to the pool.
      client.release(error instanceof Error ? error : true);
      throw error;
    }
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    const backwards = options.direction === 'backwards';
    const { rows } = await this.pool.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM ledger_events
       WHERE stream_id = $1 AND ($2::bigint IS NULL OR revision ${backwards ? '<=' : '>='} $2)
       ORDER BY revision ${backwards ? 'DESC' : 'ASC'} LIMIT $3`,
      [streamId, options.fromRevision?.toString() ?? null, toLimit(options.maxCount)],
    );
    return rows.map(toRecordedEvent);
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    return this.readPage(options.fromPosition ?? 0n, toLimit(options.maxCount));
  }

  subscribeToAll(handler: EventHandler, options: SubscribeOptions = {}): Subscription {
    this.assertOpen();
    this.listening ??= this.listen();
    const subscription = new PollingSubscription(this, handler, options, this.options);
    this.subscriptions.add(subscription);
    void subscription.finished.then(() => this.subscriptions.delete(subscription));
    return subscription;
  }

  /**
   * The newest committed position. A reader of all streams reaches it once every older
   * transaction has ended.
   */
  async headPosition(): Promise<bigint> {
    this.assertOpen();
    const { rows } = await this.pool.query<{ head: string }>(
      'SELECT coalesce(max(position), 0) AS head FROM ledger_events',
    );
    return BigInt(rows[0].head);
  }

  async ping(): Promise<void> {
    this.assertOpen();
    await this.pool.query('SELECT 1');
  }

  /** One statement, so the head and its parts come from the same save. */
  async loadSnapshot(streamId: string): Promise<Snapshot | undefined> {
    this.assertOpen();
    const { rows } = await this.pool.query<{
      revision: string;
      position: string;
      schema_version: number;
      state: string;
      part_keys: string[];
      texts: string[];
    }>(
      // The parts in arrays of one row: a join would repeat the head on every part's row.
      `SELECT s.revision, s.position, s.schema_version, s.state,
         ARRAY(SELECT p.part_key FROM ledger_snapshot_parts p
               WHERE p.stream_id = s.stream_id ORDER BY p.part_key) AS part_keys,
         ARRAY(SELECT p.text FROM ledger_snapshot_parts p
               WHERE p.stream_id = s.stream_id ORDER BY p.part_key) AS texts
       FROM ledger_snapshots s WHERE s.stream_id = $1`,
      [streamId],
    );
    if (rows.length === 0) return undefined;
    const { part_keys: keys, texts } = rows[0];
    const parts: SnapshotPart[] = keys.map((key, i) => ({ key, text: texts[i] }));
    return {
      streamId,
      revision: BigInt(rows[0].revision),
      position: BigInt(rows[0].position),
      schemaVersion: rows[0].schema_version,
      state: rows[0].state,
      parts,
    };
  }

  /**
   * One transaction. The head's row lock makes saves of one stream take turns, so the parts
   * listed without text are checked against the very snapshot this save replaces.
   */
  async saveSnapshot(snapshot: Snapshot): Promise<void> {
    this.assertOpen();
    const client = await this.pool.connect();
    let missing: string[];
    try {
      await client.query('BEGIN');
      missing = await writeSnapshot(client, snapshot);
      await client.query(missing.length === 0 ? 'COMMIT' : 'ROLLBACK');
    } catch (error) {
      // The connection may be mid-transaction or broken: do not give it back to the pool.
      client.release(error instanceof Error ? error : true);
      throw error;
    }
    client.release();
    if (missing.length > 0) throw new SnapshotPartsMissingError(snapshot.streamId, missing);
  }

  /** Stops every subscription (waiting for handlers in progress), then closes the pool. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.subscriptions].map((subscription) => subscription.stop()));
      // Ending the LISTEN connection ends the listen loop, which sees `closing` and stops.
      const listener = this.listener;
      this.listener = undefined;
      listener?.release(true);
      await this.listening;
      await this.pool.end();
    })();
    return this.closing;
  }

  /** @internal Events strictly after `afterPosition` that no late commit can precede. */
  async readPage(afterPosition: bigint, limit: number | null): Promise<RecordedEvent[]> {
    const { rows } = await this.pool.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM ledger_events
       WHERE position > $1 AND position < ${VISIBLE_BOUND}
       ORDER BY position LIMIT $2`,
      [afterPosition.toString(), limit],
    );
    return rows.map(toRecordedEvent);
  }

  /** @internal Events of `types` after `afterPosition` that no late commit can precede. */
  async readPageOfTypes(
    afterPosition: bigint,
    limit: number,
    types: readonly string[],
  ): Promise<PageOfTypes> {
    // One statement, one snapshot: the bound, and the events of those types below it (none,
    // as one row of nulls). Nothing can commit below the bound later.
    const { rows } = await this.pool.query<EventRow & { bound: string }>(
      `SELECT b.bound::text AS bound, e.*
       FROM (SELECT ${VISIBLE_BOUND} AS bound) b
       LEFT JOIN LATERAL (
         SELECT ${EVENT_COLUMNS} FROM ledger_events
         WHERE position > $1 AND position < b.bound AND type = ANY($2::text[])
         ORDER BY position LIMIT $3
       ) e ON true`,
      [afterPosition.toString(), types, limit],
    );
    const bound = BigInt(rows[0].bound);
    const events = rows[0].position === null ? [] : rows.map(toRecordedEvent);
    return { events, scannedTo: bound - 1n };
  }

  /** @internal */
  get appendsSoFar(): number {
    return this.appended.appendsSoFar;
  }

  /** @internal */
  waitForAppend(timeoutMs: number): { wait: Promise<void>; cancel: () => void } {
    return this.appended.waitForAppend(timeoutMs);
  }

  private async checkExpectation(
    streamId: string,
    expected: ExpectedRevision,
  ): Promise<AppendResult> {
    const actual = await currentRevision(this.pool, streamId);
    const matches =
      expected === 'any' ||
      (expected === 'no_stream' ? actual === NO_REVISION : expected === actual);
    if (!matches) throw new WrongExpectedRevisionError(streamId, expected, actual);
    return { nextExpectedRevision: actual, position: await this.headPosition() };
  }

  /** One connection LISTENs for appends of every process; it reconnects when it breaks. */
  private async listen(): Promise<void> {
    while (this.closing === undefined) {
      try {
        const client = await this.pool.connect();
        if (this.closing !== undefined) {
          client.release(true);
          return;
        }
        this.listener = client;
        const broken = new Promise<void>((resolve) => {
          client.once('error', () => resolve());
          client.once('end', () => resolve());
        });
        client.on('notification', (message: Notification) => {
          if (message.channel === CHANNEL) this.appended.notify();
        });
        await client.query(`LISTEN ${CHANNEL}`);
        // Whatever was appended while we were not listening is found by the next read.
        this.appended.notify();
        await broken;
        if (this.listener === client) {
          this.listener = undefined;
          client.release(true);
        }
      } catch {
        // The server is unreachable: subscriptions keep polling; try again shortly.
      }
      if (this.closing === undefined) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  private async migrate(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      // Two processes starting on an empty database must not both create the tables.
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('ledger_event_store_schema'))`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ledger_event_store_schema (version integer NOT NULL)`,
      );
      const { rows } = await client.query<{ version: number }>(
        'SELECT version FROM ledger_event_store_schema',
      );
      const version = rows[0]?.version ?? 0;
      if (version > MIGRATIONS.length) {
        throw new Error(
          `the database has event-store schema version ${version}; this build knows up to ${MIGRATIONS.length}`,
        );
      }
      for (let next = version; next < MIGRATIONS.length; next += 1) {
        await client.query(MIGRATIONS[next]);
      }
      await client.query('DELETE FROM ledger_event_store_schema');
      await client.query('INSERT INTO ledger_event_store_schema (version) VALUES ($1)', [
        Math.max(version, MIGRATIONS.length),
      ]);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  private assertOpen(): void {
    if (this.closing !== undefined) throw new Error('the PostgreSQL event store is closed');
  }
}

/**
 * An append as one statement: move the stream's revision from `expected` to its new last
 * one (the row lock serializes appends to one stream until COMMIT; other streams are not
 * blocked), then insert the events under it. Both come back null when the expectation does
 * not hold, and nothing is written.
 */
function appendStatement(streamId: string, events: NewEvent[], expected: ExpectedRevision) {
  const count = events.length;
  let claim: string;
  let parameters: unknown[];
  if (expected === 'no_stream') {
    claim = `INSERT INTO ledger_streams (stream_id, revision) VALUES ($1, $2)
             ON CONFLICT (stream_id) DO NOTHING RETURNING revision`;
    parameters = [streamId, count - 1];
  } else if (expected === 'any') {
    claim = `INSERT INTO ledger_streams (stream_id, revision) VALUES ($1, $2)
             ON CONFLICT (stream_id) DO UPDATE SET revision = ledger_streams.revision + $2 + 1
             RETURNING revision`;
    parameters = [streamId, count - 1];
  } else {
    claim = `UPDATE ledger_streams SET revision = revision + $2 + 1
             WHERE stream_id = $1 AND revision = $3 RETURNING revision`;
    parameters = [streamId, count - 1, expected.toString()];
  }
  const at = parameters.length;
  parameters.push(
    events.map((event) => event.eventId),
    events.map((event) => event.type),
    events.map((event) => JSON.stringify(event.data)),
    events.map((event) => JSON.stringify(event.metadata)),
  );
  const sql = `WITH claimed AS (${claim}),
    inserted AS (
      INSERT INTO ledger_events (${EVENT_COLUMNS})
      SELECT (pg_current_xact_id()::text::bigint << ${INDEX_BITS}) + e.ordinality - 1,
             e.event_id, $1, claimed.revision - ${count} + e.ordinality, e.type, e.data, e.metadata
      FROM claimed, unnest($${at + 1}::text[], $${at + 2}::text[], $${at + 3}::text[], $${at + 4}::text[])
        WITH ORDINALITY AS e(event_id, type, data, metadata, ordinality)
      RETURNING position)
    SELECT (SELECT revision FROM claimed)::text AS revision,
           (SELECT max(position) FROM inserted)::text AS position`;
  return { sql, parameters };
}

/**
 * Writes a snapshot inside the caller's transaction, unless a part listed without text is
 * not stored for the stream: then it writes nothing and answers those parts' keys.
 */
async function writeSnapshot(client: PoolClient, snapshot: Snapshot): Promise<string[]> {
  const { streamId, parts } = snapshot;
  await client.query('SELECT 1 FROM ledger_snapshots WHERE stream_id = $1 FOR UPDATE', [streamId]);
  // The keys the stream holds, read once: what is missing and what to drop is worked out
  // here. Dropping with `part_key <> ALL($listed)` compared every row with every key listed:
  // 2.4 ms a save at 520 parts and 11.6 at 2,600, against 0.6 and 2.4 reading the keys (a busy
  // organization's snapshot lists a part per tier of 512 runs).
  const { rows } = await client.query<{ part_key: string }>(
    'SELECT part_key FROM ledger_snapshot_parts WHERE stream_id = $1',
    [streamId],
  );
  const held = new Set(rows.map((row) => row.part_key));
  const missing = parts
    .filter((part) => part.text === undefined && !held.has(part.key))
    .map((part) => part.key);
  if (missing.length > 0) return missing;
  await client.query(
    `INSERT INTO ledger_snapshots (stream_id, revision, position, schema_version, state)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (stream_id) DO UPDATE SET revision = excluded.revision,
       position = excluded.position, schema_version = excluded.schema_version,
       state = excluded.state`,
    [
      streamId,
      snapshot.revision.toString(),
      snapshot.position.toString(),
      snapshot.schemaVersion,
      snapshot.state,
    ],
  );
  // One row per key (an upsert may not touch a row twice): a key given twice keeps its last text.
  const given = new Map<string, string>();
  for (const { key, text } of parts) if (text !== undefined) given.set(key, text);
  if (given.size > 0) {
    await client.query(
      `INSERT INTO ledger_snapshot_parts (stream_id, part_key, text)
       SELECT $1, p.part_key, p.text FROM unnest($2::text[], $3::text[]) AS p(part_key, text)
       ON CONFLICT (stream_id, part_key) DO UPDATE SET text = excluded.text`,
      [streamId, [...given.keys()], [...given.values()]],
    );
  }
  // Parts no longer listed go, so that the table does not grow with every snapshot.
  const listed = new Set(parts.map((part) => part.key));
  const dropped = [...held].filter((key) => !listed.has(key));
  if (dropped.length > 0) {
    await client.query(
      'DELETE FROM ledger_snapshot_parts WHERE stream_id = $1 AND part_key = ANY($2::text[])',
      [streamId, dropped],
    );
  }
  return [];
}

async function currentRevision(
  queryable: Pick<Pool, 'query'> | PoolClient,
  streamId: string,
): Promise<bigint> {
  const { rows } = await queryable.query<{ revision: string }>(
    'SELECT revision FROM ledger_streams WHERE stream_id = $1',
    [streamId],
  );
  return rows.length === 0 ? NO_REVISION : BigInt(rows[0].revision);
}

/** The id that broke ledger_events' unique event_id, or undefined for any other error. */
function duplicateEventId(error: unknown, events: NewEvent[]): string | undefined {
  const { code, constraint, detail } = error as {
    code?: string;
    constraint?: string;
    detail?: string;
  };
  if (code !== '23505' || constraint !== 'ledger_events_event_id_key') return undefined;
  return events.find((event) => detail?.includes(event.eventId))?.eventId ?? events[0].eventId;
}

function toRecordedEvent(row: EventRow): RecordedEvent {
  return {
    eventId: row.event_id,
    type: row.type,
    streamId: row.stream_id,
    revision: BigInt(row.revision),
    position: BigInt(row.position),
    data: JSON.parse(row.data) as unknown,
    metadata: JSON.parse(row.metadata) as EventMetadata,
  };
}

function toLimit(maxCount: number | undefined): number | null {
  return checkedMaxCount(maxCount) ?? null;
}

// An in-memory EventStoreDB that speaks the gRPC protocol of @eventstore/db-client, built from
// the client's own generated code so the wire format is exactly what the client expects.
//
// Supported: ServerFeatures/GetSupportedMethods (advertises Read and Append only, so the client
// never uses BatchAppend), Streams/Append, Streams/Read (stream and $all reads, stream and $all
// subscriptions, filters with checkpoints). Not supported (UNIMPLEMENTED): Delete, Tombstone,
// BatchAppend, persistent subscriptions, projections, links, system streams.
//
// Positions: every event has commit == prepare == a running byte offset in a pretend log (large,
// strictly increasing, never consecutive). An append answers with the position of its last event.
// Exclusivity, as the real server does it:
// - readAll forwards from P is inclusive (events at position >= P);
// - readAll backwards from P is exclusive (events at position < P);
// - subscribeToAll from P is exclusive (events at position > P); the server reads one event at P
//   and catches up from the position after it (Enumerator.AllSubscription*.Subscribe);
// - readStream from revision R is inclusive; subscribeToStream from R is exclusive (> R).
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { ServerFeaturesService } from '@eventstore/db-client/generated/serverfeatures_grpc_pb';
import {
  SupportedMethod,
  SupportedMethods,
} from '@eventstore/db-client/generated/serverfeatures_pb';
import { Empty, StreamIdentifier, UUID } from '@eventstore/db-client/generated/shared_pb';
import { StreamsService } from '@eventstore/db-client/generated/streams_grpc_pb';
import {
  AppendReq,
  AppendResp,
  ReadReq,
  ReadResp,
} from '@eventstore/db-client/generated/streams_pb';

/** The server's default MaxAppendSize (1 MiB of data and metadata per append). */
const MAX_APPEND_SIZE = 1_048_576;
/** Events read per catch-up page (the server's ReadBatchSize); also the default search window. */
const PAGE_SIZE = 32;
/** Where the first user event sits: real logs start with a chunk header and system records. */
const FIRST_POSITION = 4_096n;
/** Fixed bytes of a pretend prepare record, on top of its variable-length fields. */
const RECORD_OVERHEAD = 153n;

interface StoredEvent {
  index: number;
  streamName: string;
  revision: bigint;
  /** commit == prepare */
  position: bigint;
  id: string;
  type: string;
  contentType: string;
  data: Uint8Array;
  metadata: Uint8Array;
  /** .NET ticks (100 ns) since the Unix epoch, as the server sends `created`. */
  created: bigint;
}

interface Proposed {
  id: string;
  type: string;
  contentType: string;
  data: Uint8Array;
  metadata: Uint8Array;
}

type Expected =
  | { kind: 'any' }
  | { kind: 'no_stream' }
  | { kind: 'stream_exists' }
  | { kind: 'revision'; revision: bigint };

type AppendOutcome =
  | { ok: true; revision: bigint; position: bigint | undefined }
  | { ok: false; current: bigint | undefined };

type Call = grpc.ServerWritableStream<ReadReq, ReadResp>;

class Subscription {
  readonly id = randomUUID();
  closed = false;
  live = false;
  private considered = 0;

  constructor(
    readonly call: Call,
    readonly structuredIds: boolean,
    /** Index in the log of the next event this subscription has to consider. */
    public next: number,
    readonly matches: (event: StoredEvent) => boolean,
    /** Considered events between checkpoints; undefined for unfiltered subscriptions. */
    readonly checkpointInterval: number | undefined,
  ) {}

  /** Returns false when the transport wants the writer to wait for 'drain'. */
  deliver(event: StoredEvent): boolean {
    this.next = event.index + 1;
    let flowing = true;
    if (this.matches(event)) flowing = this.call.write(eventResp(event, this.structuredIds));
    if (this.checkpointInterval !== undefined) {
      this.considered += 1;
      if (this.considered >= this.checkpointInterval) {
        this.considered = 0;
        const checkpoint = new ReadResp.Checkpoint()
          .setCommitPosition(event.position.toString())
          .setPreparePosition(event.position.toString());
        flowing = this.call.write(new ReadResp().setCheckpoint(checkpoint)) && flowing;
      }
    }
    return flowing;
  }
}

class Store {
  readonly log: StoredEvent[] = [];
  private readonly streams = new Map<string, StoredEvent[]>();
  private nextPosition = FIRST_POSITION;

  stream(name: string): StoredEvent[] {
    return this.streams.get(name) ?? [];
  }

  /** Index of the first event at or after `position` (log.length if none). */
  firstAtOrAfter(position: bigint): number {
    let low = 0;
    let high = this.log.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (this.log[mid].position < position) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  append(streamName: string, expected: Expected, proposed: Proposed[]): AppendOutcome {
    const stream = this.stream(streamName);
    const current = BigInt(stream.length) - 1n; // -1: no stream
    const currentOrNone = current < 0n ? undefined : current;
    const wrong = { ok: false, current: currentOrNone } as const;
    const ids = proposed.map((event) => event.id);

    // Idempotence as the server's CheckCommit decides it: the same ids already written right
    // after the expected revision succeed again without writing; a partial match is a
    // wrong expected version ("corrupted idempotency").
    const alreadyWritten = (from: number): AppendOutcome => {
      const same = ids.every((id, k) => stream[from + k]?.id === id);
      if (!same || ids.length === 0) return wrong;
      const last = stream[from + ids.length - 1];
      return { ok: true, revision: last.revision, position: last.position };
    };

    switch (expected.kind) {
      case 'stream_exists':
      case 'any': {
        if (expected.kind === 'stream_exists' && current < 0n) return wrong;
        // With `any` the server finds earlier writes by event id (in a bounded cache; unbounded here).
        const first = ids.length > 0 ? stream.findIndex((event) => event.id === ids[0]) : -1;
        if (first >= 0) return alreadyWritten(first);
        break;
      }
      case 'no_stream':
      case 'revision': {
        const revision = expected.kind === 'no_stream' ? -1n : expected.revision;
        if (revision > current) return wrong;
        if (revision < current) return alreadyWritten(Number(revision + 1n));
        break;
      }
    }

    if (proposed.length === 0) return { ok: true, revision: current, position: undefined };
    const created = BigInt(Date.now()) * 10_000n;
    const written = proposed.map((event, k) => {
      const stored: StoredEvent = {
        ...event,
        index: this.log.length + k,
        streamName,
        revision: current + 1n + BigInt(k),
        position: this.nextPosition,
        created,
      };
      // A pretend record size, so positions are byte offsets rather than a counter.
      this.nextPosition +=
        RECORD_OVERHEAD +
        BigInt(Buffer.byteLength(streamName) + Buffer.byteLength(event.type)) +
        BigInt(event.data.length + event.metadata.length);
      return stored;
    });
    this.log.push(...written);
    this.streams.set(streamName, [...stream, ...written]);
    const last = written[written.length - 1];
    return { ok: true, revision: last.revision, position: last.position };
  }
}

function identifier(name: string): StreamIdentifier {
  return new StreamIdentifier().setStreamName(Buffer.from(name, 'utf8'));
}

function streamName(id: StreamIdentifier | undefined): string {
  return id ? Buffer.from(id.getStreamName_asU8()).toString('utf8') : '';
}

/** Clients may send ids as a string or as two signed 64-bit halves. */
function parseUuid(uuid: UUID | undefined): string {
  if (!uuid) return randomUUID();
  const structured = uuid.getStructured();
  if (structured) {
    const hex = (bits: string) => BigInt.asUintN(64, BigInt(bits)).toString(16).padStart(16, '0');
    const all =
      hex(structured.getMostSignificantBits()) + hex(structured.getLeastSignificantBits());
    return [0, 8, 12, 16, 20].map((at, i, cuts) => all.slice(at, cuts[i + 1])).join('-');
  }
  return uuid.getString().toLowerCase();
}

function uuidMessage(id: string, structured: boolean): UUID {
  if (!structured) return new UUID().setString(id);
  const hex = id.replace(/-/g, '');
  const half = (part: string) => BigInt.asIntN(64, BigInt(`0x${part}`)).toString();
  return new UUID().setStructured(
    new UUID.Structured()
      .setMostSignificantBits(half(hex.slice(0, 16)))
      .setLeastSignificantBits(half(hex.slice(16))),
  );
}

function eventResp(event: StoredEvent, structuredIds: boolean): ReadResp {
  const position = event.position.toString();
  const recorded = new ReadResp.ReadEvent.RecordedEvent()
    .setId(uuidMessage(event.id, structuredIds))
    .setStreamIdentifier(identifier(event.streamName))
    .setStreamRevision(event.revision.toString())
    .setPreparePosition(position)
    .setCommitPosition(position)
    .setData(event.data)
    .setCustomMetadata(event.metadata);
  recorded
    .getMetadataMap()
    .set('type', event.type)
    .set('content-type', event.contentType)
    .set('created', event.created.toString());
  const read = new ReadResp.ReadEvent().setEvent(recorded).setCommitPosition(position);
  return new ReadResp().setEvent(read);
}

/** An error the client turns into a typed CommandError through the `exception` trailer. */
function exceptionError(
  code: grpc.status,
  details: string,
  exception: string,
  extra: Record<string, string> = {},
): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  metadata.set('exception', exception);
  for (const [key, value] of Object.entries(extra)) metadata.set(key, value);
  return { code, details, metadata };
}

function invalid(details: string): Partial<grpc.StatusObject> {
  return { code: grpc.status.INVALID_ARGUMENT, details };
}

type Filter = (event: StoredEvent) => boolean;

/** The server's IEventFilter: stream-name or event-type, by prefixes or a regex. */
function eventFilter(options: ReadReq.Options): { matches: Filter; interval?: number } {
  const filter = options.getFilter();
  if (!filter) return { matches: () => true };
  const expression = filter.getStreamIdentifier() ?? filter.getEventType();
  const field = filter.hasStreamIdentifier()
    ? (event: StoredEvent) => event.streamName
    : (event: StoredEvent) => event.type;
  const prefixes = expression?.getPrefixList() ?? [];
  const regex = expression?.getRegex() ? new RegExp(expression.getRegex()) : undefined;
  const matches: Filter = (event) => {
    const value = field(event);
    if (prefixes.length > 0) return prefixes.some((prefix) => value.startsWith(prefix));
    return regex ? regex.test(value) : true;
  };
  // The server checkpoints every maxSearchWindow x checkpointIntervalMultiplier considered events.
  const window = filter.hasMax() ? filter.getMax() : PAGE_SIZE;
  return { matches, interval: window * Math.max(1, filter.getCheckpointintervalmultiplier()) };
}

export interface DoubleServer {
  port: number;
  /** Ends every subscription call with UNAVAILABLE; returns how many were ended. */
  dropSubscriptions(): number;
  stop(): Promise<void>;
}

export async function startDoubleServer(port = 0, host = '127.0.0.1'): Promise<DoubleServer> {
  const store = new Store();
  const subscriptions = new Set<Subscription>();

  const end = (subscription: Subscription) => {
    subscription.closed = true;
    subscriptions.delete(subscription);
  };

  // Catch-up runs page by page on later ticks, so appends interleave with it as in the real
  // server; reading straight from the log and switching to live in the same tick as the last
  // page means no event is missed or repeated at the hand-over.
  const catchUp = async (subscription: Subscription) => {
    while (!subscription.closed) {
      const stop = Math.min(store.log.length, subscription.next + PAGE_SIZE);
      let flowing = true;
      while (subscription.next < stop) {
        flowing = subscription.deliver(store.log[subscription.next]) && flowing;
      }
      if (subscription.next >= store.log.length) {
        subscription.call.write(new ReadResp().setCaughtUp(new ReadResp.CaughtUp()));
        subscription.live = true;
        return;
      }
      if (flowing) await new Promise((resolve) => setImmediate(resolve));
      else await Promise.race([once(subscription.call, 'drain'), once(subscription.call, 'close')]);
    }
  };

  const subscribe = (call: Call, start: number, matches: Filter, interval?: number) => {
    const options = call.request.getOptions()!;
    const structured = options.getUuidOption()?.hasStructured() ?? false;
    const subscription = new Subscription(call, structured, start, matches, interval);
    subscriptions.add(subscription);
    call.on('cancelled', () => end(subscription));
    call.on('close', () => end(subscription));
    call.write(
      new ReadResp().setConfirmation(
        new ReadResp.SubscriptionConfirmation().setSubscriptionId(subscription.id),
      ),
    );
    // A drop or cancel mid catch-up rejects the wait for 'drain'; the call is over then.
    catchUp(subscription).catch(() => end(subscription));
  };

  const readStream = (call: Call, options: ReadReq.Options) => {
    const streamOptions = options.getStream()!;
    const name = streamName(streamOptions.getStreamIdentifier());
    const stream = store.stream(name);
    const structured = options.getUuidOption()?.hasStructured() ?? false;
    const last = stream.length - 1;
    const from = streamOptions.hasRevision() ? BigInt(streamOptions.getRevision()) : undefined;

    if (options.hasSubscription()) {
      // Exclusive of the given revision: only later events of this stream.
      const after = streamOptions.hasEnd() ? BigInt(last) : from === undefined ? -1n : from;
      const start = after < BigInt(last) ? stream[Number(after + 1n)].index : store.log.length;
      const matches: Filter = (event) => event.streamName === name && event.revision > after;
      subscribe(call, start, matches);
      return;
    }

    if (stream.length === 0) {
      const notFound = new ReadResp.StreamNotFound().setStreamIdentifier(identifier(name));
      call.write(new ReadResp().setStreamNotFound(notFound));
      call.end();
      return;
    }
    const count = BigInt(options.getCount() || '0');
    const backwards = options.getReadDirection() === ReadReq.Options.ReadDirection.BACKWARDS;
    const selected: StoredEvent[] = [];
    if (backwards) {
      const top = streamOptions.hasStart()
        ? 0
        : streamOptions.hasEnd() || from === undefined || from > BigInt(last)
          ? last
          : Number(from);
      for (let r = top; r >= 0 && BigInt(selected.length) < count; r -= 1) selected.push(stream[r]);
    } else {
      const bottom = streamOptions.hasEnd() ? stream.length : Number(from ?? 0n);
      for (let r = bottom; r <= last && BigInt(selected.length) < count; r += 1) {
        selected.push(stream[r]);
      }
    }
    for (const event of selected) call.write(eventResp(event, structured));
    call.end();
  };

  const readAll = (call: Call, options: ReadReq.Options) => {
    const allOptions = options.getAll()!;
    const position = allOptions.getPosition();
    const at = position ? BigInt(position.getCommitPosition()) : undefined;
    const { matches, interval } = eventFilter(options);

    if (options.hasSubscription()) {
      const start = allOptions.hasEnd()
        ? store.log.length
        : at === undefined
          ? 0
          : store.firstAtOrAfter(at + 1n); // exclusive, as the server skips the event at P
      subscribe(call, start, matches, options.hasFilter() ? interval : undefined);
      return;
    }

    const structured = options.getUuidOption()?.hasStructured() ?? false;
    const count = BigInt(options.getCount() || '0');
    const backwards = options.getReadDirection() === ReadReq.Options.ReadDirection.BACKWARDS;
    let sent = 0n;
    if (backwards) {
      const top = allOptions.hasStart()
        ? -1
        : at === undefined
          ? store.log.length - 1
          : store.firstAtOrAfter(at) - 1; // exclusive of an event at P
      for (let i = top; i >= 0 && sent < count; i -= 1) {
        if (!matches(store.log[i])) continue;
        call.write(eventResp(store.log[i], structured));
        sent += 1n;
      }
    } else {
      const bottom = allOptions.hasEnd()
        ? store.log.length
        : at === undefined
          ? 0
          : store.firstAtOrAfter(at); // inclusive of an event at P
      for (let i = bottom; i < store.log.length && sent < count; i += 1) {
        if (!matches(store.log[i])) continue;
        call.write(eventResp(store.log[i], structured));
        sent += 1n;
      }
    }
    call.end();
  };

  const read = (call: Call) => {
    const options = call.request.getOptions();
    if (options?.hasStream()) readStream(call, options);
    else if (options?.hasAll()) readAll(call, options);
    else call.emit('error', invalid('Read needs stream or all options'));
  };

  const append = (
    call: grpc.ServerReadableStream<AppendReq, AppendResp>,
    callback: grpc.sendUnaryData<AppendResp>,
  ) => {
    let options: AppendReq.Options | undefined;
    const proposed: Proposed[] = [];
    let size = 0;
    let failure: Partial<grpc.StatusObject> | undefined;
    call.on('data', (request: AppendReq) => {
      if (failure) return;
      if (request.hasOptions()) {
        options = request.getOptions();
        return;
      }
      const message = request.getProposedMessage();
      if (!message) return;
      const metadata = message.getMetadataMap();
      const type = metadata.get('type');
      const contentType = metadata.get('content-type');
      if (type === undefined || contentType === undefined) {
        failure = exceptionError(
          grpc.status.INVALID_ARGUMENT,
          'Missing required metadata properties',
          'missing-required-metadata-property',
          { 'required-metadata-properties': 'type,content-type' },
        );
        return;
      }
      const data = Uint8Array.from(message.getData_asU8());
      const custom = Uint8Array.from(message.getCustomMetadata_asU8());
      size += data.length + custom.length;
      if (size > MAX_APPEND_SIZE) {
        failure = exceptionError(
          grpc.status.INVALID_ARGUMENT,
          `Maximum Append Size of ${MAX_APPEND_SIZE} Exceeded.`,
          'maximum-append-size-exceeded',
          { 'maximum-append-size': String(MAX_APPEND_SIZE) },
        );
        return;
      }
      proposed.push({ id: parseUuid(message.getId()), type, contentType, data, metadata: custom });
    });
    call.on('error', () => undefined);
    call.on('end', () => {
      if (failure) return callback(failure);
      const name = streamName(options?.getStreamIdentifier());
      if (!options || name === '') return callback(invalid('Append needs options with a stream'));
      const expected: Expected = options.hasRevision()
        ? { kind: 'revision', revision: BigInt(options.getRevision()) }
        : options.hasNoStream()
          ? { kind: 'no_stream' }
          : options.hasStreamExists()
            ? { kind: 'stream_exists' }
            : { kind: 'any' };
      const before = store.log.length;
      const outcome = store.append(name, expected, proposed);
      const response = new AppendResp();
      if (outcome.ok) {
        const success = new AppendResp.Success();
        if (outcome.revision < 0n) success.setNoStream(new Empty());
        else success.setCurrentRevision(outcome.revision.toString());
        if (outcome.position === undefined) success.setNoPosition(new Empty());
        else {
          const at = outcome.position.toString();
          success.setPosition(
            new AppendResp.Position().setCommitPosition(at).setPreparePosition(at),
          );
        }
        response.setSuccess(success);
      } else {
        const wrong = new AppendResp.WrongExpectedVersion();
        if (outcome.current === undefined) wrong.setCurrentNoStream(new Empty());
        else wrong.setCurrentRevision(outcome.current.toString());
        switch (expected.kind) {
          case 'revision':
            wrong.setExpectedRevision(expected.revision.toString());
            break;
          case 'no_stream':
            wrong.setExpectedNoStream(new Empty());
            break;
          case 'stream_exists':
            wrong.setExpectedStreamExists(new Empty());
            break;
          case 'any':
            wrong.setExpectedAny(new Empty());
            break;
        }
        response.setWrongExpectedVersion(wrong);
      }
      // Live subscriptions see new events in the same tick as the write, in log order.
      for (const event of store.log.slice(before)) {
        for (const subscription of subscriptions) {
          if (subscription.live && !subscription.closed) subscription.deliver(event);
        }
      }
      callback(null, response);
    });
  };

  const getSupportedMethods = (
    _call: grpc.ServerUnaryCall<Empty, SupportedMethods>,
    callback: grpc.sendUnaryData<SupportedMethods>,
  ) => {
    // Without BatchAppend here the client appends through Streams/Append.
    const method = (service: string, name: string) =>
      new SupportedMethod().setServiceName(service).setMethodName(name);
    callback(
      null,
      new SupportedMethods()
        .setEventStoreServerVersion('24.10.0-double')
        .setMethodsList([
          method('event_store.client.streams.streams', 'read'),
          method('event_store.client.streams.streams', 'append'),
          method('event_store.client.server_features.serverfeatures', 'getsupportedmethods'),
        ]),
    );
  };

  const server = new grpc.Server();
  // Methods left out (Delete, Tombstone, BatchAppend) answer UNIMPLEMENTED.
  server.addService(StreamsService, { read, append });
  server.addService(ServerFeaturesService, { getSupportedMethods });
  const boundPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );

  const dropSubscriptions = () => {
    const dropped = [...subscriptions];
    for (const subscription of dropped) {
      end(subscription);
      subscription.call.emit('error', {
        code: grpc.status.UNAVAILABLE,
        details: 'Subscription dropped by the EventStoreDB test double',
      });
    }
    return dropped.length;
  };

  return {
    port: boundPort,
    dropSubscriptions,
    stop: async () => {
      dropSubscriptions();
      // Clients may keep their connection open; do not wait on them for long.
      const force = setTimeout(() => server.forceShutdown(), 1_000);
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      clearTimeout(force);
    },
  };
}

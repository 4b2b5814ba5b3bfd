import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, StorageType } from '@nats-io/jetstream';
import type { DataSource } from 'typeorm';
import type { LedgerConfig } from '../config/config';
import type { EventStore, RecordedEvent } from '../event-store/event-store';
import { saveCheckpoint } from '../read/projection-runner';
import { publishChained, publishToJetStream, type JetStreamMessage } from './jetstream-acks';
import { InboxRequests } from './inbox-requests';

export const LEDGER_EVENTS_STREAM = 'LEDGER_EVENTS';
const PUBLISHER_CHECKPOINT = 'jetstream-publisher';
const DUPLICATE_WINDOW_NANOS = 2 * 60 * 1_000_000_000;
/** Offered pages kept for a publisher behind them; past this it reads the store itself. */
const MAX_OFFERED_PAGES = 8;

/** Events of the store, in its order: every event after `after`, up to the last one here. */
interface OfferedPage {
  after: bigint;
  events: RecordedEvent[];
}

/** `ledger.events.{category}.{id}.{type}`: `organization-acme` → `organization.acme`. */
export function subjectOf(event: RecordedEvent): string {
  const dash = event.streamId.indexOf('-');
  return `ledger.events.${event.streamId.slice(0, dash)}.${event.streamId.slice(dash + 1)}.${event.type}`;
}

/** The event as JetStream gets it: its subject, its body, its id as `Nats-Msg-Id`. */
function jetStreamMessageOf(event: RecordedEvent): JetStreamMessage {
  return {
    subject: subjectOf(event),
    payload: JSON.stringify(messageOf(event)),
    messageId: event.eventId,
  };
}

/** The body consumers get (API.md): positions as decimal strings, never rounded. */
export function messageOf(event: RecordedEvent) {
  return {
    eventId: event.eventId,
    type: event.type,
    streamId: event.streamId,
    revision: Number(event.revision),
    position: event.position.toString(),
    occurredAt: event.metadata.occurredAt,
    data: event.data,
    metadata: event.metadata,
  };
}

export interface PublisherCheckpoint {
  load(): Promise<bigint>;
  save(position: bigint): Promise<void>;
}

export interface PublisherOptions {
  replicas?: number;
  /** Publishes awaiting JetStream's ack at once. */
  maxInFlight?: number;
  /** How long a publish waits for its ack; a window with one missing is sent again. */
  ackTimeoutMs?: number;
  pageSize?: number;
  idleMs?: number;
  onError?: (error: unknown) => void;
}

/**
 * Publishes every event of the store to JetStream from a stored checkpoint, with
 * `Nats-Msg-Id` = event id so JetStream drops repeats. The checkpoint moves only past
 * events JetStream acknowledged, so a crash or an outage loses nothing; events go out in
 * store order, so in order per organization.
 */
export class JetStreamPublisher {
  private running = false;
  private loop?: Promise<void>;
  private checkpoint = 0n;
  private ensuredFor?: NatsConnection;
  private inbox?: InboxRequests;
  private wake?: () => void;
  private readonly offered: OfferedPage[] = [];
  /** The last position an offered page reached; undefined while nothing was offered. */
  private offeredUpTo?: bigint;

  constructor(
    private readonly store: EventStore,
    private readonly checkpoints: PublisherCheckpoint,
    private readonly connection: () => NatsConnection | undefined,
    private readonly options: PublisherOptions = {},
  ) {}

  /** The position of the last event JetStream acknowledged. */
  get position(): bigint {
    return this.checkpoint;
  }

  async start(): Promise<void> {
    this.checkpoint = await this.checkpoints.load();
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    this.inbox?.close();
    this.inbox = undefined;
  }

  /**
   * A page another reader of the store just read (the projections, on the same thread): the
   * events after `after`, in store order, as `readAll` returned them. The publisher takes
   * them instead of reading and parsing them again, which was a third of its work.
   */
  offer(after: bigint, events: RecordedEvent[]): void {
    if (events.length === 0) return;
    this.offered.push({ after, events });
    if (this.offered.length > MAX_OFFERED_PAGES) this.offered.shift();
    this.offeredUpTo = events[events.length - 1].position;
    this.wake?.();
  }

  private async run() {
    // Whether the next page may be left to the next offer: not after a wait that saw none.
    let awaitOffer = false;
    while (this.running) {
      try {
        const published = await this.publishNextPage(awaitOffer);
        awaitOffer = published > 0 || (await this.idle(this.options.idleMs ?? 50));
      } catch (error) {
        this.options.onError?.(error);
        await this.idle(1000);
        awaitOffer = false;
      }
    }
  }

  /** Resolves false once `ms` have passed, true when woken (an offer, a stop) before. */
  private idle(ms: number) {
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => done(false), ms);
      function done(woken: boolean) {
        clearTimeout(timer);
        resolve(woken);
      }
      this.wake = () => done(true);
    });
  }

  /**
   * The events after the checkpoint: from an offered page that covers it, else from the
   * store. Level with the offers, it waits for the next (`awaitOffer`) rather than read what
   * they will bring; a wait that saw none reads the store, so a reader that stopped offering
   * (projections failing, say) does not stop publishing.
   */
  private async nextPage(awaitOffer: boolean): Promise<RecordedEvent[]> {
    while (this.offered.length > 0) {
      const { after, events } = this.offered[0];
      if (events[events.length - 1].position <= this.checkpoint) {
        this.offered.shift();
        continue;
      }
      // Events between the checkpoint and this page were never offered: the store has them.
      if (after > this.checkpoint) break;
      this.offered.shift();
      const first = events.findIndex((event) => event.position > this.checkpoint);
      return first === 0 ? events : events.slice(first);
    }
    // Only a reader that has got exactly here brings the next page; one behind (projections
    // rebuilding, say) would hold publishing up until it caught up.
    if (awaitOffer && this.offeredUpTo === this.checkpoint) return [];
    return this.store.readAll({
      fromPosition: this.checkpoint,
      maxCount: this.options.pageSize ?? 1000,
    });
  }

  private async publishNextPage(awaitOffer: boolean): Promise<number> {
    const connection = this.connection();
    if (!connection || connection.isClosed()) return 0;
    await this.ensureStream(connection);
    const page = await this.nextPage(awaitOffer);
    if (page.length === 0) return 0;
    const inbox = this.inbox!;
    const maxInFlight = this.options.maxInFlight ?? 256;
    // Sent in order on one connection; acks awaited a window at a time.
    for (let start = 0; start < page.length; start += maxInFlight) {
      const window = page.slice(start, start + maxInFlight);
      const acks = await this.publishWindow(connection, inbox, window);
      this.announceLowBalances(connection, window, acks);
      const failed = acks.findIndex((ack) => ack.status === 'rejected');
      const done = failed === -1 ? window : window.slice(0, failed);
      if (done.length > 0) {
        this.checkpoint = done[done.length - 1].position;
        await this.checkpoints.save(this.checkpoint);
      }
      if (failed !== -1) throw (acks[failed] as PromiseRejectedResult).reason;
    }
    return page.length;
  }

  /**
   * The LowBalance notice: the fact is written once per crossing (LowBalanceReached), and
   * announced once JetStream has it, so a retried page may announce it again (at least once).
   */
  private announceLowBalances(
    connection: NatsConnection,
    window: RecordedEvent[],
    acks: PromiseSettledResult<unknown>[],
  ) {
    window.forEach((event, index) => {
      if (event.type !== 'LowBalanceReached' || acks[index].status !== 'fulfilled') return;
      const organizationId = event.streamId.slice('organization-'.length);
      connection.publish(
        `ledger.alerts.${organizationId}.low-balance`,
        JSON.stringify({
          organizationId,
          ...(event.data as object),
          eventId: event.eventId,
          occurredAt: event.metadata.occurredAt,
        }),
      );
    });
  }

  /**
   * Each event's ack: the window chained (see publishChained), or one ack per event when the
   * chain broke.
   */
  private async publishWindow(
    connection: NatsConnection,
    inbox: InboxRequests,
    window: RecordedEvent[],
  ): Promise<PromiseSettledResult<unknown>[]> {
    const messages = window.map(jetStreamMessageOf);
    if (await publishChained(connection, inbox, messages)) {
      return messages.map(() => ({ status: 'fulfilled', value: undefined }));
    }
    return Promise.allSettled(
      messages.map(({ subject, payload, messageId }) =>
        publishToJetStream(inbox, subject, payload, messageId),
      ),
    );
  }

  private async ensureStream(connection: NatsConnection) {
    if (this.ensuredFor === connection) return;
    this.inbox?.close();
    this.inbox = new InboxRequests(connection, this.options.ackTimeoutMs ?? 5000);
    const jsm = await jetstreamManager(connection);
    const config = {
      name: LEDGER_EVENTS_STREAM,
      subjects: ['ledger.events.>'],
      storage: StorageType.File,
      duplicate_window: DUPLICATE_WINDOW_NANOS,
      num_replicas: this.options.replicas ?? 1,
    };
    try {
      await jsm.streams.info(LEDGER_EVENTS_STREAM);
    } catch {
      await jsm.streams.add(config);
    }
    this.ensuredFor = connection;
  }
}

/**
 * The service's publisher, wherever it runs: its checkpoint is a row beside the projections'
 * in the read models' database.
 */
export function ledgerPublisher(
  store: EventStore,
  database: DataSource,
  connection: () => NatsConnection | undefined,
  config: Pick<LedgerConfig, 'jetStreamReplicas'>,
  onError: (error: unknown) => void,
): JetStreamPublisher {
  const placeholder = database.options.type === 'postgres' ? '$1' : '?';
  const checkpoint: PublisherCheckpoint = {
    load: async () => {
      const rows: { position: string }[] = await database.query(
        `SELECT "position" FROM "projection_checkpoints" WHERE "projection" = ${placeholder}`,
        [PUBLISHER_CHECKPOINT],
      );
      return rows.length === 0 ? 0n : BigInt(rows[0].position);
    },
    save: (position) =>
      database.transaction((manager) => saveCheckpoint(manager, PUBLISHER_CHECKPOINT, position)),
  };
  return new JetStreamPublisher(store, checkpoint, connection, {
    replicas: config.jetStreamReplicas,
    onError,
  });
}

import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { LRUCache } from 'lru-cache';
import type { LedgerErrorCode } from '../ledger/errors';
import type { OrganizationEvent } from '../ledger/organization/events';
import type { UserEvent } from '../ledger/user/events';

/**
 * A typed client for the ledger's NATS subjects (API.md), for other TypeScript services:
 * request helpers that throw `LedgerClientError` for error replies, the event types, and a
 * JetStream consumer that drops repeats by event id.
 */

export type { OrganizationEvent, UserEvent };
export type LedgerEvent = OrganizationEvent | UserEvent;

/** The body of a message on `ledger.events.{category}.{id}.{type}`. */
export interface LedgerEventMessage<Event extends LedgerEvent = LedgerEvent> {
  eventId: string;
  type: Event['type'];
  streamId: string;
  revision: number;
  /** Global position, a decimal string (never rounded). */
  position: string;
  occurredAt: string;
  data: Event['data'];
  metadata: {
    eventId: string;
    occurredAt: string;
    actor: { kind: 'user' | 'integration' | 'service'; id: string };
    correlationId: string;
    causationId: string;
  };
}

export class LedgerClientError extends Error {
  constructor(
    readonly code: LedgerErrorCode | 'INTERNAL',
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'LedgerClientError';
  }
}

interface Written {
  position: string;
  replayed: boolean;
}

export interface ChargeRequest {
  runId: string;
  charmId: string;
  userId: string;
  amount: number;
  organizationId?: string;
}
export interface ChargeReply extends Written {
  runId: string;
  organizationId: string;
  charged: number;
  balance: { available: number };
}
export interface RefundRequest {
  organizationId: string;
  runId: string;
  amount?: number;
  refundId?: string;
}
export interface RefundReply extends Written {
  organizationId: string;
  runId: string;
  refunded: number;
  totalRefunded: number;
  balance: { available: number };
}
export interface ReserveRequest {
  organizationId?: string;
  reservationId: string;
  charmId: string;
  userId: string;
  amount: number;
  ttlSeconds?: number;
}
export interface ReserveReply extends Written {
  organizationId: string;
  reservationId: string;
  amount: number;
  expiresAt: string;
  balance: { available: number; reserved: number };
}
export interface CaptureRequest {
  organizationId: string;
  reservationId: string;
  amount: number;
  runId?: string;
}
export interface CaptureReply extends Written {
  runId: string;
  captured: number;
  released: number;
  balance: { available: number; reserved: number };
}
export interface ReleaseRequest {
  organizationId: string;
  reservationId: string;
}
export interface ReleaseReply extends Written {
  released: number;
  reason: 'released' | 'expired';
  balance: { available: number; reserved: number };
}
export interface GrantRequest {
  organizationId: string;
  grantId: string;
  amount: number;
  source: 'purchase' | 'plan' | 'promotion' | 'adjustment';
  priority?: number;
  expiresAt?: string | null;
}
export interface GrantReply extends Written {
  grantId: string;
  balance: { available: number; reserved: number };
}
export interface BalanceReply {
  organizationId: string;
  available: number;
  reserved: number;
  grants: { grantId: string; remaining: number; priority: number; expiresAt: string | null }[];
  position: string;
}

export class LedgerClient {
  constructor(
    private readonly nats: NatsConnection,
    private readonly options: { timeoutMs?: number } = {},
  ) {}

  charge = (request: ChargeRequest) => this.ask<ChargeReply>('ledger.charm-runs.charge', request);
  refund = (request: RefundRequest) => this.ask<RefundReply>('ledger.charm-runs.refund', request);
  reserve = (request: ReserveRequest) =>
    this.ask<ReserveReply>('ledger.reservations.create', request);
  capture = (request: CaptureRequest) =>
    this.ask<CaptureReply>('ledger.reservations.capture', request);
  release = (request: ReleaseRequest) =>
    this.ask<ReleaseReply>('ledger.reservations.release', request);
  grant = (request: GrantRequest) => this.ask<GrantReply>('ledger.grants.create', request);
  balance = (organizationId: string) =>
    this.ask<BalanceReply>('ledger.balance.get', { organizationId });

  private async ask<Reply>(subject: string, body: object): Promise<Reply> {
    const message = await this.nats.request(subject, JSON.stringify(body), {
      timeout: this.options.timeoutMs ?? 5000,
    });
    const reply = message.json<
      | ({ ok: true } & Reply)
      | { ok: false; error: { code: LedgerErrorCode; message: string; details?: unknown } }
    >();
    if (!reply.ok)
      throw new LedgerClientError(reply.error.code, reply.error.message, reply.error.details);
    const { ok: _, ...rest } = reply;
    return rest as unknown as Reply;
  }
}

/**
 * Reads LEDGER_EVENTS (all of it, or what `filterSubject` matches, from `startSequence`)
 * and hands each event to `handle` once: delivery is at least once, so repeats within the
 * last `remember` event ids are dropped. Resolves when `signal` aborts.
 */
export async function consumeLedgerEvents(
  nats: NatsConnection,
  handle: (event: LedgerEventMessage) => void | Promise<void>,
  options: {
    filterSubject?: string;
    startSequence?: number;
    remember?: number;
    signal?: AbortSignal;
  } = {},
): Promise<void> {
  const jsm = await jetstreamManager(nats);
  const consumer = await jsm.consumers.add('LEDGER_EVENTS', {
    filter_subject: options.filterSubject ?? 'ledger.events.>',
    ack_policy: AckPolicy.None,
    deliver_policy: options.startSequence ? DeliverPolicy.StartSequence : DeliverPolicy.All,
    ...(options.startSequence ? { opt_start_seq: options.startSequence } : {}),
    inactive_threshold: 60_000_000_000,
  });
  const seen = new LRUCache<string, true>({ max: options.remember ?? 100_000 });
  const messages = await (
    await jetstream(nats).consumers.get('LEDGER_EVENTS', consumer.name)
  ).consume();
  options.signal?.addEventListener('abort', () => void messages.close());
  for await (const message of messages) {
    const event = message.json<LedgerEventMessage>();
    if (seen.has(event.eventId)) continue;
    seen.set(event.eventId, true);
    await handle(event);
  }
}

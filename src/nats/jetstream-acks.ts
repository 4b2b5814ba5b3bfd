import type { PubAck } from '@nats-io/jetstream';
import {
  createInbox,
  headers,
  type Msg,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';

/** What JetStream answers a publish with: its ack, or why it refused. */
interface AckBody {
  stream?: string;
  seq?: number;
  duplicate?: boolean;
  domain?: string;
  error?: { code?: number; err_code?: number; description?: string };
}

/**
 * Publishes to JetStream and collects the acks on one inbox subscription. `js.publish` does
 * the same through a request per message, and nats-core 3.4's request builds a
 * `RequestError("cancelled")`, stack trace and all, after every answer it resolves
 * (`RequestOne.cancel`): on the hot bench that was a tenth of the read side's thread, and
 * the request machinery around it (a timer and a deferred per message) much of the rest.
 * Acks that do not come are given up on as a window (`abandon`), and the caller publishes
 * again: the message id makes JetStream drop what it already had.
 */
export class JetStreamAcks {
  private readonly inbox: string;
  private readonly subscription: Subscription;
  private readonly waiting = new Map<
    string,
    { resolve: (ack: PubAck) => void; reject: (error: Error) => void }
  >();
  private sent = 0;

  constructor(private readonly connection: NatsConnection) {
    this.inbox = createInbox();
    this.subscription = connection.subscribe(`${this.inbox}.*`, {
      callback: (error, message) => {
        if (!error) this.acked(message);
      },
    });
  }

  /** Resolves with JetStream's ack; `messageId` goes out as `Nats-Msg-Id`. */
  publish(subject: string, payload: string, messageId: string): Promise<PubAck> {
    const token = String(this.sent++);
    const header = headers();
    header.set('Nats-Msg-Id', messageId);
    return new Promise<PubAck>((resolve, reject) => {
      this.waiting.set(token, { resolve, reject });
      try {
        this.connection.publish(subject, payload, {
          headers: header,
          reply: `${this.inbox}.${token}`,
        });
      } catch (error) {
        this.waiting.delete(token);
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /** Fails every publish still waiting for its ack. */
  abandon(reason: Error): void {
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const { reject } of waiting) reject(reason);
  }

  close(): void {
    this.abandon(new Error('JetStream acks: closed'));
    this.subscription.unsubscribe();
  }

  private acked(message: Msg) {
    const token = message.subject.slice(this.inbox.length + 1);
    const waiter = this.waiting.get(token);
    if (!waiter) return;
    this.waiting.delete(token);
    // A status instead of an ack: 503 when no stream takes the subject.
    if (message.headers?.hasError || message.data.length === 0) {
      waiter.reject(
        new Error(`JetStream did not take the message (${message.headers?.code ?? 'no ack'})`),
      );
      return;
    }
    let body: AckBody;
    try {
      body = message.json<AckBody>();
    } catch {
      waiter.reject(new Error('JetStream answered with something other than an ack'));
      return;
    }
    if (body.error || !body.stream || body.seq === undefined) {
      waiter.reject(
        new Error(`JetStream refused the message: ${body.error?.description ?? 'invalid ack'}`),
      );
      return;
    }
    waiter.resolve({
      stream: body.stream,
      seq: body.seq,
      duplicate: body.duplicate === true,
      ...(body.domain === undefined ? {} : { domain: body.domain }),
    });
  }
}

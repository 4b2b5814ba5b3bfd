import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';

interface Waiting {
  resolve: (reply: Msg) => void;
  reject: (error: Error) => void;
  deadline: number;
}

/**
 * Requests whose replies all come to one inbox subscription, told apart by the reply
 * subject's last token. nats-core 3.4's own `request()` builds a `RequestError` with its
 * stack trace after every reply it resolves (`RequestOne.cancel`), besides a timer and a
 * deferred per request: at thousands a second that was a tenth of a thread's time. Here one
 * timer sweeps out the requests whose reply did not come within `timeoutMs`.
 */
export class InboxRequests {
  private readonly inbox = createInbox();
  private readonly subscription: Subscription;
  /** In the order sent, so the sweep stops at the first one still in time. */
  private readonly waiting = new Map<string, Waiting>();
  private readonly sweeper: NodeJS.Timeout;
  private sent = 0;

  constructor(
    private readonly connection: NatsConnection,
    private readonly timeoutMs: number,
  ) {
    this.subscription = connection.subscribe(`${this.inbox}.*`, {
      callback: (error, reply) => {
        if (!error) this.answered(reply);
      },
    });
    this.sweeper = setInterval(() => this.sweep(), Math.max(10, timeoutMs / 4));
    this.sweeper.unref();
  }

  /** The reply, or an error: a status instead (503: nobody listens), or none in time. */
  request(subject: string, payload: string | Uint8Array, header?: MsgHdrs): Promise<Msg> {
    const token = String(this.sent++);
    return new Promise<Msg>((resolve, reject) => {
      this.waiting.set(token, { resolve, reject, deadline: performance.now() + this.timeoutMs });
      try {
        this.connection.publish(subject, payload, {
          reply: `${this.inbox}.${token}`,
          ...(header ? { headers: header } : {}),
        });
      } catch (error) {
        this.waiting.delete(token);
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /** Fails what still waits, and stops listening. */
  close(): void {
    clearInterval(this.sweeper);
    this.subscription.unsubscribe();
    this.fail(this.waiting.keys(), () => new Error('closed before the reply came'));
  }

  private answered(reply: Msg) {
    const token = reply.subject.slice(this.inbox.length + 1);
    const waiting = this.waiting.get(token);
    if (!waiting) return;
    this.waiting.delete(token);
    if (reply.headers?.hasError) {
      waiting.reject(
        new Error(`no reply: status ${reply.headers.code} ${reply.headers.description}`),
      );
    } else {
      waiting.resolve(reply);
    }
  }

  private sweep() {
    const now = performance.now();
    const late: string[] = [];
    for (const [token, { deadline }] of this.waiting) {
      if (deadline > now) break;
      late.push(token);
    }
    this.fail(late, () => new Error(`no reply within ${this.timeoutMs} ms`));
  }

  private fail(tokens: Iterable<string>, error: () => Error) {
    for (const token of [...tokens]) {
      const waiting = this.waiting.get(token);
      this.waiting.delete(token);
      waiting?.reject(error());
    }
  }
}

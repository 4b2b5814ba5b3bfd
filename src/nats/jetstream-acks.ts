import { PubHeaders, type PubAck } from '@nats-io/jetstream';
import { headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import type { InboxRequests } from './inbox-requests';

/** What JetStream answers a publish with: its ack, or why it refused. */
interface AckBody {
  stream?: string;
  seq?: number;
  duplicate?: boolean;
  domain?: string;
  error?: { description?: string };
}

/**
 * Publishes to JetStream as `js.publish` would (`messageId` as `Nats-Msg-Id`, so JetStream
 * drops a repeat), its ack coming back on the shared inbox of `requests` (see InboxRequests).
 */
export async function publishToJetStream(
  requests: InboxRequests,
  subject: string,
  payload: string,
  messageId: string,
): Promise<PubAck> {
  const header = headers();
  header.set(PubHeaders.MsgIdHdr, messageId);
  return ackOf(await requests.request(subject, payload, header));
}

/** One message for JetStream: `messageId` goes out as `Nats-Msg-Id`. */
export interface JetStreamMessage {
  subject: string;
  payload: string;
  messageId: string;
}

/**
 * Publishes `messages` as a chain: each after the first only if the stream's last message is
 * the one before it (`Nats-Expected-Last-Msg-Id`), and only the first and the last acked.
 * A message that is not stored (a repeat of an id, which JetStream drops; a refusal), or
 * another publisher's message in between, breaks the chain: every later message is refused
 * too, so the last one's ack says so. Resolves to true when both acks are new and `messages.length - 1` apart, so that all
 * of them were stored, in a row and in order; to false otherwise, and the caller sends them
 * again one ack each (their ids keep the ones already stored from being stored twice). Two
 * acks a window instead of one a message: what JetStream sends back, and this process
 * reads, no longer grows with the events.
 */
export async function publishChained(
  connection: NatsConnection,
  requests: InboxRequests,
  messages: JetStreamMessage[],
): Promise<boolean> {
  if (messages.length === 0) return true;
  const headersFor = (index: number) => {
    const header = headers();
    header.set(PubHeaders.MsgIdHdr, messages[index].messageId);
    if (index > 0) header.set(PubHeaders.ExpectedLastMsgIdHdr, messages[index - 1].messageId);
    return header;
  };
  const acked = (index: number) =>
    requests
      .request(messages[index].subject, messages[index].payload, headersFor(index))
      .then(ackOf);
  const last = messages.length - 1;
  const first = acked(0);
  for (let index = 1; index < last; index += 1) {
    const { subject, payload } = messages[index];
    connection.publish(subject, payload, { headers: headersFor(index) });
  }
  try {
    const [head, tail] = await Promise.all([first, last > 0 ? acked(last) : first]);
    return !head.duplicate && !tail.duplicate && tail.seq === head.seq + last;
  } catch {
    // Refused (the chain broke) or no ack in time: the caller finds out one ack at a time.
    return false;
  }
}

function ackOf(reply: Msg): PubAck {
  let body: AckBody;
  try {
    body = reply.json<AckBody>();
  } catch {
    throw new Error('JetStream answered with something other than an ack');
  }
  if (body.error || !body.stream || body.seq === undefined) {
    throw new Error(`JetStream refused the message: ${body.error?.description ?? 'invalid ack'}`);
  }
  return {
    stream: body.stream,
    seq: body.seq,
    duplicate: body.duplicate === true,
    ...(body.domain === undefined ? {} : { domain: body.domain }),
  };
}

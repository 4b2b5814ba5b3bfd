import type { PubAck } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
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
  header.set('Nats-Msg-Id', messageId);
  const reply = await requests.request(subject, payload, header);
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

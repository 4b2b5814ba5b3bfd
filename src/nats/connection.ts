import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { LedgerConfig } from '../config/config';

export const RECONNECT_WAIT_MS = 1000;

/**
 * Connects to NATS, trying again every second until it answers; the client then reconnects
 * by itself. Undefined if `stopped()` turns true first. Nothing in the ledger waits for it.
 */
export async function connectWhenReachable(
  config: Pick<LedgerConfig, 'natsServers'>,
  name: string,
  stopped: () => boolean,
  warn: (message: string) => void,
): Promise<NatsConnection | undefined> {
  while (!stopped()) {
    try {
      return await connect({
        servers: config.natsServers,
        name,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: RECONNECT_WAIT_MS,
        // Otherwise the client captures a stack trace up front for every request, and every
        // JetStream publish is one: a tenth of the hot path's time went there.
        noAsyncTraces: true,
      });
    } catch (error) {
      warn(`NATS not reachable (${String(error)}); retrying`);
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_WAIT_MS));
    }
  }
  return undefined;
}

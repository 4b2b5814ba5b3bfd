/**
 * Errors that mean a dependency (the read models' PostgreSQL, an event store server) cannot
 * be reached right now. They are not bugs: every edge answers them as UNAVAILABLE (HTTP 503
 * with Retry-After, a NATS error reply, gRPC UNAVAILABLE) so that callers retry, never as a
 * 500. Found by the fault suite: with PostgreSQL cut off, read-model reads answered 500.
 */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** PostgreSQL SQLSTATEs: class 08 (connection exception), shutdown, cannot connect now. */
const POSTGRES_UNAVAILABLE = /^(08[0-9A-Z]{3}|57P0[123]|53300)$/;

/** pg's messages for a connection that broke or never came up. */
const CONNECTION_LOST =
  /Connection terminated|not queryable|timeout exceeded when trying to connect|connect ECONNREFUSED/;

export function isDependencyUnavailable(error: unknown): boolean {
  let current: unknown = error;
  // TypeORM keeps pg's error in `driverError`; others chain it as `cause`.
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || POSTGRES_UNAVAILABLE.test(code)))
      return true;
    if (CONNECTION_LOST.test(current.message)) return true;
    const next = current as { driverError?: unknown; cause?: unknown };
    current = next.driverError ?? next.cause;
  }
  return false;
}

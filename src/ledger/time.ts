/** Idempotency keys (runId, grantId, reservationId, transferId) are kept this long. */
export const IDEMPOTENCY_WINDOW_MS = 7 * 24 * 60 * 60 * 1000;

/** A reservation nobody captures or releases goes back by itself after this long. */
export const DEFAULT_RESERVATION_TTL_SECONDS = 15 * 60;

export const toMillis = (iso: string): number => Date.parse(iso);
export const toIso = (millis: number): string => new Date(millis).toISOString();

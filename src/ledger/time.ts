/** Idempotency keys (runId, grantId, reservationId, transferId) are kept this long. */
export const IDEMPOTENCY_WINDOW_MS = 7 * 24 * 60 * 60 * 1000;

/** A reservation nobody captures or releases goes back by itself after this long. */
export const DEFAULT_RESERVATION_TTL_SECONDS = 15 * 60;

/**
 * The last conversion each way is kept: a batch decides every command at one `now`, and evolve
 * parses back the very time decide wrote, so nearly every call repeats the one before. The
 * two conversions were 2.2% of the request thread's busy time in a profile of the hot bench.
 */
let lastIso = '';
let lastIsoMillis = NaN;
let lastMillis = NaN;
let lastMillisIso = '';

export const toMillis = (iso: string): number => {
  if (iso !== lastIso) {
    lastIso = iso;
    lastIsoMillis = Date.parse(iso);
  }
  return lastIsoMillis;
};

export const toIso = (millis: number): string => {
  if (millis !== lastMillis) {
    // Throws for a time out of Date's range, as before, and then keeps nothing.
    lastMillisIso = new Date(millis).toISOString();
    lastMillis = millis;
  }
  return lastMillisIso;
};

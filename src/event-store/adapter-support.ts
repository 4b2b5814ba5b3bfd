import type { SubscribeOptions } from './event-store';

/** A read's maxCount, checked the same way by every adapter; undefined means no limit. */
export function checkedMaxCount(maxCount: number | undefined): number | undefined {
  if (maxCount === undefined) return undefined;
  if (!Number.isSafeInteger(maxCount) || maxCount < 0) {
    throw new RangeError(`maxCount must be a non-negative integer, got ${maxCount}`);
  }
  return maxCount;
}

/** Tells the subscriber why its subscription stopped; never loses the failure silently. */
export function reportStoppedSubscription(options: SubscribeOptions, error: unknown): void {
  if (options.onError === undefined) {
    process.emitWarning(
      `event store subscription stopped: ${error instanceof Error ? error.message : String(error)}`,
    );
    return;
  }
  try {
    options.onError(error);
  } catch {
    // The subscription has already stopped; an error reporter that throws has nowhere to go.
  }
}

import { randomFillSync } from 'node:crypto';
import { v7 } from 'uuid';

/**
 * Random bytes for event ids, drawn from the kernel 8 KB at a time. uuid's own pool holds
 * 256 bytes, so it made a `getrandom` system call every 16 ids, and system calls are dear
 * on this machine's VM: `randomFillSync` was 2.5% of the request thread on `hot`. Measured
 * alone, 200,000 ids: 530-590 ns an id with uuid's pool, 280-320 with this one.
 */
const pool = new Uint8Array(8192);
let taken = pool.length;
/** uuid's rule for v7 (its state is not used once the random bytes are given). */
let lastMillis = -Infinity;
let sequence = 0;

/**
 * A new event id: a UUIDv7, so ids made later sort later and the store's unique index on
 * them grows at its end. With random (v4) ids each event of a batch dirtied a leaf page of
 * its own: a 64-event commit over 300,000 events wrote 401 KB of WAL and took 2.0 ms of CPU,
 * with v7 81 KB and 1.4 ms.
 */
export function newEventId(): string {
  if (taken === pool.length) {
    randomFillSync(pool);
    taken = 0;
  }
  const random = pool.subarray(taken, (taken += 16));
  // Within a millisecond the sequence counts up from a random start, as uuid's own v7 does.
  const now = Date.now();
  if (now > lastMillis) {
    sequence = (random[6] << 23) | (random[7] << 16) | (random[8] << 8) | random[9];
    lastMillis = now;
  } else {
    sequence = (sequence + 1) | 0;
    if (sequence === 0) lastMillis += 1;
  }
  return v7({ random, msecs: lastMillis, seq: sequence });
}

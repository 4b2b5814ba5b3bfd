import { validate, version } from 'uuid';
import { newEventId } from '../../../src/write/event-ids';

describe('event ids', () => {
  // 8 KB of random bytes make 512 ids: 3,000 cross the pool's refill several times.
  const ids = Array.from({ length: 3000 }, () => newEventId());

  it('are UUIDv7, each one new', () => {
    for (const id of ids) {
      expect(validate(id)).toBe(true);
      expect(version(id)).toBe(7);
    }
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('sort in the order they were made, within a millisecond too', () => {
    // 3,000 ids take far less than 3,000 ms: many share a millisecond.
    const millis = new Set(ids.map((id) => id.slice(0, 13)));
    expect(millis.size).toBeLessThan(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });

  it('take their millisecond from the clock', () => {
    const before = Date.now();
    const id = newEventId();
    const millis = parseInt(id.replace(/-/g, '').slice(0, 12), 16);
    expect(millis).toBeGreaterThanOrEqual(before);
    expect(millis).toBeLessThanOrEqual(Date.now());
  });
});

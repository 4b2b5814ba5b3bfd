import { toIso, toMillis } from '../../../src/ledger/time';

const DEC_1 = Date.UTC(2026, 11, 1);

describe('times as ISO 8601 and as epoch milliseconds', () => {
  it('converts each time for itself, however the calls alternate', () => {
    // The last conversion each way is kept: a repeat must give the same, another time its own.
    const times = [0, DEC_1, DEC_1, DEC_1 + 1, 0, 86_400_000];
    expect(times.map(toIso)).toEqual(times.map((millis) => new Date(millis).toISOString()));
    const isos = [
      '2026-12-01T00:00:00.000Z',
      '2026-12-01T00:00:00.000Z',
      '1970-01-01T00:00:00.000Z',
    ];
    expect(isos.map(toMillis)).toEqual([DEC_1, DEC_1, 0]);
    expect(toIso(toMillis('2026-12-01T07:30:15.250Z'))).toBe('2026-12-01T07:30:15.250Z');
  });

  it('refuses a time out of range, and converts the next one as before', () => {
    expect(() => toIso(8.64e15 + 1)).toThrow(RangeError);
    expect(toIso(1_000)).toBe('1970-01-01T00:00:01.000Z');
    expect(() => toIso(8.64e15 + 1)).toThrow(RangeError);
    expect(toMillis('not a time')).toBeNaN();
    expect(toMillis('1970-01-01T00:00:01.000Z')).toBe(1_000);
  });
});

import { Map as ImmutableMap } from 'immutable';
import { RunBook } from '../../../src/ledger/organization/run-book';
import type { CharmRun } from '../../../src/ledger/organization/state';

const run = (runId: string, chargedAt = 0, refunded = 0): CharmRun => ({
  runId,
  charmId: 'c',
  userId: 'u',
  amount: 5,
  chargedAt,
  refundable: [{ grantId: 'g', amount: 5 - refunded }],
  refunded,
  refunds: ImmutableMap(),
  availableAfter: 95,
});

describe('the runs an organization remembers (RunBook)', () => {
  it('is persistent: recording a run leaves the book it came from as it was', () => {
    const settled = RunBook.of([run('a'), run('b')]);
    const later = settled.set(run('c')).set(run('a', 0, 2));
    expect(settled.size).toBe(2);
    expect(settled.has('c')).toBe(false);
    expect(settled.get('a')?.refunded).toBe(0);
    expect(later.get('a')?.refunded).toBe(2);
    expect(later.get('b')?.runId).toBe('b');
  });

  it('counts and lists a run once when a newer copy replaces a settled one', () => {
    const book = RunBook.of([run('a'), run('b')])
      .set(run('a', 0, 1))
      .set(run('a', 0, 2))
      .set(run('c'));
    expect(book.size).toBe(3);
    const listed = [...book.values()];
    expect(listed.map((entry) => entry.runId).sort()).toEqual(['a', 'b', 'c']);
    expect(listed.find((entry) => entry.runId === 'a')?.refunded).toBe(2);
  });

  it('keeps only the runs charged since a horizon, from both tiers', () => {
    const book = RunBook.of([run('old', 10), run('kept', 50)])
      .set(run('new-old', 20))
      .set(run('new', 60));
    const pruned = book.chargedSince(50);
    expect([...pruned.values()].map((entry) => entry.runId).sort()).toEqual(['kept', 'new']);
    expect(pruned.size).toBe(2);
    expect(pruned.has('old')).toBe(false);
    expect(book.has('old')).toBe(true);
    // Nothing dropped: the same runs; everything dropped: an empty book.
    expect(book.chargedSince(0).size).toBe(4);
    expect(book.chargedSince(61).size).toBe(0);
    expect([...book.chargedSince(61).values()]).toEqual([]);
  });

  it('folds the recent runs into a new settled tier once they outnumber it, losing none', () => {
    let book = RunBook.empty();
    const before: RunBook[] = [];
    for (let i = 0; i < 10_000; i++) {
      if (i % 2_500 === 0) before.push(book);
      book = book.set(run(`r${i}`, i));
    }
    // Folded at 4,096 and 8,192 runs: what is left on top is what came after.
    expect(book.settled.size).toBe(8_192);
    expect(book.recent.size).toBe(10_000 - 8_192);
    expect(book.size).toBe(10_000);
    expect(book.get('r0')?.chargedAt).toBe(0);
    expect(book.get('r9999')?.chargedAt).toBe(9_999);
    expect(before.map((earlier) => earlier.size)).toEqual([0, 2_500, 5_000, 7_500]);
  });
});

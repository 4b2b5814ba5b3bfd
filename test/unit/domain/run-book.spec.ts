import { Map as ImmutableMap } from 'immutable';
import { RecentRuns } from '../../../src/ledger/organization/recent-runs';
import { MergingTier, RunBook, tiersOf } from '../../../src/ledger/organization/run-book';
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

  it('folds every 2,048 recent runs into a tier of its own, losing none', () => {
    let book = RunBook.empty();
    const before: RunBook[] = [];
    for (let i = 0; i < 10_000; i++) {
      if (i % 2_500 === 0) before.push(book);
      book = book.set(run(`r${i}`, i));
    }
    // Folded at 2,048, 4,096, 6,144 and 8,192 runs: what is left on top is what came after.
    expect(book.settled.size).toBe(8_192);
    expect(book.recent.size).toBe(10_000 - 8_192);
    expect(book.size).toBe(10_000);
    expect(book.get('r0')?.chargedAt).toBe(0);
    expect(book.get('r9999')?.chargedAt).toBe(9_999);
    expect(before.map((earlier) => earlier.size)).toEqual([0, 2_500, 5_000, 7_500]);
  });

  it('stacks O(log n) tiers, merging four of a size, and leaves merging to a snapshot', () => {
    let book = RunBook.empty();
    for (let i = 0; i < 100_000; i++) book = book.set(run(`r${i}`, i));
    // A refund of an old run goes on top, and replaces the settled copy.
    book = book.set(run('r10', 10, 3));

    // 48 folds of 2,048 runs (1,696 left recent): three tiers of 16 folds (48 is 300 in base 4).
    const tiers = [...tiersOf(book.settled)];
    expect(tiers.map((tier) => tier.size)).toEqual([16, 16, 16].map((folds) => folds * 2_048));
    // No charge merged two tiers: those to merge still answer from both.
    const merging = tiers.filter((tier) => tier instanceof MergingTier);
    expect(merging.length).toBeGreaterThan(0);
    expect(merging.every((tier) => (tier as MergingTier).merged === undefined)).toBe(true);
    expect(book.size).toBe(100_000);
    expect([...book.values()]).toHaveLength(100_000);
    expect(book.get('r10')?.refunded).toBe(3);
    expect(book.get('r99999')?.chargedAt).toBe(99_999);
    expect(book.has('r100000')).toBe(false);

    // One more fold is a tier of its own; three more make four of a size, merged as one.
    const more = (from: number, count: number) => {
      for (let i = from; i < from + count; i++) book = book.set(run(`r${i}`, i));
      return [...tiersOf(book.settled)].map((tier) => tier.size);
    };
    expect(more(100_000, 2_048 - 1_697)).toEqual([2_048, ...[16, 16, 16].map((f) => f * 2_048)]);
    expect(more(100_351, 3 * 2_048)).toEqual([4, 16, 16, 16].map((folds) => folds * 2_048));

    // Settling a merge changes nothing anybody reads.
    const tier = merging[0] as MergingTier;
    const runs = [...tier.values()];
    tier.settle(RunBook.of(runs).settled);
    expect(tier.merged).toBeDefined();
    expect(tier.size).toBe(runs.length);
    expect(book.size).toBe(106_495);
    expect(book.get('r10')?.refunded).toBe(3);
    expect(book.chargedSince(50_000).size).toBe(56_495);
  });
});

describe('the recent runs of a book (RecentRuns), recorded in place', () => {
  const ids = (recent: RecentRuns) => [...recent.values()].map((each) => each.runId);

  it('given a line of versions, each still sees only what was recorded up to it', () => {
    const first = RecentRuns.empty().set(run('a')).set(run('b'));
    const second = first.set(run('c')).set(run('a', 0, 2));
    const third = second.set(run('a', 0, 4));

    expect(ids(first)).toEqual(['a', 'b']);
    expect(first.size).toBe(2);
    expect(first.has('c')).toBe(false);
    expect(first.get('a')?.refunded).toBe(0);
    expect(second.get('a')?.refunded).toBe(2);
    expect(third.get('a')?.refunded).toBe(4);
    // A replaced run is listed once, in the place its id was first recorded.
    expect(ids(third)).toEqual(['a', 'b', 'c']);
    expect([...third.values()].map((each) => each.refunded)).toEqual([4, 0, 0]);
    expect(third.size).toBe(3);
  });

  it('when an older version records, it branches: neither line sees the other', () => {
    const base = RecentRuns.empty().set(run('a')).set(run('b'));
    const kept = base.set(run('c'));
    const dropped = base.set(run('d')).set(run('a', 0, 1));

    expect(ids(kept)).toEqual(['a', 'b', 'c']);
    expect(kept.get('a')?.refunded).toBe(0);
    expect(ids(dropped)).toEqual(['a', 'b', 'd']);
    expect(dropped.get('a')?.refunded).toBe(1);
    expect(ids(base)).toEqual(['a', 'b']);
    // The first line goes on as before after the branch.
    expect(ids(kept.set(run('e')))).toEqual(['a', 'b', 'c', 'e']);
    expect(dropped.has('c')).toBe(false);
  });

  it('keeps the empty runs empty: two organizations starting from them each see their own', () => {
    const empty = RecentRuns.empty();
    const one = empty.set(run('x'));
    const other = empty.set(run('y'));
    expect(ids(one)).toEqual(['x']);
    expect(ids(other)).toEqual(['y']);
    expect(ids(empty)).toEqual([]);
    expect(ids(RunBook.empty().set(run('z')).recent)).toEqual(['z']);
    expect(RunBook.empty().size).toBe(0);
  });

  it('a book pruned, folded or restored from an older state keeps that state as it was', () => {
    let book = RunBook.empty();
    for (let i = 0; i < 1_000; i++) book = book.set(run(`r${i}`, i));
    const older = book;
    for (let i = 1_000; i < 3_000; i++) book = book.set(run(`r${i}`, i));
    // `book` folded at 2,048 runs; `older` still has its thousand recent runs and records on.
    const branched = older.set(run('r0', 0, 5));
    expect(older.size).toBe(1_000);
    expect(older.get('r0')?.refunded).toBe(0);
    expect(branched.get('r0')?.refunded).toBe(5);
    expect(branched.size).toBe(1_000);
    expect(older.chargedSince(500).size).toBe(500);
    expect(book.size).toBe(3_000);
    expect(book.get('r0')?.refunded).toBe(0);
  });
});

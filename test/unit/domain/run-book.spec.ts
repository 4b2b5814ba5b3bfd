import { Map as ImmutableMap } from 'immutable';
import { RecentRuns } from '../../../src/ledger/organization/recent-runs';
import { FOLD_AT, MergingTier, RunBook, tiersOf } from '../../../src/ledger/organization/run-book';
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

  it('folds every FOLD_AT recent runs into a tier of its own, losing none', () => {
    let book = RunBook.empty();
    const before: RunBook[] = [];
    for (let i = 0; i < 10_000; i++) {
      if (i % 2_500 === 0) before.push(book);
      book = book.set(run(`r${i}`, i));
    }
    // Folded at FOLD_AT runs, twice that and so on: what is left on top is what came after.
    const folded = Math.floor(10_000 / FOLD_AT) * FOLD_AT;
    expect(folded).toBeGreaterThan(0);
    expect(book.settled.size).toBe(folded);
    expect(book.recent.size).toBe(10_000 - folded);
    expect(book.size).toBe(10_000);
    expect(book.get('r0')?.chargedAt).toBe(0);
    expect(book.get('r9999')?.chargedAt).toBe(9_999);
    expect(before.map((earlier) => earlier.size)).toEqual([0, 2_500, 5_000, 7_500]);
  });

  it('stacks O(log n) tiers, taking four of a size as one, and leaves grouping to a snapshot', () => {
    // 48 folds (300 in base 4), and 53/64 of a fold left recent.
    const total = 48 * FOLD_AT + (FOLD_AT * 53) / 64;
    let book = RunBook.empty();
    for (let i = 0; i < total; i++) book = book.set(run(`r${i}`, i));
    // A refund of an old run goes on top, and replaces the settled copy.
    book = book.set(run('r10', 10, 3));

    // Three tiers of 16 folds.
    const tiers = [...tiersOf(book.settled)];
    expect(tiers.map((tier) => tier.size)).toEqual([16, 16, 16].map((folds) => folds * FOLD_AT));
    // No charge grouped tiers: those to group still answer from each.
    const merging = tiers.filter((tier) => tier instanceof MergingTier);
    expect(merging.length).toBeGreaterThan(0);
    expect(merging.every((tier) => (tier as MergingTier).merged === undefined)).toBe(true);
    expect(book.size).toBe(total);
    expect([...book.values()]).toHaveLength(total);
    expect(book.get('r10')?.refunded).toBe(3);
    expect(book.get(`r${total - 1}`)?.chargedAt).toBe(total - 1);
    expect(book.has(`r${total}`)).toBe(false);

    // One more fold is a tier of its own; three more make four of a size, taken as one.
    let next = total;
    const more = (count: number) => {
      for (let i = next; i < next + count; i++) book = book.set(run(`r${i}`, i));
      next += count;
      return [...tiersOf(book.settled)].map((tier) => tier.size);
    };
    // r10's newer copy is one of the recent runs.
    const recent = total - 48 * FOLD_AT + 1;
    expect(more(FOLD_AT - recent)).toEqual([1, 16, 16, 16].map((folds) => folds * FOLD_AT));
    expect(more(3 * FOLD_AT)).toEqual([4, 16, 16, 16].map((folds) => folds * FOLD_AT));

    // Settling a group changes nothing anybody reads.
    const tier = merging[0] as MergingTier;
    const runs = [...tier.values()];
    tier.settle(RunBook.of(runs).settled);
    expect(tier.merged).toBeDefined();
    expect(tier.size).toBe(runs.length);
    expect(book.size).toBe(next);
    expect(book.get('r10')?.refunded).toBe(3);
    const horizon = Math.floor(next / 2);
    expect(book.chargedSince(horizon).size).toBe(next - horizon);
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
    const half = FOLD_AT / 2;
    for (let i = 0; i < half; i++) book = book.set(run(`r${i}`, i));
    const older = book;
    for (let i = half; i < 3 * FOLD_AT; i++) book = book.set(run(`r${i}`, i));
    // `book` folded at FOLD_AT runs; `older` still has its recent runs and records on.
    const branched = older.set(run('r0', 0, 5));
    expect(older.size).toBe(half);
    expect(older.get('r0')?.refunded).toBe(0);
    expect(branched.get('r0')?.refunded).toBe(5);
    expect(branched.size).toBe(half);
    expect(older.chargedSince(half / 2).size).toBe(half / 2);
    expect(book.size).toBe(3 * FOLD_AT);
    expect(book.get('r0')?.refunded).toBe(0);
  });
});

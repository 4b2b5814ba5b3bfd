import fc from 'fast-check';
import type { Change } from '../../../projections';
import { InMemoryReadModel } from '../../../projections/in-memory-model';
import { coalesce, statementSizes } from '../../../src/read/sql-changes';

/** Changes over a few rows of two tables, so that the same row is hit often. */
const key = fc.record({ id: fc.constantFrom('a', 'b', 'c') });
const table = fc.constantFrom('usage', 'grants');
const amounts = fc.record({ credits: fc.integer({ min: -5, max: 5 }) });
const change: fc.Arbitrary<Change> = fc.oneof(
  fc.record({ kind: fc.constant('accumulate' as const), table, key, add: amounts }),
  fc.record({ kind: fc.constant('increment' as const), table, key, add: amounts }),
  fc.record({
    kind: fc.constant('upsert' as const),
    table,
    key,
    set: fc.record({ name: fc.constantFrom('x', 'y') }, { requiredKeys: [] }),
  }),
  fc.record({
    kind: fc.constant('update' as const),
    table,
    key,
    set: fc.record(
      { credits: fc.integer({ min: 0, max: 9 }), name: fc.constantFrom('x', 'y') },
      {
        requiredKeys: [],
      },
    ),
  }),
  fc.record({ kind: fc.constant('delete' as const), table, key }),
);

const applied = (changes: readonly Change[]) => {
  const model = new InMemoryReadModel();
  model.apply(changes);
  return Object.fromEntries(
    [...model.tables].map(([name, rows]) => [name, Object.fromEntries(rows)]),
  );
};

describe('coalescing a page of read-model changes', () => {
  it('leaves the read models exactly as the changes one by one would', () => {
    fc.assert(
      fc.property(fc.array(change, { maxLength: 40 }), (changes) => {
        const asGiven = structuredClone(changes);
        expect(applied(coalesce(changes).flat())).toEqual(applied(changes));
        // Audit verify applies the projections' changes as they came: folding copies them.
        expect(changes).toEqual(asGiven);
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps rows apart whose key values would read alike run together', () => {
    // Joined with a separator, the first two read alike; as text, the last two do.
    const changes: Change[] = [
      { kind: 'accumulate', table: 't', key: { a: 'x\u0000y', b: 'z' }, add: { n: 1 } },
      { kind: 'accumulate', table: 't', key: { a: 'x', b: 'y\u0000z' }, add: { n: 2 } },
      { kind: 'accumulate', table: 't', key: { a: 1, b: 'z' }, add: { n: 4 } },
      { kind: 'accumulate', table: 't', key: { a: '1', b: 'z' }, add: { n: 8 } },
    ];
    expect(coalesce(changes)).toEqual(changes.map((change) => [change]));
  });

  it('folds a hot organization’s page of charges into one write per row', () => {
    const charges: Change[] = Array.from({ length: 500 }, () => ({
      kind: 'accumulate',
      table: 'usage_daily',
      key: { organization_id: 'hot', day: '2026-11-29' },
      add: { runs: 1, credits: 3 },
    }));
    expect(coalesce(charges)).toEqual([
      [
        {
          kind: 'accumulate',
          table: 'usage_daily',
          key: { organization_id: 'hot', day: '2026-11-29' },
          add: { runs: 500, credits: 1500 },
        },
      ],
    ]);
  });
});

describe('rows per multi-row statement', () => {
  it('covers every row once, in few statements of few sizes', () => {
    const sizes = new Set<number>();
    for (let count = 0; count <= 1_000; count++) {
      const statements = statementSizes(count);
      expect(statements.reduce((sum, size) => sum + size, 0)).toBe(count);
      expect(statements.length).toBeLessThanOrEqual(Math.floor(count / 128) + 7);
      statements.forEach((size) => sizes.add(size));
    }
    // The drivers cache prepared statements by text: each shape has these sizes only.
    expect([...sizes].sort((a, b) => a - b)).toEqual([1, 2, 4, 8, 16, 32, 64, 128]);
  });
});

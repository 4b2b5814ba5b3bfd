import { randomUUID } from 'node:crypto';
import { RunIdFilter } from '../../../src/ledger/organization/run-id-filter';

describe("a settled tier's run id filter (RunIdFilter)", () => {
  const ids = Array.from({ length: 20_000 }, (_, i) => (i % 2 ? randomUUID() : `run-${i}`));

  it('never says a run it holds is absent, also once written and read back', () => {
    const filter = RunIdFilter.sizedFor(ids.length);
    for (const id of ids) filter.add(id);
    const read = RunIdFilter.read(filter.toText(), RunIdFilter.HASHES);
    expect(ids.filter((id) => !filter.mayHold(id))).toEqual([]);
    expect(ids.filter((id) => !read.mayHold(id))).toEqual([]);
  });

  it('says almost every other run id is absent: few tiers build their index for a new run', () => {
    const filter = RunIdFilter.sizedFor(ids.length);
    for (const id of ids) filter.add(id);
    const others = Array.from({ length: 100_000 }, (_, i) =>
      i % 2 ? randomUUID() : `run-${20_000 + i}`,
    );
    const maybe = others.filter((id) => filter.mayHold(id)).length;
    expect(maybe / others.length).toBeLessThan(0.002);
  });

  it('holds nothing when empty, and reads back as it was written', () => {
    const empty = RunIdFilter.sizedFor(0);
    expect(['a', 'run-1', randomUUID()].some((id) => empty.mayHold(id))).toBe(false);
    const one = RunIdFilter.sizedFor(1);
    one.add('only');
    const text = one.toText();
    expect(RunIdFilter.read(text, RunIdFilter.HASHES).toText()).toBe(text);
    expect(RunIdFilter.read(text, RunIdFilter.HASHES).mayHold('only')).toBe(true);
  });

  it('answers each filter for itself when one run id is asked of many in turn', () => {
    // The hashes of the id asked last are kept: they must not leak into another id's answer.
    const small = RunIdFilter.sizedFor(10);
    const large = RunIdFilter.sizedFor(50_000);
    small.add('run-small');
    large.add('run-large');
    const asked = ['run-small', 'run-small', 'run-large', 'run-small', 'run-large', 'run-large'];
    expect(asked.map((id) => [small.mayHold(id), large.mayHold(id)])).toEqual(
      asked.map((id) => [id === 'run-small', id === 'run-large']),
    );
    small.add('run-large');
    expect([small.mayHold('run-large'), large.mayHold('run-small')]).toEqual([true, false]);
  });
});

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type Snapshot,
  SnapshotPartsMissingError,
  WrongExpectedRevisionError,
} from '../../../src/event-store/event-store';
import { SqliteEventStore } from '../../../src/event-store/sqlite/sqlite-event-store';
import { LedgerError } from '../../../src/ledger/errors';
import { availableCredits } from '../../../src/ledger/organization/burn-down';
import { FOLD_AT } from '../../../src/ledger/organization/run-book';
import {
  AggregateWriter,
  type CommandContext,
  type WriterObserver,
} from '../../../src/write/aggregate-writer';
import { organizationAggregate } from '../../../src/write/writers';
import { TestClock } from '../../support/ledger-app';

const context: CommandContext = { actor: { kind: 'service', id: 'test' }, correlationId: 'c-1' };

describe('the write pipeline (group commit per organization)', () => {
  let store: SqliteEventStore;
  const clock = new TestClock();
  const writer = (
    options: Partial<{
      cacheSize: number;
      snapshotEvery: number;
      snapshotSliceMs: number;
      observer: WriterObserver;
      onBackgroundError: (error: unknown) => void;
    }> = {},
  ) =>
    new AggregateWriter(organizationAggregate, store, store, clock, {
      cacheSize: 100,
      snapshotEvery: 1000,
      ...options,
    });

  beforeEach(() => {
    store = new SqliteEventStore(':memory:');
  });
  afterEach(() => store.close());

  async function organizationWith(
    organizations: ReturnType<typeof writer>,
    id: string,
    credits: number,
  ) {
    await organizations.execute(
      id,
      {
        type: 'CreateOrganization',
        organizationId: id,
        name: id,
        kind: 'company',
        ownerUserId: 'u',
      },
      context,
      () => undefined,
    );
    await organizations.execute(
      id,
      {
        type: 'GrantCredits',
        grantId: 'g',
        amount: credits,
        source: 'purchase',
        priority: 100,
        expiresAt: null,
      },
      context,
      () => undefined,
    );
  }

  /** The revisions of the snapshots saved from now on, in order (they are still saved). */
  function savedSnapshotRevisions(): bigint[] {
    const saved: bigint[] = [];
    const save = store.saveSnapshot.bind(store);
    jest.spyOn(store, 'saveSnapshot').mockImplementation(async (snapshot) => {
      saved.push(snapshot.revision);
      await save(snapshot);
    });
    return saved;
  }

  const charge = (
    organizations: ReturnType<typeof writer>,
    id: string,
    runId: string,
    amount = 1,
  ) =>
    organizations.execute(
      id,
      { type: 'ChargeCharmRun', runId, charmId: 'c', userId: 'u', amount },
      context,
      ({ state, replayed }) => ({ available: availableCredits(state, clock.now()), replayed }),
    );

  it('appends the commands waiting in two writes, the second decided while the first is written, and answers each caller on its own', async () => {
    const organizations = writer();
    await organizationWith(organizations, 'hot', 100);
    const steps: string[] = [];
    const appendToStream = store.appendToStream.bind(store);
    const append = jest.spyOn(store, 'appendToStream').mockImplementation(async (...args) => {
      steps.push('first sent');
      const written = await appendToStream(...args);
      steps.push('first written');
      return written;
    });
    const appendAfter = store.appendAfter.bind(store);
    const after = jest.spyOn(store, 'appendAfter').mockImplementation((...args) => {
      steps.push('second sent');
      return appendAfter(...args);
    });
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => charge(organizations, 'hot', `r${i}`)),
    );
    const writes = [...append.mock.calls, ...after.mock.calls].map(([, events]) => events.length);
    expect(writes).toEqual([25, 25]);
    expect(steps).toEqual(['first sent', 'second sent', 'first written']);
    // Each answer saw the state right after its own command.
    expect(answers.map((written) => written.answer.available).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 50 }, (_, i) => 50 + i),
    );
  });

  it('gives events UUIDs that sort in the order they were written (the id index grows at its end)', async () => {
    const organizations = writer();
    await organizationWith(organizations, 'hot', 100);
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => charge(organizations, 'hot', `r${round}-${i}`)),
      );
    }
    const ids = (await store.readStream('organization-hot')).map((event) => event.eventId);
    expect(ids).toHaveLength(62);
    for (const id of ids)
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect([...ids].sort()).toEqual(ids);
  });

  it('puts commands that arrive in the same turn into one write, however late in that turn', async () => {
    const organizations = writer();
    await organizationWith(organizations, 'hot', 100);
    const append = jest.spyOn(store, 'appendToStream');
    // As requests validated asynchronously: each reaches the queue a few promises later.
    const arriving = Array.from({ length: 8 }, async (_, i) => {
      for (let step = 0; step < i * 3; step++) await Promise.resolve();
      return charge(organizations, 'hot', `late-${i}`);
    });
    await Promise.all(arriving);
    expect(append).toHaveBeenCalledTimes(1);
    expect(append.mock.calls[0][1]).toHaveLength(8);
  });

  it("sends every organization's commands of a turn together: one commit for all of them", async () => {
    const organizations = writer();
    const ids = Array.from({ length: 40 }, (_, i) => `org-${i}`);
    for (const id of ids) await organizationWith(organizations, id, 10);
    const write = jest.spyOn(store['writer'], 'write');
    const written = await Promise.all(ids.map((id) => charge(organizations, id, `run-${id}`, 3)));
    expect(written.map(({ answer }) => answer.available)).toEqual(ids.map(() => 7));
    expect(write).toHaveBeenCalledTimes(1);
    expect(write.mock.calls[0][0].appends.map((append) => append.streamId)).toEqual(
      ids.map((id) => `organization-${id}`),
    );
    // Each answered with its own organization's write, at the commit's positions.
    expect(new Set(written.map(({ position }) => position)).size).toBe(ids.length);
  });

  it('fails a rejected command alone, the rest of its batch is written', async () => {
    const organizations = writer();
    await organizationWith(organizations, 'o', 10);
    const results = await Promise.allSettled([
      charge(organizations, 'o', 'a', 4),
      charge(organizations, 'o', 'b', 4),
      charge(organizations, 'o', 'too-much', 5),
      charge(organizations, 'o', 'c', 2),
    ]);
    expect(results.map((result) => result.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    const rejected = results[2] as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(LedgerError);
    expect(rejected.reason.code).toBe('INSUFFICIENT_CREDITS');
    const events = await store.readStream('organization-o');
    expect(events.filter((event) => event.type === 'CharmRunCharged')).toHaveLength(3);
  });

  it('answers only once the write is durable', async () => {
    const organizations = writer();
    await organizationWith(organizations, 'o', 10);
    let finishWrite!: () => void;
    const append = store.appendToStream.bind(store);
    jest.spyOn(store, 'appendToStream').mockImplementationOnce(async (...args) => {
      await new Promise<void>((resolve) => (finishWrite = resolve));
      return append(...args);
    });
    let answered = false;
    const pending = charge(organizations, 'o', 'r').then(() => (answered = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(answered).toBe(false);
    finishWrite();
    await pending;
    expect(answered).toBe(true);
  });

  it('reloads and redoes the batch when another process wrote the stream meanwhile', async () => {
    const here = writer();
    const elsewhere = writer();
    await organizationWith(here, 'shared', 10);
    await charge(elsewhere, 'shared', 'by-the-other-process', 6);
    // `here` still has the old state cached; its write conflicts, then succeeds on the new one.
    const written = await charge(here, 'shared', 'mine', 3);
    expect(written.answer.available).toBe(1);
    await expect(charge(here, 'shared', 'one-too-many', 2)).rejects.toMatchObject({
      code: 'INSUFFICIENT_CREDITS',
    });
  });

  /** Holds the next appendToStream until the returned function is called. */
  function holdNextAppend(): () => void {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const append = store.appendToStream.bind(store);
    jest.spyOn(store, 'appendToStream').mockImplementationOnce(async (...args) => {
      await held;
      return append(...args);
    });
    return release;
  }

  it('sends the next batch while the one before is written, and answers in order', async () => {
    const organizations = writer();
    await organizationWith(organizations, 'o', 10);
    const release = holdNextAppend();
    const after = jest.spyOn(store, 'appendAfter');
    const answered: string[] = [];
    const noted =
      (name: string) =>
      <T>(written: T) => {
        answered.push(name);
        return written;
      };
    const first = Promise.all([
      charge(organizations, 'o', 'a', 2).then(noted('a')),
      charge(organizations, 'o', 'b', 3).then(noted('b')),
    ]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    const second = charge(organizations, 'o', 'c', 4).then(noted('c'));
    // The second batch went to the store on top of the first, which is still being written.
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(after).toHaveBeenCalledTimes(1);
    expect(after.mock.calls[0][2].revision).toBe(3n);
    expect(answered).toEqual([]);

    release();
    const [[a, b], c] = await Promise.all([first, second]);
    expect(answered).toEqual(['a', 'b', 'c']);
    expect([a.answer.available, b.answer.available, c.answer.available]).toEqual([8, 5, 1]);
    expect(c.position).toBeGreaterThan(b.position);
    const charged = (await store.readStream('organization-o')).filter(
      (event) => event.type === 'CharmRunCharged',
    );
    expect(charged.map((event) => (event.data as { runId: string }).runId)).toEqual([
      'a',
      'b',
      'c',
    ]);
  });

  it('sends the commands of one turn as one batch, even when a write finishes in that turn', async () => {
    const organizations = writer();
    await organizationWith(organizations, 'o', 100);
    // The next write is made at once, its answer held until released.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const append = store.appendToStream.bind(store);
    jest.spyOn(store, 'appendToStream').mockImplementationOnce(async (...args) => {
      const result = await append(...args);
      await held;
      return result;
    });
    const first = charge(organizations, 'o', 'first');
    await new Promise((resolve) => setTimeout(resolve, 10));
    const after = jest.spyOn(store, 'appendAfter');

    // In one turn: a command, the write answered, more commands a few promises later.
    const arriving = [charge(organizations, 'o', 'early')];
    release();
    for (let i = 0; i < 7; i++) {
      for (let step = 0; step < 5; step++) await Promise.resolve();
      arriving.push(charge(organizations, 'o', `late-${i}`));
    }
    const answers = await Promise.all([first, ...arriving]);

    expect(after).toHaveBeenCalledTimes(1);
    expect(after.mock.calls[0][1]).toHaveLength(8);
    expect(answers.map(({ answer }) => answer.available)).toEqual([
      99, 98, 97, 96, 95, 94, 93, 92, 91,
    ]);
  });

  it("never writes a batch after somebody else's events, even as many as the batch it was decided on", async () => {
    const here = writer();
    const elsewhere = writer();
    await organizationWith(here, 'shared', 10);
    await elsewhere.read('shared');
    const release = holdNextAppend();
    const mine = charge(here, 'shared', 'mine', 3);
    await new Promise((resolve) => setTimeout(resolve, 10));
    // Another process writes one event where `mine` (one event, still held) was to go...
    await charge(elsewhere, 'shared', 'theirs', 6);
    // ...and the next batch here, decided on top of `mine`, must not go on after it.
    const after = jest.spyOn(store, 'appendAfter');
    const next = charge(here, 'shared', 'next', 1);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(after).toHaveBeenCalledTimes(1);
    await expect(after.mock.results[0].value).rejects.toBeInstanceOf(WrongExpectedRevisionError);

    release();
    // Both redone on what the store holds: 10 - 6 - 3 - 1.
    expect((await mine).answer.available).toBe(1);
    expect((await next).answer.available).toBe(0);
    const runs = (await store.readStream('organization-shared'))
      .filter((event) => event.type === 'CharmRunCharged')
      .map((event) => (event.data as { runId: string }).runId);
    expect(runs).toEqual(['theirs', 'mine', 'next']);
  });

  it('answers UNAVAILABLE when the store cannot take the write, and forgets its cached state', async () => {
    const organizations = writer();
    await organizationWith(organizations, 'o', 10);
    jest.spyOn(store, 'appendToStream').mockRejectedValueOnce(new Error('disk I/O error'));
    await expect(charge(organizations, 'o', 'lost')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    const after = await charge(organizations, 'o', 'next');
    expect(after.answer.available).toBe(9);
  });

  it('loads from the latest snapshot and only the events after it', async () => {
    const first = writer({ snapshotEvery: 10 });
    await organizationWith(first, 'big', 1000);
    for (let i = 0; i < 25; i++) await charge(first, 'big', `r${i}`);
    const snapshot = await store.loadSnapshot('organization-big');
    expect(snapshot?.revision).toBe(19n);

    const restarted = writer({ snapshotEvery: 10 });
    const read = jest.spyOn(store, 'readStream');
    const loaded = await restarted.read('big');
    expect(read).toHaveBeenCalledTimes(1);
    expect(read.mock.calls[0][1]?.fromRevision).toBe(snapshot!.revision + 1n);
    expect(loaded.revision).toBe(26n);
    expect(availableCredits(loaded.state, clock.now())).toBe(975);
    const replay = await charge(restarted, 'big', 'r3');
    expect(replay.answer.replayed).toBe(true);
  });

  it('loads a snapshot of a version it still reads, and ignores one it does not know', async () => {
    const first = writer({ snapshotEvery: 10 });
    await organizationWith(first, 'big', 1000);
    for (let i = 0; i < 25; i++) await charge(first, 'big', `r${i}`);
    await first.snapshotsWritten();
    const snapshot = (await store.loadSnapshot('organization-big'))!;
    const readFrom = async (schemaVersion: number) => {
      await store.saveSnapshot({ ...snapshot, schemaVersion });
      const read = jest.spyOn(store, 'readStream');
      const loaded = await writer().read('big');
      const from = read.mock.calls[0][1]?.fromRevision;
      read.mockRestore();
      expect(availableCredits(loaded.state, clock.now())).toBe(975);
      return from;
    };

    const current = organizationAggregate.snapshots!.schemaVersion;
    expect(await readFrom(current)).toBe(snapshot.revision + 1n);
    expect(await readFrom(99)).toBe(0n);

    // A version 5 snapshot (written by the previous format) is read, not replayed past.
    await store.saveSnapshot({
      streamId: 'organization-acme',
      revision: 40n,
      position: 1n,
      schemaVersion: 5,
      parts: [],
      state: readFileSync(
        join(__dirname, '..', 'domain', 'fixtures', 'organization-snapshot-v5.txt'),
        'utf8',
      ),
    });
    const acme = await writer().read('acme');
    expect(acme.revision).toBe(40n);
    expect(acme.state.runs.size).toBe(8);
    expect(acme.state.runs.get('r7')).toMatchObject({ reservationId: 'h1', amount: 4 });
  });

  it('reports how long each load from the store took, and whether it started from a snapshot', async () => {
    const first = writer({ snapshotEvery: 10 });
    await organizationWith(first, 'big', 1000);
    for (let i = 0; i < 25; i++) await charge(first, 'big', `r${i}`);
    await first.snapshotsWritten();

    const loads: [string, number][] = [];
    const observer: WriterObserver = {
      decided: () => undefined,
      appended: () => undefined,
      conflicted: () => undefined,
      loaded: (from, seconds) => void loads.push([from, seconds]),
    };
    const restarted = writer({ snapshotEvery: 10, observer });
    await restarted.read('big');
    await restarted.read('big');
    await organizationWith(restarted, 'new', 10);

    // The second read of 'big' came from the cache: no load.
    expect(loads.map(([from]) => from)).toEqual(['snapshot', 'events']);
    for (const [, seconds] of loads) {
      expect(seconds).toBeGreaterThan(0);
      expect(seconds).toBeLessThan(5);
    }
  });

  it('writes each settled tier of runs once: later snapshots send the recent runs and new tiers', async () => {
    const organizations = writer({ snapshotEvery: 100 });
    await organizationWith(organizations, 'busy', 100_000);
    const sent: Snapshot[] = [];
    const save = store.saveSnapshot.bind(store);
    jest.spyOn(store, 'saveSnapshot').mockImplementation(async (snapshot) => {
      sent.push(snapshot);
      await save(snapshot);
    });
    for (let wave = 0; wave < 100; wave++) {
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => charge(organizations, 'busy', `r${wave}-${i}`)),
      );
    }
    await organizations.snapshotsWritten();

    // One at a time: a wave whose writes are answered while one is saved takes none.
    expect(sent.length).toBeGreaterThan(30);
    const textsSent = sent.flatMap((snapshot) =>
      snapshot.parts.filter((part) => part.text !== undefined).map((part) => part.key),
    );
    // No part's text goes twice, and every part a snapshot lists went with one before or then.
    expect(new Set(textsSent).size).toBe(textsSent.length);
    for (const snapshot of sent) {
      for (const part of snapshot.parts) expect(textsSent).toContain(part.key);
    }
    // 10,000 runs: a snapshot's own text holds the recent runs only, never all of them.
    const longest = Math.max(...sent.map((snapshot) => snapshot.state.length));
    const last = (await store.loadSnapshot('organization-busy'))!;
    const all = last.state.length + last.parts.reduce((sum, part) => sum + part.text!.length, 0);
    expect(longest).toBeLessThan(all / 2);
    // A few tiers on top, not one per fold: at most three of each size class, a power of four
    // of folds (the digits of the number of folds in base 4), and a group lists the parts of
    // its four tiers beside its own (a group of class c is made of (4^(c+1) - 1) / 3 parts).
    const head = JSON.parse(last.state.slice(0, last.state.indexOf('\n'))) as {
      runTiers: string[];
    };
    const digits = Math.floor(10_000 / FOLD_AT)
      .toString(4)
      .split('')
      .reverse()
      .map(Number);
    expect(head.runTiers).toHaveLength(digits.reduce((sum, digit) => sum + digit, 0));
    const parts = digits.reduce((sum, digit, c) => sum + (digit * (4 ** (c + 1) - 1)) / 3, 0);
    expect(last.parts).toHaveLength(parts);

    const restarted = writer();
    const loaded = await restarted.read('busy');
    // Opened and granted (revisions 0 and 1), then 10,000 charges: from the snapshot on.
    expect(loaded.revision).toBe(10_001n);
    expect(loaded.snapshotRevision).toBe(last.revision);
    expect(loaded.state.runs.size).toBe(10_000);
    expect(availableCredits(loaded.state, clock.now())).toBe(90_000);
    expect((await charge(restarted, 'busy', 'r0-17')).answer.replayed).toBe(true);
    expect((await charge(restarted, 'busy', 'r99-99')).answer.replayed).toBe(true);
  });

  it('sends every part again once another process dropped one it took as stored', async () => {
    const failures: unknown[] = [];
    const organizations = writer({
      snapshotEvery: 100,
      onBackgroundError: (error) => failures.push(error),
    });
    await organizationWith(organizations, 'busy', 100_000);
    const chargeMore = async (from: number, count: number) => {
      for (let i = from; i < from + count; i++) await charge(organizations, 'busy', `r${i}`);
      await organizations.snapshotsWritten();
    };
    // Three folds and a quarter: the 200 charges below fold nothing more.
    const first = 3.25 * FOLD_AT;
    await chargeMore(0, first);
    const ours = (await store.loadSnapshot('organization-busy'))!;
    expect(ours.parts.length).toBeGreaterThan(0);
    // Another process saves its snapshot of the same state, its parts under keys of its own.
    let theirs = ours.state;
    for (const { key } of ours.parts) theirs = theirs.replaceAll(key, `theirs-${key}`);
    await store.saveSnapshot({
      ...ours,
      state: theirs,
      parts: ours.parts.map(({ key, text }) => ({ key: `theirs-${key}`, text })),
    });

    // Our next snapshot lists our parts without their texts: refused, nothing saved...
    await chargeMore(first, 100);
    expect(failures).toEqual([expect.any(SnapshotPartsMissingError)]);
    expect((await store.loadSnapshot('organization-busy'))!.state).toBe(theirs);
    // ...and the one after sends them all again.
    await chargeMore(first + 100, 100);
    expect(failures).toHaveLength(1);
    const saved = (await store.loadSnapshot('organization-busy'))!;
    expect(saved.revision).toBeGreaterThan(ours.revision);
    expect(saved.parts.map((part) => part.key).sort()).toEqual(
      ours.parts.map((part) => part.key).sort(),
    );
    const loaded = await writer().read('busy');
    expect(loaded.snapshotRevision).toBe(saved.revision);
    expect(loaded.state.runs.size).toBe(first + 200);
  });

  it('loads from the events when a snapshot lists a part the store does not give back', async () => {
    const organizations = writer({ snapshotEvery: 100 });
    await organizationWith(organizations, 'busy', 100_000);
    for (let i = 0; i < 2_500; i++) await charge(organizations, 'busy', `r${i}`);
    await organizations.snapshotsWritten();
    const stored = (await store.loadSnapshot('organization-busy'))!;
    jest.spyOn(store, 'loadSnapshot').mockResolvedValue({ ...stored, parts: [] });
    const failures: unknown[] = [];
    const loaded = await writer({ onBackgroundError: (error) => failures.push(error) }).read(
      'busy',
    );
    expect(failures).toEqual([
      expect.objectContaining({ message: expect.stringContaining('missing') }),
    ]);
    expect(loaded.snapshotRevision).toBe(-1n);
    expect(loaded.state.runs.size).toBe(2_500);
  });

  it("writes a large organization's snapshot a slice at a time, answering others meanwhile", async () => {
    // No time per turn: every slice waits for the next turn of the event loop.
    const organizations = writer({ snapshotEvery: 4_000, snapshotSliceMs: 0 });
    await organizationWith(organizations, 'large', 100_000);
    await organizationWith(organizations, 'other', 10);
    const saved = savedSnapshotRevisions();
    // Revisions 0 and 1 made the organization: the 4,000th event starts a snapshot.
    await Promise.all(
      Array.from({ length: 3_997 }, (_, i) => charge(organizations, 'large', `r${i}`)),
    );
    expect(saved).toEqual([]);
    await charge(organizations, 'large', 'r-last');
    // Not written in the same turn: the slices come one per turn of the event loop...
    expect(saved).toEqual([]);
    const other = await charge(organizations, 'other', 'x');
    expect(other.answer.available).toBe(9);
    // ...and then the whole snapshot is written once, at the revision it was taken at.
    await organizations.snapshotsWritten();
    expect(saved).toEqual([3_999n]);
    const restarted = writer();
    const loaded = await restarted.read('large');
    expect(loaded.snapshotRevision).toBe(3_999n);
    expect(loaded.state.runs.size).toBe(3_998);
    expect((await charge(restarted, 'large', 'r17')).answer.replayed).toBe(true);
  });

  it('keeps a bounded number of organizations in memory', async () => {
    const organizations = writer({ cacheSize: 2 });
    for (const id of ['a', 'b', 'c']) await organizationWith(organizations, id, 5);
    const read = jest.spyOn(store, 'readStream');
    await organizations.read('c');
    expect(read).not.toHaveBeenCalled();
    await organizations.read('a');
    expect(read).toHaveBeenCalledWith('organization-a', expect.anything());
  });
});

import { readFileSync } from 'node:fs';
import { Map as ImmutableMap } from 'immutable';
import { join } from 'node:path';
import { balanceAt } from '../../../src/ledger/organization/balance';
import { decide } from '../../../src/ledger/organization/decide';
import type { OrganizationCommand } from '../../../src/ledger/organization/commands';
import type { OrganizationEvent } from '../../../src/ledger/organization/events';
import { evolve } from '../../../src/ledger/organization/evolve';
import type { CharmRun, OrganizationState } from '../../../src/ledger/organization/state';
import { RunIdFilter } from '../../../src/ledger/organization/run-id-filter';
import {
  deserializeOrganization,
  serializeOrganization,
  serializeOrganizationInSlices,
  type OrganizationSnapshot,
} from '../../../src/ledger/organization/snapshot';
import {
  FOLD_AT,
  LayeredTier,
  MergingTier,
  RunBook,
  tiersOf,
} from '../../../src/ledger/organization/run-book';
import { at, DAY, T0 } from '../../support/decider';
import {
  capturedAsRun,
  charge,
  charged,
  created,
  granted,
  memberAdded,
  organization,
  refunded,
  reserved,
  type Event,
} from './organization-fixtures';

describe('idempotency window', () => {
  const old = [created(), granted('g', 100), charged('r1', [{ grantId: 'g', amount: 5 }])];
  /** Any later event moves event time on; keys past 7 days are dropped then. */
  const later = (days: number) => ({
    ...memberAdded(`u-${days}`, 'member'),
    occurredAt: at(T0 + days * DAY),
  });

  it('remembers a runId for 7 days', () => {
    organization
      .given([...old, later(6)])
      .when(charge('r1', 5), T0 + 6 * DAY)
      .thenNothing();
  });

  it('forgets it by 8 days (pruned daily past 7): the run can no longer be refunded, the id is free', () => {
    const given = organization.given([...old, later(8)]);
    expect(given.state.runs.has('r1')).toBe(false);
    given.when({ type: 'RefundCharmRun', runId: 'r1' }, T0 + 8 * DAY).thenThrows('NOT_FOUND');
    expect(given.when(charge('r1', 5), T0 + 8 * DAY).events()).toHaveLength(1);
  });

  it('drops spent grants untouched for 7 days, but never one with credits held', () => {
    const spent = [
      created(),
      granted('spent', 5),
      charged('r1', [{ grantId: 'spent', amount: 5 }]),
    ];
    expect(organization.given([...spent, later(8)]).state.grants.has('spent')).toBe(false);
    const held = [
      created(),
      granted('held', 5),
      reserved('h1', [{ grantId: 'held', amount: 5 }], at(T0 + 7 * DAY)),
    ];
    expect(organization.given([...held, later(8)]).state.grants.get('held')).toMatchObject({
      held: 5,
    });
  });
});

const byRunId = <Run extends { runId: string }>(runs: Run[]) =>
  runs.sort((a, b) => a.runId.localeCompare(b.runId));

/** What `command` decides a day after T0: its events without their time, or the error's code. */
function decisionOf(command: OrganizationCommand, state: OrganizationState) {
  try {
    return decide(command, state, T0 + DAY).map(({ type, data }) => ({ type, data }));
  } catch (error) {
    return (error as { code: string }).code;
  }
}

/** The state a snapshot restores to, its parts handed back by key as a store does. */
function restore(snapshot: OrganizationSnapshot, schemaVersion?: number): OrganizationState {
  const parts = new Map(snapshot.parts.map(({ key, text }) => [key, text]));
  return deserializeOrganization(snapshot.state, schemaVersion, parts);
}

const roundTrip = (state: OrganizationState) => restore(serializeOrganization(state));

/** A snapshot's first line: the keys of its settled tiers on top, newest first. */
const headOf = (snapshot: OrganizationSnapshot) =>
  JSON.parse(snapshot.state.slice(0, snapshot.state.indexOf('\n'))) as { runTiers: string[] };

/**
 * The state `organization-snapshot-v<version>.txt` was written from by that version's
 * serializer (`runs` charges, a reservation and a refund; then a charge, a refund and a capture
 * on a book of one settled tier), and that snapshot read back: both decide and balance alike.
 */
function readFixture(
  version: number,
  recipe: { runs: number; credits: number; amount: number; charms: number; refund: number },
  /** A snapshot with parts (version 7 on), instead of the text file. */
  written?: OrganizationSnapshot,
) {
  const { runs, credits, amount, charms, refund } = recipe;
  const folded = organization.given([
    created(),
    granted('a', credits),
    granted('b', 50, { expiresAt: at(T0 + DAY) }),
    ...Array.from({ length: runs }, (_, i) =>
      charged(`r${i}`, [{ grantId: i % 2 ? 'b' : 'a', amount }], { charmId: `c${i % charms}` }),
    ),
    reserved('h1', [{ grantId: 'a', amount: 10 }], at(T0 + DAY)),
    refunded('r1', [{ grantId: 'b', amount: 1 }], { refundId: 'x' }),
  ]).state;
  let state: OrganizationState = { ...folded, runs: RunBook.of([...folded.runs.values()]) };
  for (const command of [
    charge(`r${runs}`, 4),
    { type: 'RefundCharmRun', runId: 'r2', amount: refund, refundId: 'y' } as const,
    { type: 'CaptureReservation', reservationId: 'h1', amount: 4, runId: `r${runs + 1}` } as const,
  ]) {
    state = decide(command, state, T0).reduce(evolve, state);
  }
  const file = join(__dirname, 'fixtures', `organization-snapshot-v${version}.txt`);
  const restored = written
    ? restore(written, version)
    : deserializeOrganization(readFileSync(file, 'utf8'), version, new Map());
  expect(byRunId([...restored.runs.values()])).toEqual(byRunId([...state.runs.values()]));
  expect(restored.runs.size).toBe(runs + 2);
  expect(balanceAt(restored, T0)).toEqual(balanceAt(state, T0));
  for (const command of [
    charge('r1', 3),
    charge(`r${runs + 2}`, 5),
    { type: 'ExpireDue' } as const,
  ]) {
    expect(decisionOf(command, restored)).toEqual(decisionOf(command, state));
  }
  return { restored, state };
}

describe('snapshots', () => {
  it('restore a state that decides and balances exactly as the folded one', () => {
    const events: Event[] = [
      created(),
      memberAdded('bob', 'member'),
      granted('a', 50, { priority: 1 }),
      granted('b', 50, { expiresAt: at(T0 + DAY) }),
      charged('r1', [{ grantId: 'a', amount: 20 }]),
      reserved('h1', [{ grantId: 'a', amount: 10 }], at(T0 + DAY)),
      refunded('r1', [{ grantId: 'a', amount: 5 }], { refundId: 'x' }),
      { type: 'LowBalanceThresholdSet', data: { threshold: 30 } },
    ];
    const { state } = organization.given(events);
    const restored = roundTrip(state);
    expect(balanceAt(restored, T0)).toEqual(balanceAt(state, T0));
    expect(restored.burnDownOrder).toEqual(state.burnDownOrder);
    const commands = [
      charge('r1', 20),
      charge('r2', 60),
      charge('r3', 30, 'bob'),
      { type: 'RefundCharmRun', runId: 'r1', amount: 5, refundId: 'x' } as const,
      { type: 'CaptureReservation', reservationId: 'h1', amount: 4 } as const,
      { type: 'ExpireDue' } as const,
    ];
    for (const command of commands) {
      expect(decisionOf(command, restored)).toEqual(decisionOf(command, state));
    }
    const next = decide(charge('r9', 3), restored, T0);
    expect(balanceAt(next.reduce(evolve, restored), T0)).toEqual(
      balanceAt(decide(charge('r9', 3), state, T0).reduce(evolve, state), T0),
    );
  });

  it('keep thousands of runs compactly, with their refunds and captures, taken in slices', () => {
    const runs: Event[] = Array.from({ length: 4_500 }, (_, i) =>
      charged(`r${i}`, [{ grantId: i % 2 === 0 ? 'a' : 'b', amount: 1 }], {
        charmId: `charm-${i % 7}`,
        userId: i % 3 === 0 ? 'bob' : 'olga',
      }),
    );
    const events: Event[] = [
      created(),
      memberAdded('bob', 'member'),
      granted('a', 10_000),
      granted('b', 10_000),
      ...runs,
      refunded('r1', [{ grantId: 'b', amount: 1 }], { refundId: 'back', charmId: 'charm-1' }),
      reserved('h1', [{ grantId: 'a', amount: 4 }], at(T0 + DAY)),
      capturedAsRun('h1'),
    ];
    const { state } = organization.given(events);
    const slices = serializeOrganizationInSlices(state);
    let pauses = 0;
    let step = slices.next();
    for (; !step.done; step = slices.next()) pauses += 1;
    // A pause every 2,000 runs, and between the columns of a large snapshot.
    expect(pauses).toBeGreaterThanOrEqual(2);
    expect(step.value).toEqual(serializeOrganization(state));
    // Each line, written a slice at a time, is the JSON that one JSON.stringify would write.
    const texts = [step.value.state, ...step.value.parts.map((part) => part.text)];
    for (const line of texts.flatMap((text) => text.split('\n'))) {
      expect(line).toBe(JSON.stringify(JSON.parse(line)));
    }
    // A row per run, without field names.
    expect(texts.join('').length).toBeLessThan(4_500 * 60);

    const restored = restore(step.value);
    expect(restored.runs.size).toBe(state.runs.size);
    expect(balanceAt(restored, T0)).toEqual(balanceAt(state, T0));
    for (const runId of ['r0', 'r1', 'r4499', 'captured']) {
      expect(restored.runs.get(runId)).toEqual(state.runs.get(runId));
    }
    const commands = [
      { type: 'ChargeCharmRun', runId: 'r3', charmId: 'charm-3', userId: 'bob', amount: 1 },
      { type: 'ChargeCharmRun', runId: 'r3', charmId: 'charm-3', userId: 'olga', amount: 1 },
      {
        type: 'ChargeCharmRun',
        runId: 'captured',
        charmId: 'long-charm',
        userId: 'olga',
        amount: 3,
      },
      { type: 'RefundCharmRun', runId: 'r1', refundId: 'back', amount: 1 },
      { type: 'RefundCharmRun', runId: 'r1', refundId: 'again', amount: 1 },
      { type: 'RefundCharmRun', runId: 'r2' },
    ] as const;
    for (const command of commands) {
      expect(decisionOf(command, restored)).toEqual(decisionOf(command, state));
    }
  });

  it('encode a run again once a refund changed it, though earlier snapshots encoded it', () => {
    const { state } = organization.given([
      created(),
      granted('a', 100),
      charged('r1', [{ grantId: 'a', amount: 10 }]),
    ]);
    expect(roundTrip(state).runs.get('r1')?.refunded).toBe(0);
    const refund = refunded('r1', [{ grantId: 'a', amount: 4 }], { refundId: 'once' });
    const afterRefund = evolve(state, { ...refund, occurredAt: at(T0) } as OrganizationEvent);
    const restored = roundTrip(afterRefund);
    expect(restored.runs.get('r1')).toMatchObject({
      refunded: 4,
      refundable: [{ grantId: 'a', amount: 6 }],
    });
    expect(restored.runs.get('r1')?.refunds.get('once')).toBe(4);
  });

  it('write the settled runs once: a restored snapshot writes them again as read', () => {
    const events: Event[] = [
      created(),
      granted('a', 100_000),
      ...Array.from({ length: 5_000 }, (_, i) => charged(`r${i}`, [{ grantId: 'a', amount: 2 }])),
    ];
    const { state } = organization.given(events);
    const text = serializeOrganization(state);
    expect(text.parts.length).toBeGreaterThan(0);
    const restored = restore(text);
    const again = serializeOrganization(restored);
    // The same parts under the same keys: a store is sent none of them again.
    expect(again.parts).toEqual(text.parts);
    expect(again.state).toBe(text.state);
    expect(restored.runs.size).toBe(5_000);

    // A refund of a settled run goes on top; the next snapshot restores the refunded run.
    // So does a refund of a run that came back among the snapshot's recent rows (r4999).
    const refund = [
      ...decide({ type: 'RefundCharmRun', runId: 'r7', amount: 1 }, restored, T0),
      ...decide({ type: 'RefundCharmRun', runId: 'r4999', amount: 2 }, restored, T0),
    ];
    const refunded = refund.reduce(evolve, restored);
    const back = roundTrip(refunded);
    expect(serializeOrganization(refunded).parts).toEqual(text.parts);
    expect(back.runs.size).toBe(5_000);
    expect([...back.runs.values()]).toHaveLength(5_000);
    expect(back.runs.get('r7')).toMatchObject({
      refunded: 1,
      refundable: [{ grantId: 'a', amount: 1 }],
    });
    expect(back.runs.get('r4999')).toMatchObject({ refunded: 2, refundable: [] });
    expect(balanceAt(back, T0)).toEqual(balanceAt(refunded, T0));
    expect(decide(charge('r7', 2), back, T0)).toEqual([]);
  });

  it('prune a restored state as the folded one: only runs of the last 7 days are kept, refunds included', () => {
    // 2,000 runs charged 8 days before the last event, then 3,000 charged 2 days before it.
    const events: Event[] = [
      created(),
      granted('a', 100_000),
      ...Array.from({ length: 5_000 }, (_, i) =>
        charged(`r${i}`, [{ grantId: 'a', amount: 2 }], {
          occurredAt: at(T0 + (i < 2_000 ? 4 : 10) * DAY),
        }),
      ),
    ];
    const folded = organization.given(events).state;
    const restored = roundTrip(folded);
    // A refund of a run that will be kept, and one of a run that will be dropped, on top.
    const refunds = [
      ...decide({ type: 'RefundCharmRun', runId: 'r4000', amount: 1 }, restored, T0 + 10 * DAY),
      ...decide({ type: 'RefundCharmRun', runId: 'r10', amount: 1 }, restored, T0 + 10 * DAY),
    ];
    const later = { ...memberAdded('u-late', 'member'), occurredAt: at(T0 + 12 * DAY) };
    const [fromFolded, fromRestored] = [folded, restored].map((state) =>
      [...refunds, later].reduce(evolve, state),
    );

    expect(fromRestored.runs.size).toBe(3_000);
    expect(fromFolded.runs.size).toBe(3_000);
    expect(fromRestored.runs.has('r1999')).toBe(false);
    expect(fromRestored.runs.get('r10')).toBeUndefined();
    expect(fromRestored.runs.get('r2000')?.chargedAt).toBe(T0 + 10 * DAY);
    expect(fromRestored.runs.get('r4000')).toMatchObject({ refunded: 1 });
    expect([...fromRestored.runs.values()].map((run) => run.runId).sort()).toEqual(
      [...fromFolded.runs.values()].map((run) => run.runId).sort(),
    );
    // The pruned state snapshots and restores to the same runs, and the dropped ids are free.
    const back = roundTrip(fromRestored);
    expect(back.runs.size).toBe(3_000);
    expect(back.runs.get('r4000')).toMatchObject({ refunded: 1 });
    expect(decide(charge('r10', 2), back, T0 + 12 * DAY)).toHaveLength(1);
    expect(decide(charge('r2500', 2), back, T0 + 12 * DAY)).toEqual([]);
    expect(balanceAt(back, T0 + 12 * DAY)).toEqual(balanceAt(fromFolded, T0 + 12 * DAY));
  });

  it('restore a state whose runs a later event prunes all, or none of', () => {
    const events: Event[] = [
      created(),
      granted('a', 100_000),
      ...Array.from({ length: 5_000 }, (_, i) => charged(`r${i}`, [{ grantId: 'a', amount: 2 }])),
    ];
    const restored = roundTrip(organization.given(events).state);
    const eventAfter = (days: number) => ({
      ...memberAdded(`u-${days}`, 'member'),
      occurredAt: at(T0 + days * DAY),
    });

    const allKept = evolve(restored, eventAfter(2));
    expect(allKept.runs.size).toBe(5_000);
    expect(allKept.runs.get('r4999')).toMatchObject({ chargedAt: T0, amount: 2 });
    expect(decide(charge('r0', 2), allKept, T0 + 2 * DAY)).toEqual([]);

    const noneKept = evolve(restored, eventAfter(9));
    expect(noneKept.runs.size).toBe(0);
    expect([...noneKept.runs.values()]).toEqual([]);
    expect(decide(charge('r0', 2), noneKept, T0 + 9 * DAY)).toHaveLength(1);
    expect(roundTrip(noneKept).runs.size).toBe(0);
  });

  it('read a version 6 snapshot (its settled tier inline) as the state it was taken of, and write it as a part next', () => {
    const { restored, state } = readFixture(6, {
      runs: 300,
      credits: 10_000,
      amount: 1,
      charms: 3,
      refund: 1,
    });
    const next = serializeOrganization(restored);
    expect(next.parts).toHaveLength(1);
    expect(next.state).toContain(next.parts[0].key);
    expect(byRunId([...restore(next).runs.values()])).toEqual(byRunId([...state.runs.values()]));
  });

  it('group tiers a slice at a time while snapshotting, and the state answers the same after', () => {
    const events: Event[] = [
      created(),
      granted('a', 100_000),
      ...Array.from({ length: 20_000 }, (_, i) => charged(`r${i}`, [{ grantId: 'a', amount: 1 }])),
      refunded('r3', [{ grantId: 'a', amount: 1 }], { refundId: 'x' }),
    ];
    const { state } = organization.given(events);
    const runsOf = (of: OrganizationState) => byRunId([...of.runs.values()]);
    const before = runsOf(state);
    const merging = () =>
      [...tiersOf(state.runs.settled)].filter(
        (tier) => tier instanceof MergingTier && tier.merged === undefined,
      );
    expect(merging().length).toBeGreaterThan(0);

    const slices = serializeOrganizationInSlices(state);
    let pauses = 0;
    let step = slices.next();
    for (; !step.done; step = slices.next()) pauses += 1;
    expect(pauses).toBeGreaterThan(20_000 / 2_000);
    expect(merging()).toEqual([]);
    expect(runsOf(state)).toEqual(before);
    expect(state.runs.size).toBe(20_000);
    expect(state.runs.get('r3')?.refunded).toBe(1);
    expect(runsOf(restore(step.value))).toEqual(before);
  });

  it('group tiers already in columns with newer ones: the newest copy of each run, its refunds and capture', () => {
    const charges = (from: number, count: number) =>
      Array.from({ length: count }, (_, i) =>
        charged(`r${from + i}`, [{ grantId: (from + i) % 3 ? 'a' : 'b', amount: 1 }], {
          charmId: `charm-${(from + i) % 5}`,
          userId: (from + i) % 2 ? 'bob' : 'olga',
        }),
      );
    const first = organization.given([
      created(),
      memberAdded('bob', 'member'),
      granted('a', 1_000_000),
      granted('b', 1_000_000),
      ...charges(0, 100),
      // Refunded and captured early, so that they fold into the tiers grouped below.
      refunded('r5', [{ grantId: 'b', amount: 1 }], { refundId: 'five' }),
      refunded('r9', [{ grantId: 'b', amount: 1 }], { refundId: 'nine' }),
      reserved('h1', [{ grantId: 'a', amount: 4 }], at(T0 + DAY)),
      capturedAsRun('h1'),
      ...charges(100, 5_900),
    ]).state;
    // The first snapshot settles the groups: the tiers are in columns from now on.
    const firstParts = serializeOrganization(first).parts;
    const later: Event[] = [
      ...charges(6_000, 5_000),
      refunded('r7', [{ grantId: 'a', amount: 1 }], { refundId: 'seven' }),
      refunded('r5', [{ grantId: 'b', amount: 0 }], { refundId: 'five-again' }),
    ];
    const second = later
      .map((event) => ({ ...event, occurredAt: at(T0) }) as OrganizationEvent)
      .reduce(evolve, first);
    // Read before the snapshot groups them: the group then takes the tiers' place.
    const expected = byRunId([...second.runs.values()]);
    const snapshot = serializeOrganization(second);
    expect(snapshot.parts.map((part) => part.key)).not.toEqual(firstParts.map((part) => part.key));

    const back = restore(snapshot);
    expect(byRunId([...back.runs.values()])).toEqual(expected);
    expect(byRunId([...second.runs.values()])).toEqual(expected);
    expect(back.runs.size).toBe(11_001);
    expect(back.runs.get('r7')).toMatchObject({ refunded: 1 });
    expect(back.runs.get('r5')?.refunds.get('five')).toBe(1);
    expect(back.runs.get('r9')).toMatchObject({ refunded: 1, userId: 'bob' });
    expect(back.runs.get('captured')).toMatchObject({ reservationId: 'h1', amount: 3 });
    expect(back.runs.get('r10999')).toMatchObject({ charmId: 'charm-4', userId: 'bob' });
  });

  it("group four tiers of a size without writing their runs again: the group is its tiers' keys and a filter", () => {
    // Four folds and a half.
    const total = 4.5 * FOLD_AT;
    const events: Event[] = [
      created(),
      granted('a', 100_000),
      ...Array.from({ length: total }, (_, i) => charged(`r${i}`, [{ grantId: 'a', amount: 1 }])),
    ];
    const { state } = organization.given(events);
    const snapshot = serializeOrganization(state);
    const texts = new Map(snapshot.parts.map(({ key, text }) => [key, text]));
    // Four folds, stacked as one group: the state names only the group.
    const { runTiers } = headOf(snapshot);
    expect(runTiers).toHaveLength(1);
    const [summary, filter] = texts.get(runTiers[0])!.split('\n');
    const { tiers } = JSON.parse(summary) as { tiers: string[] };
    expect(tiers).toHaveLength(4);
    expect(typeof JSON.parse(filter)).toBe('string');
    // Each of its tiers is a part of its own, and each run's id is in one of them, once.
    expect(snapshot.parts).toHaveLength(5);
    const ids = tiers.flatMap((key) => JSON.parse(texts.get(key)!.split('\n')[1]) as string[]);
    expect(ids).toHaveLength(4 * FOLD_AT);
    expect(new Set(ids).size).toBe(4 * FOLD_AT);

    const restored = restore(snapshot);
    expect(restored.runs.size).toBe(total);
    expect(byRunId([...restored.runs.values()])).toEqual(byRunId([...state.runs.values()]));
    const edges = [0, FOLD_AT - 1, FOLD_AT, 3 * FOLD_AT, 4 * FOLD_AT - 1, 4 * FOLD_AT, total - 1];
    for (const runId of edges.map((i) => `r${i}`)) {
      expect(restored.runs.has(runId)).toBe(true);
      expect(decide(charge(runId, 1), restored, T0)).toEqual([]);
    }
    expect(restored.runs.has(`r${total}`)).toBe(false);
    expect(decide(charge(`r${total}`, 1), restored, T0)).toHaveLength(1);
    // Its next snapshot sends the same parts under the same keys: a store gets none again.
    expect(serializeOrganization(restored).parts).toEqual(snapshot.parts);
  });

  it('put a fold in columns at once: the runs recorded are let go, and the part is made once', () => {
    const { state: opened } = organization.given([created(), granted('a', 100_000)]);
    const recorded = Array.from({ length: FOLD_AT }, (_, i): CharmRun => ({
      runId: `r${i}`,
      charmId: `charm-${i % 3}`,
      userId: i % 2 === 0 ? 'olga' : 'piet',
      amount: 2,
      chargedAt: T0 + i,
      refundable: [{ grantId: 'a', amount: 2 }],
      refunded: 0,
      refunds: ImmutableMap<string, number>(),
      availableAfter: 100_000 - 2 * (i + 1),
    }));
    let runs = RunBook.empty();
    for (const run of recorded) runs = runs.set(run);
    // The last run made the fold: nothing recent is left.
    expect(runs.recent.size).toBe(0);
    for (const run of recorded) {
      const kept = runs.get(run.runId);
      expect(kept).toEqual(run);
      // Built again from the columns: the object recorded is no longer held.
      expect(kept).not.toBe(run);
    }
    // Two later states that share the fold send its part under one key, holding every run.
    const first = serializeOrganization({ ...opened, runs });
    const later = serializeOrganization({
      ...opened,
      runs: runs.set({ ...recorded[0], runId: 'x' }),
    });
    expect(first.parts).toHaveLength(1);
    expect(later.parts).toEqual(first.parts);
    const ids = JSON.parse(first.parts[0].text.split('\n')[1]) as string[];
    expect(ids.sort()).toEqual(recorded.map((run) => run.runId).sort());
    expect(byRunId([...restore(first).runs.values()])).toEqual(byRunId(recorded));
  });

  it('group groups of four, and prune a restored group of groups as the folded book', () => {
    const { state: opened } = organization.given([created(), granted('a', 1_000_000)]);
    const runOf = (i: number, chargedAt: number, refunded = 0): CharmRun => ({
      runId: `r${i}`,
      charmId: `charm-${i % 3}`,
      userId: 'olga',
      amount: 5,
      chargedAt,
      refundable: [{ grantId: 'a', amount: 5 - refunded }],
      refunded,
      refunds: ImmutableMap(refunded > 0 ? [['back', refunded]] : []),
      availableAfter: 1_000,
    });
    // 16 folds and a half; the runs of the first 9 and a half charged 8 days before the
    // others. Then two refunds on top: of an early run, and of one in the 15th fold.
    const [total, early, late] = [16.5 * FOLD_AT, 9.5 * FOLD_AT, 14 * FOLD_AT];
    let runs = RunBook.empty();
    for (let i = 0; i < total; i++) runs = runs.set(runOf(i, i < early ? T0 : T0 + 8 * DAY));
    runs = runs.set(runOf(5, T0, 2)).set(runOf(late, T0 + 8 * DAY, 1));
    const state: OrganizationState = { ...opened, runs };

    // 16 folds: one group of four groups of four tiers, each with a part of its own.
    const snapshot = serializeOrganization(state);
    expect(headOf(snapshot).runTiers).toHaveLength(1);
    expect(snapshot.parts).toHaveLength(16 + 4 + 1);
    const restored = restore(snapshot);
    expect(byRunId([...restored.runs.values()])).toEqual(byRunId([...state.runs.values()]));
    expect(restored.runs.size).toBe(total);
    expect(restored.runs.get('r5')).toMatchObject({ refunded: 2 });
    expect(restored.runs.get(`r${late}`)).toMatchObject({ refunded: 1 });

    // A day after the first runs, only the later ones are kept: two of the four groups go,
    // one is cut, and the tier holding runs of both days is cut within it.
    const horizon = T0 + DAY;
    const kept = Array.from({ length: total - early }, (_, i) => `r${early + i}`).sort();
    const pruned = restored.runs.chargedSince(horizon);
    expect(pruned.size).toBe(kept.length);
    expect([...pruned.values()].map((run) => run.runId).sort()).toEqual(kept);
    expect(state.runs.chargedSince(horizon).size).toBe(kept.length);
    const back = restore(serializeOrganization({ ...restored, runs: pruned }));
    expect([...back.runs.values()].map((run) => run.runId).sort()).toEqual(kept);
    expect(back.runs.size).toBe(kept.length);
    expect(back.runs.has(`r${early - 1}`)).toBe(false);
    expect(back.runs.has('r5')).toBe(false);
    expect(back.runs.get(`r${early}`)).toMatchObject({ chargedAt: T0 + 8 * DAY });
    expect(back.runs.get(`r${late}`)).toMatchObject({ refunded: 1 });
  });

  it("keep a restored group's filter as it was made, hashes and all, when pruning cuts the group", () => {
    const { state: opened } = organization.given([created(), granted('a', 1_000_000)]);
    const runOf = (i: number, chargedAt: number): CharmRun => ({
      runId: `r${i}`,
      charmId: 'summarize',
      userId: 'olga',
      amount: 1,
      chargedAt,
      refundable: [{ grantId: 'a', amount: 1 }],
      refunded: 0,
      refunds: ImmutableMap(),
      availableAfter: 100,
    });
    // Four folds, the first two charged 8 days before the others: one group.
    const total = 4 * FOLD_AT;
    let runs = RunBook.empty();
    for (let i = 0; i < total; i++) runs = runs.set(runOf(i, i < 2 * FOLD_AT ? T0 : T0 + 8 * DAY));
    const snapshot = serializeOrganization({ ...opened, runs });
    const texts = new Map(snapshot.parts.map(({ key, text }) => [key, text]));
    const [groupKey] = headOf(snapshot).runTiers;
    const [line, filterLine] = texts.get(groupKey)!.split('\n');
    const summary = JSON.parse(line) as { tiers: string[]; filterHashes: number };
    // The group's filter as a version with 3 hashes a run would have made it.
    const bytes = Buffer.from(JSON.parse(filterLine) as string, 'base64').length;
    const filter = RunIdFilter.read(Buffer.alloc(bytes).toString('base64'), 3);
    for (const key of summary.tiers) {
      for (const runId of JSON.parse(texts.get(key)!.split('\n')[1]) as string[]) filter.add(runId);
    }
    texts.set(
      groupKey,
      `${JSON.stringify({ ...summary, filterHashes: 3 })}\n${JSON.stringify(filter.toText())}`,
    );
    const restored = deserializeOrganization(snapshot.state, undefined, texts);

    // Pruning keeps the group's last two tiers, under the same filter: its part says 3.
    const pruned = { ...restored, runs: restored.runs.chargedSince(T0 + DAY) };
    const again = serializeOrganization(pruned);
    const [cutKey] = headOf(again).runTiers;
    const cut = again.parts.find((part) => part.key === cutKey)!;
    expect(JSON.parse(cut.text.split('\n')[0])).toMatchObject({ filterHashes: 3 });
    const back = restore(again);
    expect(back.runs.size).toBe(2 * FOLD_AT);
    for (const i of [2 * FOLD_AT, 3 * FOLD_AT, total - 1]) {
      expect(back.runs.has(`r${i}`)).toBe(true);
      expect(decide(charge(`r${i}`, 1), back, T0 + 9 * DAY)).toEqual([]);
    }
    expect(back.runs.has('r0')).toBe(false);
  });

  it('merge the largest tiers into one part rather than group them, the newest copy of each run kept', () => {
    const { state: opened } = organization.given([created(), granted('a', 1_000)]);
    const runOf = (runId: string, refunded = 0): CharmRun => ({
      runId,
      charmId: 'charm',
      userId: 'olga',
      amount: 5,
      chargedAt: T0,
      refundable: [{ grantId: 'a', amount: 5 - refunded }],
      refunded,
      refunds: ImmutableMap(refunded > 0 ? [['back', refunded]] : []),
      availableAfter: 100,
    });
    // Four tiers of a few runs each, weighing as many folds as a class of size: r1 is in the
    // second (refunded) and the fourth.
    const fourTiers = (foldsEach: number) => {
      const tier = (runs: CharmRun[]) =>
        Object.defineProperty(RunBook.of(runs).settled, 'weight', {
          value: foldsEach * FOLD_AT,
        });
      const [a, b, c, d] = [
        tier([runOf('r4'), runOf('r5')]),
        tier([runOf('r1', 2), runOf('r3')]),
        tier([runOf('r2')]),
        tier([runOf('r0'), runOf('r1')]),
      ];
      return new MergingTier(a, new LayeredTier(b, new LayeredTier(c, d)));
    };
    const snapshotOf = (foldsEach: number) =>
      serializeOrganization({ ...opened, runs: RunBook.restore(fourTiers(foldsEach), []) });

    // A class of 4^4 folds is grouped: the group and its four tiers' parts.
    const grouped = snapshotOf(4 ** 3);
    expect(grouped.parts).toHaveLength(5);
    // One of 4^5 is merged: one part of five lines, each run once, the newest copy of r1.
    const merged = snapshotOf(4 ** 4);
    expect(merged.parts).toHaveLength(1);
    const lines = merged.parts[0].text.split('\n');
    expect(lines).toHaveLength(5);
    expect((JSON.parse(lines[1]) as string[]).sort()).toEqual(['r0', 'r1', 'r2', 'r3', 'r4', 'r5']);
    for (const snapshot of [grouped, merged]) {
      const back = restore(snapshot);
      expect(back.runs.size).toBe(6);
      expect(back.runs.get('r1')).toMatchObject({ refunded: 2 });
      expect(back.runs.get('r0')).toMatchObject({ refunded: 0 });
    }
  });

  it('read a version 7 snapshot (tiers merged, not grouped) as the state it was taken of', () => {
    const file = join(__dirname, 'fixtures', 'organization-snapshot-v7.json');
    const written = JSON.parse(readFileSync(file, 'utf8')) as OrganizationSnapshot;
    const { state } = readFixture(
      7,
      { runs: 300, credits: 10_000, amount: 1, charms: 3, refund: 1 },
      written,
    );
    const next = serializeOrganization(restore(written, 7));
    expect(byRunId([...restore(next).runs.values()])).toEqual(byRunId([...state.runs.values()]));
  });

  it('read a version 5 snapshot (written before this version) as the state it was taken of', () => {
    const { restored, state } = readFixture(5, {
      runs: 6,
      credits: 1_000,
      amount: 3,
      charms: 2,
      refund: 2,
    });
    // Its next snapshot is of this version, and reads back the same.
    expect(byRunId([...roundTrip(restored).runs.values()])).toEqual(
      byRunId([...state.runs.values()]),
    );
  });
});

import fc from 'fast-check';
import type { Actor } from '../../../src/ledger/actor';
import { LedgerError } from '../../../src/ledger/errors';
import {
  availableCredits,
  isExpired,
  reservedCredits,
} from '../../../src/ledger/organization/burn-down';
import type { OrganizationCommand } from '../../../src/ledger/organization/commands';
import { decide } from '../../../src/ledger/organization/decide';
import type { OrganizationEvent } from '../../../src/ledger/organization/events';
import { evolve } from '../../../src/ledger/organization/evolve';
import { initialOrganizationState } from '../../../src/ledger/organization/state';
import { at, HOUR, T0 } from '../../support/decider';

/**
 * For any sequence of commands over a few days: the books balance after every step, nothing
 * is ever negative, and no run is charged twice.
 */
const SERVICE: Actor = { kind: 'service', id: 'ops' };
const id = (prefix: string, count: number) =>
  fc.integer({ min: 0, max: count - 1 }).map((n) => `${prefix}${n}`);
const amount = fc.integer({ min: 1, max: 60 });

type Step = { advance: number } | { command: OrganizationCommand; expiresInHours?: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  { arbitrary: fc.record({ advance: fc.integer({ min: 1, max: 12 * HOUR }) }), weight: 3 },
  fc
    .record({
      grantId: id('g', 6),
      amount: fc.integer({ min: 1, max: 100 }),
      priority: fc.integer({ min: 0, max: 3 }),
      expiresInHours: fc.option(fc.integer({ min: 1, max: 24 }), { nil: undefined }),
    })
    .map(({ expiresInHours, ...grant }) => ({
      command: {
        type: 'GrantCredits',
        source: 'purchase',
        expiresAt: null,
        ...grant,
      } as OrganizationCommand,
      expiresInHours,
    })),
  fc.record({ runId: id('r', 10), amount }).map(({ runId, amount }) => ({
    command: {
      type: 'ChargeCharmRun',
      runId,
      charmId: 'c',
      userId: 'olga',
      amount,
    } as OrganizationCommand,
  })),
  fc
    .record({
      runId: id('r', 10),
      amount: fc.option(amount, { nil: undefined }),
      refundId: fc.option(id('f', 3), { nil: undefined }),
    })
    .map((refund) => ({ command: { type: 'RefundCharmRun', ...refund } as OrganizationCommand })),
  fc
    .record({
      reservationId: id('h', 4),
      amount,
      ttlSeconds: fc.integer({ min: 3600, max: 48 * 3600 }),
    })
    .map((hold) => ({
      command: {
        type: 'ReserveCredits',
        charmId: 'c',
        userId: 'olga',
        ...hold,
      } as OrganizationCommand,
    })),
  fc
    .record({
      reservationId: id('h', 4),
      amount,
      runId: fc.option(id('r', 10), { nil: undefined }),
    })
    .map((capture) => ({
      command: { type: 'CaptureReservation', ...capture } as OrganizationCommand,
    })),
  id('h', 4).map((reservationId) => ({
    command: { type: 'ReleaseReservation', reservationId } as OrganizationCommand,
  })),
  { arbitrary: fc.constant({ command: { type: 'ExpireDue' } as OrganizationCommand }), weight: 2 },
  fc.record({ transferId: id('t', 4), amount }).map((transfer) => ({
    command: {
      type: 'TransferCredits',
      toOrganizationId: 'beta',
      actor: SERVICE,
      actorRoleInRecipient: null,
      ...transfer,
    } as OrganizationCommand,
  })),
  fc
    .record({
      transferId: id('t', 4),
      fromOrganizationId: fc.constantFrom('alpha', 'gamma'),
      amount,
    })
    .map((receive) => ({
      command: { type: 'ReceiveTransfer', ...receive } as OrganizationCommand,
    })),
  fc.integer({ min: 0, max: 100 }).map((threshold) => ({
    command: { type: 'SetLowBalanceThreshold', threshold } as OrganizationCommand,
  })),
);

describe('invariants of the organization decider', () => {
  it('keeps the books balanced, nothing negative, no run charged twice', () => {
    const seen = { expired: 0, captured: 0, refunded: 0 };
    fc.assert(
      fc.property(fc.array(step, { minLength: 10, maxLength: 80, size: 'max' }), (steps) => {
        let now = T0;
        let state = [
          {
            type: 'OrganizationCreated',
            data: { organizationId: 'acme', name: 'Acme', kind: 'company', ownerUserId: 'olga' },
            occurredAt: at(now),
          } as OrganizationEvent,
          {
            type: 'CreditsGranted',
            data: { grantId: 'base', amount: 300, source: 'plan', priority: 50, expiresAt: null },
            occurredAt: at(now),
          } as OrganizationEvent,
        ].reduce(evolve, initialOrganizationState());
        const totals = { granted: 300, charged: 0, refunded: 0, expired: 0, out: 0, in: 0 };
        const chargedRuns: string[] = [];

        for (const next of steps) {
          if ('advance' in next) {
            // Stay inside the 7-day idempotency window: past it a runId may be charged again.
            if (now + next.advance - T0 < 6 * 24 * HOUR) now += next.advance;
            continue;
          }
          let command = next.command;
          if (command.type === 'GrantCredits' && next.expiresInHours !== undefined) {
            command = { ...command, expiresAt: at(now + next.expiresInHours * HOUR) };
          }
          let events: OrganizationEvent[];
          try {
            events = decide(command, state, now);
          } catch (error) {
            if (error instanceof LedgerError) continue;
            throw error;
          }
          for (const event of events) {
            switch (event.type) {
              case 'CreditsGranted':
                totals.granted += event.data.amount;
                break;
              case 'CharmRunCharged':
                totals.charged += event.data.amount;
                chargedRuns.push(event.data.runId);
                expect(event.data.allocations.reduce((sum, a) => sum + a.amount, 0)).toBe(
                  event.data.amount,
                );
                break;
              case 'ReservationCaptured':
                totals.charged += event.data.amount;
                seen.captured++;
                chargedRuns.push(event.data.runId);
                expect(event.data.allocations.reduce((sum, a) => sum + a.amount, 0)).toBe(
                  event.data.amount,
                );
                break;
              case 'CharmRunRefunded':
                totals.refunded += event.data.amount;
                seen.refunded++;
                break;
              case 'CreditsExpired':
                totals.expired += event.data.amount;
                seen.expired++;
                break;
              case 'CreditsTransferredOut':
                totals.out += event.data.amount;
                break;
              case 'CreditsTransferredIn':
                totals.in += event.data.amount;
                break;
              default:
                break;
            }
            state = evolve(state, event);
          }

          // Grants past their expiry whose CreditsExpired is not written yet already do not count.
          let expiring = 0;
          for (const grant of state.grants.values()) {
            expect(grant.remaining).toBeGreaterThanOrEqual(0);
            expect(grant.held).toBeGreaterThanOrEqual(0);
            if (isExpired(grant, now)) expiring += grant.remaining;
          }
          const available = availableCredits(state, now);
          const reserved = reservedCredits(state);
          expect(available).toBeGreaterThanOrEqual(0);
          expect(available + reserved).toBe(
            totals.granted -
              totals.charged +
              totals.refunded -
              totals.expired -
              expiring -
              totals.out +
              totals.in,
          );
          expect(new Set(chargedRuns).size).toBe(chargedRuns.length);
        }
      }),
      { numRuns: 200 },
    );
    // The sequences must reach the interesting rules, or the property proves little.
    expect(seen.expired).toBeGreaterThan(20);
    expect(seen.captured).toBeGreaterThan(20);
    expect(seen.refunded).toBeGreaterThan(20);
  });
});

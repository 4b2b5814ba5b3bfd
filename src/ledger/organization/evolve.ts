import { Map as ImmutableMap } from 'immutable';
import { IDEMPOTENCY_WINDOW_MS, toMillis } from '../time';
import {
  availableCredits,
  availableIn,
  insertInBurnDownOrder,
  subtractAllocations,
} from './burn-down';
import type { Allocation, OrganizationEvent } from './events';
import {
  transferInKey,
  type CharmRun,
  type Grant,
  type OrganizationState,
  type Reservation,
} from './state';

/**
 * How often (in event time) keys past their idempotency window are dropped: pruning goes
 * through every kept run, so daily; keys live 7 to 8 days ("at least 7 days", API.md).
 */
const PRUNE_EVERY_MS = 24 * 60 * 60 * 1000;

/** Folds one event into the state. Pure: the same events always give the same state. */
export function evolve(state: OrganizationState, event: OrganizationEvent): OrganizationState {
  const at = toMillis(event.occurredAt);
  const next = apply(state, event, at);
  return at - next.prunedAt >= PRUNE_EVERY_MS ? prune(next, at) : next;
}

function apply(state: OrganizationState, event: OrganizationEvent, at: number): OrganizationState {
  switch (event.type) {
    case 'OrganizationCreated': {
      const { organizationId, name, kind, ownerUserId } = event.data;
      return {
        ...state,
        exists: true,
        organizationId,
        name,
        kind,
        ownerUserId,
        createdAt: at,
        members: state.members.set(ownerUserId, 'owner'),
        prunedAt: at,
      };
    }
    case 'MemberAdded':
    case 'MemberRoleChanged':
      return { ...state, members: state.members.set(event.data.userId, event.data.role) };
    case 'MemberRemoved':
      return { ...state, members: state.members.delete(event.data.userId) };
    case 'CreditsGranted': {
      const { grantId, amount, source, priority, expiresAt } = event.data;
      return rearmLowBalance(
        addGrant(state, {
          grantId,
          amount,
          source,
          priority,
          expiresAt: expiresAt === null ? null : toMillis(expiresAt),
          sequence: state.grantSequence,
          remaining: amount,
          held: 0,
          grantedAt: at,
          lastActivityAt: at,
        }),
        at,
      );
    }
    case 'CharmRunCharged': {
      const { runId, charmId, userId, amount, allocations } = event.data;
      // The hot path's event: one copy of the state, not one per step.
      const grants = movedGrants(state.grants, allocations, at, SPENT);
      const run = newRun(
        { runId, charmId, userId, amount, chargedAt: at, allocations },
        availableIn(grants, at),
      );
      return withGrantsAndRuns(state, grants, state.runs.set(run));
    }
    case 'CharmRunRefunded': {
      const { runId, amount, allocations, refundId } = event.data;
      const refunded = moveCredits(state, allocations, at, RETURNED);
      const run = state.runs.get(runId);
      if (!run) return rearmLowBalance(refunded, at);
      return rearmLowBalance(
        {
          ...refunded,
          runs: refunded.runs.set({
            ...run,
            refundable: subtractAllocations(run.refundable, allocations),
            refunded: run.refunded + amount,
            refunds: refundId === undefined ? run.refunds : run.refunds.set(refundId, amount),
          }),
        },
        at,
      );
    }
    case 'CreditsReserved': {
      const { reservationId, charmId, userId, amount, expiresAt, allocations } = event.data;
      const held = moveCredits(state, allocations, at, HELD);
      const expiresAtMillis = toMillis(expiresAt);
      const reservation: Reservation = {
        reservationId,
        charmId,
        userId,
        amount,
        ttlSeconds: Math.round((expiresAtMillis - at) / 1000),
        createdAt: at,
        expiresAt: expiresAtMillis,
        allocations,
        status: 'held',
        captured: 0,
        released: 0,
      };
      return { ...held, reservations: held.reservations.set(reservationId, reservation) };
    }
    case 'ReservationCaptured': {
      const { reservationId, runId, amount, released, allocations } = event.data;
      const reservation = state.reservations.get(reservationId);
      if (!reservation) return state;
      const giveBack = subtractAllocations(reservation.allocations, allocations);
      const spent = moveCredits(state, allocations, at, HELD_SPENT);
      const settled = moveCredits(spent, giveBack, at, HELD_RETURNED);
      const closed: OrganizationState = {
        ...settled,
        reservations: settled.reservations.set(reservationId, {
          ...reservation,
          status: 'captured',
          captured: amount,
          released,
          runId,
          closedAt: at,
        }),
      };
      const run = {
        runId,
        charmId: reservation.charmId,
        userId: reservation.userId,
        amount,
        chargedAt: at,
        allocations,
        reservationId,
      };
      return rearmLowBalance(recordRun(closed, run, at), at);
    }
    case 'ReservationReleased': {
      const { reservationId, reason } = event.data;
      const reservation = state.reservations.get(reservationId);
      if (!reservation) return state;
      const returned = moveCredits(state, reservation.allocations, at, HELD_RETURNED);
      return rearmLowBalance(
        {
          ...returned,
          reservations: returned.reservations.set(reservationId, {
            ...reservation,
            status: 'released',
            released: reservation.amount,
            releaseReason: reason,
            closedAt: at,
          }),
        },
        at,
      );
    }
    case 'CreditsExpired': {
      const { grantId, amount } = event.data;
      return moveCredits(state, [{ grantId, amount }], at, SPENT);
    }
    case 'CreditsTransferredOut': {
      const { transferId, toOrganizationId, amount, allocations } = event.data;
      const sent = moveCredits(state, allocations, at, SPENT);
      return {
        ...sent,
        transfersOut: sent.transfersOut.set(transferId, {
          transferId,
          toOrganizationId,
          amount,
          at,
        }),
      };
    }
    case 'CreditsTransferredIn': {
      const { transferId, fromOrganizationId, amount, grantId } = event.data;
      const received = addGrant(state, {
        grantId,
        amount,
        source: 'transfer',
        priority: TRANSFER_GRANT_PRIORITY,
        expiresAt: null,
        sequence: state.grantSequence,
        remaining: amount,
        held: 0,
        grantedAt: at,
        lastActivityAt: at,
      });
      return rearmLowBalance(
        {
          ...received,
          transfersIn: received.transfersIn.set(transferInKey(fromOrganizationId, transferId), {
            transferId,
            fromOrganizationId,
            amount,
            grantId,
            at,
          }),
        },
        at,
      );
    }
    case 'LowBalanceThresholdSet':
      return { ...state, lowBalanceThreshold: event.data.threshold, lowBalanceReached: false };
    case 'LowBalanceReached':
      return { ...state, lowBalanceReached: true };
    default: {
      const unknown: never = event;
      return unknown;
    }
  }
}

/** Transfers arrive as a grant of default priority. */
export const TRANSFER_GRANT_PRIORITY = 100;

function addGrant(state: OrganizationState, grant: Grant): OrganizationState {
  return {
    ...state,
    grants: state.grants.set(grant.grantId, grant),
    burnDownOrder: insertInBurnDownOrder(state.burnDownOrder, state.grants, grant),
    grantSequence: state.grantSequence + 1,
  };
}

/** How credits move between a grant's `remaining` and `held` (see `moveCredits`). */
interface Move {
  readonly remaining: -1 | 0 | 1;
  readonly held: -1 | 0 | 1;
}
const SPENT: Move = { remaining: -1, held: 0 };
const RETURNED: Move = { remaining: +1, held: 0 };
const HELD: Move = { remaining: -1, held: +1 };
const HELD_SPENT: Move = { remaining: 0, held: -1 };
const HELD_RETURNED: Move = { remaining: +1, held: -1 };

/** Moves each allocation's credits between a grant's `remaining` and `held` by the signs given. */
function moveCredits(
  state: OrganizationState,
  allocations: readonly Allocation[],
  at: number,
  sign: Move,
): OrganizationState {
  const grants = movedGrants(state.grants, allocations, at, sign);
  return grants === state.grants ? state : { ...state, grants };
}

function movedGrants(
  grants: OrganizationState['grants'],
  allocations: readonly Allocation[],
  at: number,
  sign: Move,
): OrganizationState['grants'] {
  if (allocations.length === 0) return grants;
  return grants.withMutations((draft) => {
    for (const { grantId, amount } of allocations) {
      const grant = draft.get(grantId);
      if (!grant) continue;
      draft.set(grantId, {
        // Field by field, not spread: see `withGrantsAndRuns`.
        grantId: grant.grantId,
        amount: grant.amount,
        source: grant.source,
        priority: grant.priority,
        expiresAt: grant.expiresAt,
        sequence: grant.sequence,
        remaining: grant.remaining + sign.remaining * amount,
        held: grant.held + sign.held * amount,
        grantedAt: grant.grantedAt,
        lastActivityAt: at,
      });
    }
  });
}

/**
 * The state with other grants and runs: what every charge changes. Written field by field, as
 * the type demands them all: an object spread (`{ ...state, grants, runs }`) takes V8's slow
 * path for an object this size, 0.6 µs a copy against 0.03 (Node.js 20, measured alone).
 */
function withGrantsAndRuns(
  state: OrganizationState,
  grants: OrganizationState['grants'],
  runs: OrganizationState['runs'],
): OrganizationState {
  return {
    exists: state.exists,
    organizationId: state.organizationId,
    name: state.name,
    kind: state.kind,
    ownerUserId: state.ownerUserId,
    createdAt: state.createdAt,
    members: state.members,
    grants,
    burnDownOrder: state.burnDownOrder,
    grantSequence: state.grantSequence,
    runs,
    reservations: state.reservations,
    transfersOut: state.transfersOut,
    transfersIn: state.transfersIn,
    lowBalanceThreshold: state.lowBalanceThreshold,
    lowBalanceReached: state.lowBalanceReached,
    prunedAt: state.prunedAt,
  };
}

/** What a new run is made of: the charge's facts and where its credits came from. */
type RunFacts = Omit<CharmRun, 'refundable' | 'refunded' | 'refunds' | 'availableAfter'> & {
  allocations: readonly Allocation[];
};

function recordRun(state: OrganizationState, run: RunFacts, at: number): OrganizationState {
  return { ...state, runs: state.runs.set(newRun(run, availableCredits(state, at))) };
}

/** A run as charged: nothing refunded yet, and the balance it left. */
function newRun(facts: RunFacts, availableAfter: number): CharmRun {
  const run: CharmRun = {
    runId: facts.runId,
    charmId: facts.charmId,
    userId: facts.userId,
    amount: facts.amount,
    chargedAt: facts.chargedAt,
    refundable: facts.allocations,
    refunded: 0,
    refunds: NO_REFUNDS,
    availableAfter,
  };
  return facts.reservationId === undefined ? run : { ...run, reservationId: facts.reservationId };
}

const NO_REFUNDS = ImmutableMap<string, number>();

/** Once the balance is back at or above the threshold, the next fall is a new crossing. */
function rearmLowBalance(state: OrganizationState, at: number): OrganizationState {
  if (!state.lowBalanceReached) return state;
  return availableCredits(state, at) >= state.lowBalanceThreshold
    ? { ...state, lowBalanceReached: false }
    : state;
}

/**
 * Drops what is past the idempotency window: settled runs, reservations and transfers, and
 * grants that are spent and untouched for as long (no kept run can refund into them).
 */
function prune(state: OrganizationState, at: number): OrganizationState {
  const horizon = at - IDEMPOTENCY_WINDOW_MS;
  const grants = state.grants.filter(
    (grant) => grant.remaining > 0 || grant.held > 0 || grant.lastActivityAt >= horizon,
  );
  return {
    ...state,
    runs: state.runs.chargedSince(horizon),
    reservations: state.reservations.filter(
      (reservation) => reservation.closedAt === undefined || reservation.closedAt >= horizon,
    ),
    transfersOut: state.transfersOut.filter((transfer) => transfer.at >= horizon),
    transfersIn: state.transfersIn.filter((transfer) => transfer.at >= horizon),
    grants,
    burnDownOrder:
      grants.size === state.grants.size
        ? state.burnDownOrder
        : state.burnDownOrder.filter((grantId) => grants.has(grantId)),
    prunedAt: at,
  };
}

import { createHash } from 'node:crypto';
import type { Actor } from '../actor';
import {
  conflict,
  forbidden,
  insufficientCredits,
  LedgerError,
  notFound,
  ValidationFailed,
} from '../errors';
import { isAmount, MAX_AMOUNT } from '../identifiers';
import { toIso, toMillis } from '../time';
import {
  allocate,
  availableCredits,
  isExpired,
  subtractAllocations,
  sumOf,
  takeBack,
} from './burn-down';
import type { OrganizationCommand } from './commands';
import { evolve } from './evolve';
import type { Allocation, OrganizationEvent, Role } from './events';
import { transferInKey, type OrganizationState } from './state';

/**
 * Decides what happens when `command` meets `state` at `now` (epoch ms): the events to
 * append, or a LedgerError. Pure. An empty list means the command was already carried out
 * (an idempotent repeat): the caller answers with the first result.
 */
export function decide(
  command: OrganizationCommand,
  state: OrganizationState,
  now: number,
): OrganizationEvent[] {
  const occurredAt = toIso(now);
  const event = <E extends OrganizationEvent>(type: E['type'], data: E['data']) =>
    ({ type, data, occurredAt }) as E;

  if (command.type === 'CreateOrganization') {
    if (state.exists) {
      const same =
        state.name === command.name &&
        state.kind === command.kind &&
        state.ownerUserId === command.ownerUserId;
      if (same) return [];
      throw conflict(`organization ${state.organizationId} already exists`);
    }
    const { organizationId, name, kind, ownerUserId } = command;
    return [event('OrganizationCreated', { organizationId, name, kind, ownerUserId })];
  }
  if (!state.exists) throw notFound('organization not found');

  switch (command.type) {
    case 'AddMember': {
      const current = state.members.get(command.userId);
      if (current === command.role) return [];
      if (current) {
        throw conflict(`user ${command.userId} is already a member, as ${current}`, {
          role: current,
        });
      }
      if (state.kind === 'personal') {
        throw conflict('a personal organization has only its owner as member');
      }
      assertMayManage(state, command.actor, command.role);
      return [event('MemberAdded', { userId: command.userId, role: command.role })];
    }
    case 'ChangeMemberRole': {
      const current = memberRole(state, command.userId);
      if (current === command.role) return [];
      assertMayManage(state, command.actor, current);
      assertMayManage(state, command.actor, command.role);
      if (current === 'owner') assertAnotherOwner(state, command.userId, 'demoted');
      return [event('MemberRoleChanged', { userId: command.userId, role: command.role })];
    }
    case 'RemoveMember': {
      const current = memberRole(state, command.userId);
      assertMayManage(state, command.actor, current);
      if (current === 'owner') assertAnotherOwner(state, command.userId, 'removed');
      return [event('MemberRemoved', { userId: command.userId })];
    }
    case 'GrantCredits': {
      const { grantId, amount, source, priority, expiresAt } = command;
      const existing = state.grants.get(grantId);
      if (existing) {
        const same =
          existing.amount === amount &&
          existing.source === source &&
          existing.priority === priority &&
          existing.expiresAt === (expiresAt === null ? null : toMillis(expiresAt));
        if (same) return [];
        throw conflict(`grant ${grantId} was already made with other values`);
      }
      assertAmount(amount);
      if (source === 'transfer') {
        invalid('source', 'transfer grants are made by transfers only');
      }
      if (!Number.isSafeInteger(priority) || priority < 0) {
        invalid('priority', 'must be a whole number, 0 or more');
      }
      if (expiresAt !== null && !(toMillis(expiresAt) > now)) {
        invalid('expiresAt', 'must be in the future');
      }
      return [event('CreditsGranted', { grantId, amount, source, priority, expiresAt })];
    }
    case 'ChargeCharmRun': {
      const { runId, charmId, userId, amount } = command;
      const run = state.runs.get(runId);
      if (run) {
        const same = run.charmId === charmId && run.userId === userId && run.amount === amount;
        if (same && run.reservationId === undefined) return [];
        throw conflict(`run ${runId} was already charged with other values`);
      }
      assertAmount(amount);
      assertMember(state, userId);
      const allocations = allocateOrRefuse(state, amount, now);
      return withLowBalanceCheck(state, now, () => availableCredits(state, now) - amount, [
        event('CharmRunCharged', { runId, charmId, userId, amount, allocations }),
      ]);
    }
    case 'RefundCharmRun': {
      const run = state.runs.get(command.runId);
      if (!run) throw notFound(`run ${command.runId} not found`);
      if (command.refundId !== undefined && run.refunds.has(command.refundId)) {
        if (command.amount === undefined || run.refunds.get(command.refundId) === command.amount) {
          return [];
        }
        throw conflict(`refund ${command.refundId} was already made with another amount`);
      }
      const refundable = sumOf(run.refundable);
      if (refundable === 0) throw conflict(`run ${run.runId} is already fully refunded`);
      const amount = command.amount ?? refundable;
      assertAmount(amount);
      if (amount > refundable) {
        throw conflict(`at most ${refundable} credits of run ${run.runId} can be refunded`, {
          refundable,
        });
      }
      const allocations = takeBack(run.refundable, amount);
      return [
        event('CharmRunRefunded', {
          runId: run.runId,
          amount,
          allocations,
          charmId: run.charmId,
          userId: run.userId,
          chargedAt: toIso(run.chargedAt),
          ...(command.refundId === undefined ? {} : { refundId: command.refundId }),
        }),
        ...expireReturnedCredits(state, allocations, now, event),
      ];
    }
    case 'ReserveCredits': {
      const { reservationId, charmId, userId, amount, ttlSeconds } = command;
      const existing = state.reservations.get(reservationId);
      if (existing) {
        const same =
          existing.charmId === charmId &&
          existing.userId === userId &&
          existing.amount === amount &&
          existing.ttlSeconds === ttlSeconds;
        if (same) return [];
        throw conflict(`reservation ${reservationId} was already made with other values`);
      }
      assertAmount(amount);
      if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TTL_SECONDS) {
        invalid('ttlSeconds', `must be a whole number from 1 to ${MAX_TTL_SECONDS}`);
      }
      assertMember(state, userId);
      const allocations = allocateOrRefuse(state, amount, now);
      const expiresAt = toIso(now + ttlSeconds * 1000);
      return withLowBalanceCheck(state, now, () => availableCredits(state, now) - amount, [
        event('CreditsReserved', {
          reservationId,
          charmId,
          userId,
          amount,
          expiresAt,
          allocations,
        }),
      ]);
    }
    case 'CaptureReservation': {
      const reservation = state.reservations.get(command.reservationId);
      if (!reservation) throw notFound(`reservation ${command.reservationId} not found`);
      const runId = command.runId ?? reservation.reservationId;
      if (reservation.status === 'captured') {
        if (reservation.captured === command.amount && reservation.runId === runId) return [];
        throw conflict(`reservation ${reservation.reservationId} was already captured`);
      }
      if (reservation.status === 'released' || now >= reservation.expiresAt) {
        throw conflict(`reservation ${reservation.reservationId} was released`, {
          reason: reservation.releaseReason ?? 'expired',
        });
      }
      assertAmount(command.amount);
      if (command.amount > reservation.amount) {
        throw conflict(`at most the ${reservation.amount} credits held can be captured`, {
          held: reservation.amount,
        });
      }
      if (state.runs.has(runId)) throw conflict(`run ${runId} was already charged`);
      const allocations = takeInOrder(reservation.allocations, command.amount);
      const giveBack = subtractAllocations(reservation.allocations, allocations);
      return [
        event('ReservationCaptured', {
          reservationId: reservation.reservationId,
          runId,
          amount: command.amount,
          released: reservation.amount - command.amount,
          allocations,
          releasedAllocations: giveBack,
          charmId: reservation.charmId,
          userId: reservation.userId,
        }),
        ...expireReturnedCredits(state, giveBack, now, event),
      ];
    }
    case 'ReleaseReservation': {
      const reservation = state.reservations.get(command.reservationId);
      if (!reservation) throw notFound(`reservation ${command.reservationId} not found`);
      if (reservation.status === 'released') return [];
      if (reservation.status === 'captured') {
        throw conflict(`reservation ${reservation.reservationId} was already captured`);
      }
      return releaseReservation(state, reservation.reservationId, now, event);
    }
    case 'ExpireDue': {
      const released = state.reservations
        .valueSeq()
        .filter((reservation) => reservation.status === 'held' && now >= reservation.expiresAt)
        .flatMap((reservation) => releaseReservation(state, reservation.reservationId, now, event))
        .toArray();
      const expired = state.burnDownOrder
        .map((grantId) => state.grants.get(grantId)!)
        .filter((grant) => grant.remaining > 0 && isExpired(grant, now))
        .map((grant) =>
          event('CreditsExpired', { grantId: grant.grantId, amount: grant.remaining }),
        );
      const events = [...released, ...expired];
      if (events.length === 0) return [];
      const after = events.reduce(evolve, state);
      return withLowBalanceCheck(state, now, () => availableCredits(after, now), events);
    }
    case 'TransferCredits': {
      const { transferId, toOrganizationId, amount } = command;
      const existing = state.transfersOut.get(transferId);
      if (existing) {
        if (existing.toOrganizationId === toOrganizationId && existing.amount === amount) {
          return [];
        }
        throw conflict(`transfer ${transferId} was already made with other values`);
      }
      assertAmount(amount);
      if (toOrganizationId === state.organizationId) {
        invalid('toOrganizationId', 'must be another organization');
      }
      if (command.actor.kind !== 'service') {
        const role = state.members.get(command.actor.id);
        if (role !== 'owner' && role !== 'admin') {
          throw forbidden('only owners and admins may transfer credits out');
        }
        if (command.actorRoleInRecipient === null) {
          throw forbidden(`transfers go only to organizations the user is a member of`);
        }
      }
      const allocations = allocateOrRefuse(state, amount, now);
      return withLowBalanceCheck(state, now, () => availableCredits(state, now) - amount, [
        event('CreditsTransferredOut', { transferId, toOrganizationId, amount, allocations }),
      ]);
    }
    case 'ReceiveTransfer': {
      const { transferId, fromOrganizationId, amount } = command;
      const existing = state.transfersIn.get(transferInKey(fromOrganizationId, transferId));
      if (existing) {
        if (existing.amount === amount) return [];
        throw conflict(`transfer ${transferId} was already received with another amount`);
      }
      assertAmount(amount);
      const grantId = transferGrantId(state, fromOrganizationId, transferId);
      return [event('CreditsTransferredIn', { transferId, fromOrganizationId, amount, grantId })];
    }
    case 'SetLowBalanceThreshold': {
      const { threshold } = command;
      if (!Number.isSafeInteger(threshold) || threshold < 0 || threshold > MAX_AMOUNT) {
        invalid('threshold', `must be a whole number from 0 to ${MAX_AMOUNT}`);
      }
      if (threshold === state.lowBalanceThreshold) return [];
      const set = event('LowBalanceThresholdSet', { threshold });
      const available = availableCredits(state, now);
      // Already below the new threshold: that is a crossing too, so say it at once.
      return threshold > 0 && available < threshold
        ? [set, event('LowBalanceReached', { threshold, available })]
        : [set];
    }
    default: {
      const unknown: never = command;
      throw new LedgerError('VALIDATION_FAILED', `unknown command ${JSON.stringify(unknown)}`);
    }
  }
}

/** Reservations are held at most 7 days, inside the idempotency window. */
export const MAX_TTL_SECONDS = 7 * 24 * 60 * 60;

type EventFactory = <E extends OrganizationEvent>(type: E['type'], data: E['data']) => E;

function invalid(field: string, message: string): never {
  throw new ValidationFailed([{ field, message }]);
}

function assertAmount(amount: number) {
  if (!isAmount(amount)) invalid('amount', `must be a whole number from 1 to ${MAX_AMOUNT}`);
}

function memberRole(state: OrganizationState, userId: string): Role {
  const role = state.members.get(userId);
  if (!role) throw notFound(`user ${userId} is not a member of ${state.organizationId}`);
  return role;
}

function assertMember(state: OrganizationState, userId: string) {
  if (!state.members.has(userId)) {
    throw forbidden(`user ${userId} is not a member of ${state.organizationId}`);
  }
}

/** Owners manage anyone; admins manage everyone but owners; nobody else manages members. */
function assertMayManage(state: OrganizationState, actor: Actor, role: Role) {
  if (actor.kind === 'service') return;
  const actorRole = state.members.get(actor.id);
  if (actorRole === 'owner') return;
  if (actorRole === 'admin' && role !== 'owner') return;
  throw forbidden(
    actorRole === 'admin'
      ? 'admins cannot add, change or remove owners'
      : 'only owners and admins manage members',
  );
}

function assertAnotherOwner(state: OrganizationState, userId: string, what: string) {
  const owners = state.members.filter((role, member) => role === 'owner' && member !== userId);
  if (owners.size === 0) throw conflict(`the last owner cannot be ${what}`);
}

function allocateOrRefuse(state: OrganizationState, amount: number, now: number): Allocation[] {
  const allocations = allocate(state, amount, now);
  if (!allocations) throw insufficientCredits(availableCredits(state, now), amount);
  return allocations;
}

/** The first `amount` credits of a hold, in the order they were set aside. */
function takeInOrder(allocations: readonly Allocation[], amount: number): Allocation[] {
  const taken: Allocation[] = [];
  let left = amount;
  for (const allocation of allocations) {
    if (left === 0) break;
    const part = Math.min(allocation.amount, left);
    taken.push({ grantId: allocation.grantId, amount: part });
    left -= part;
  }
  return taken;
}

/** Credits that come back to a grant whose time is up expire again at once. */
function expireReturnedCredits(
  state: OrganizationState,
  returned: readonly Allocation[],
  now: number,
  event: EventFactory,
): OrganizationEvent[] {
  const expired = new Map<string, number>();
  for (const { grantId, amount } of returned) {
    const grant = state.grants.get(grantId);
    if (grant && isExpired(grant, now)) expired.set(grantId, (expired.get(grantId) ?? 0) + amount);
  }
  return [...expired].map(([grantId, amount]) => event('CreditsExpired', { grantId, amount }));
}

function releaseReservation(
  state: OrganizationState,
  reservationId: string,
  now: number,
  event: EventFactory,
): OrganizationEvent[] {
  const reservation = state.reservations.get(reservationId)!;
  const reason = now >= reservation.expiresAt ? 'expired' : 'released';
  return [
    event('ReservationReleased', {
      reservationId,
      amount: reservation.amount,
      reason,
      allocations: [...reservation.allocations],
    }),
    ...expireReturnedCredits(state, reservation.allocations, now, event),
  ];
}

/**
 * Adds the LowBalanceReached fact when these events take the balance below the threshold
 * for the first time since it was last above it.
 */
function withLowBalanceCheck(
  state: OrganizationState,
  now: number,
  availableAfter: () => number,
  events: OrganizationEvent[],
): OrganizationEvent[] {
  const threshold = state.lowBalanceThreshold;
  if (threshold === 0 || state.lowBalanceReached) return events;
  const available = availableAfter();
  if (available >= threshold) return events;
  return [
    ...events,
    {
      type: 'LowBalanceReached',
      data: { threshold, available },
      occurredAt: toIso(now),
    },
  ];
}

/** The grant a transfer arrives as: `transfer-{transferId}`, or a digest if that is taken. */
function transferGrantId(
  state: OrganizationState,
  fromOrganizationId: string,
  transferId: string,
): string {
  const plain = `transfer-${transferId}`;
  if (plain.length <= 64 && !state.grants.has(plain)) return plain;
  const digest = createHash('sha256').update(`${fromOrganizationId}/${transferId}`).digest('hex');
  return `transfer-${digest.slice(0, 40)}`;
}

import type { Actor } from '../../../src/ledger/actor';
import { decide } from '../../../src/ledger/organization/decide';
import type { Allocation, OrganizationEvent, Role } from '../../../src/ledger/organization/events';
import { evolve } from '../../../src/ledger/organization/evolve';
import { initialOrganizationState } from '../../../src/ledger/organization/state';
import { at, specification, T0, type Given } from '../../support/decider';

/** Shorthands for the organization decider's tests. */
export const organization = specification({
  initialState: initialOrganizationState,
  decide,
  evolve,
});

export type Event = Given<OrganizationEvent>;

export const SERVICE: Actor = { kind: 'service', id: 'ops' };
export const user = (id: string): Actor => ({ kind: 'user', id });

export const created = (kind: 'company' | 'personal' = 'company'): Event => ({
  type: 'OrganizationCreated',
  data: { organizationId: 'acme', name: 'Acme', kind, ownerUserId: 'olga' },
});
export const memberAdded = (userId: string, role: Role): Event => ({
  type: 'MemberAdded',
  data: { userId, role },
});
export const granted = (
  grantId: string,
  amount: number,
  options: { priority?: number; expiresAt?: string | null; occurredAt?: string } = {},
): Event => ({
  type: 'CreditsGranted',
  data: {
    grantId,
    amount,
    source: 'purchase',
    priority: options.priority ?? 100,
    expiresAt: options.expiresAt ?? null,
  },
  ...(options.occurredAt === undefined ? {} : { occurredAt: options.occurredAt }),
});
export const charged = (
  runId: string,
  allocations: Allocation[],
  options: { userId?: string; charmId?: string; occurredAt?: string } = {},
): Event => ({
  type: 'CharmRunCharged',
  data: {
    runId,
    charmId: options.charmId ?? 'summarize',
    userId: options.userId ?? 'olga',
    amount: allocations.reduce((sum, allocation) => sum + allocation.amount, 0),
    allocations,
  },
  ...(options.occurredAt === undefined ? {} : { occurredAt: options.occurredAt }),
});
export const refunded = (
  runId: string,
  allocations: Allocation[],
  options: { refundId?: string; charmId?: string; userId?: string } = {},
): Event => ({
  type: 'CharmRunRefunded',
  data: {
    charmId: options.charmId ?? 'summarize',
    userId: options.userId ?? 'olga',
    chargedAt: at(T0),
    runId,
    amount: allocations.reduce((sum, allocation) => sum + allocation.amount, 0),
    allocations,
    ...(options.refundId === undefined ? {} : { refundId: options.refundId }),
  },
});
export const reserved = (
  reservationId: string,
  allocations: Allocation[],
  expiresAt: string,
): Event => ({
  type: 'CreditsReserved',
  data: {
    reservationId,
    charmId: 'long-charm',
    userId: 'olga',
    amount: allocations.reduce((sum, allocation) => sum + allocation.amount, 0),
    expiresAt,
    allocations,
  },
});

/** Reservation `reservationId` of 4 credits of grant a captured as run `captured`: 3 taken, 1 back. */
export const capturedAsRun = (reservationId: string): Event => ({
  type: 'ReservationCaptured',
  data: {
    reservationId,
    runId: 'captured',
    amount: 3,
    released: 1,
    allocations: [{ grantId: 'a', amount: 3 }],
    releasedAllocations: [{ grantId: 'a', amount: 1 }],
    charmId: 'long-charm',
    userId: 'olga',
  },
});

export const charge = (runId: string, amount: number, userId = 'olga') =>
  ({ type: 'ChargeCharmRun', runId, charmId: 'summarize', userId, amount }) as const;

/**
 * Events of an organization's stream (`organization-{organizationId}`), as API.md names
 * them. `occurredAt` is stamped by `decide` from the `now` it is given; in the store it
 * lives in the event's metadata.
 */

export type OrganizationKind = 'personal' | 'company';
export type Role = 'owner' | 'admin' | 'billing' | 'member';
export type GrantSource = 'purchase' | 'plan' | 'promotion' | 'adjustment' | 'transfer';

export const ROLES: readonly Role[] = ['owner', 'admin', 'billing', 'member'];
export const GRANT_SOURCES: readonly GrantSource[] = [
  'purchase',
  'plan',
  'promotion',
  'adjustment',
  'transfer',
];

/** Credits taken from (or given back to) one grant. */
export interface Allocation {
  grantId: string;
  amount: number;
}

type Event<Type extends string, Data> = { type: Type; data: Data; occurredAt: string };

export type OrganizationCreated = Event<
  'OrganizationCreated',
  { organizationId: string; name: string; kind: OrganizationKind; ownerUserId: string }
>;
export type MemberAdded = Event<'MemberAdded', { userId: string; role: Role }>;
export type MemberRoleChanged = Event<'MemberRoleChanged', { userId: string; role: Role }>;
export type MemberRemoved = Event<'MemberRemoved', { userId: string }>;
export type CreditsGranted = Event<
  'CreditsGranted',
  {
    grantId: string;
    amount: number;
    source: GrantSource;
    priority: number;
    expiresAt: string | null;
  }
>;
export type CharmRunCharged = Event<
  'CharmRunCharged',
  {
    runId: string;
    charmId: string;
    userId: string;
    amount: number;
    allocations: Allocation[];
  }
>;
export type CharmRunRefunded = Event<
  'CharmRunRefunded',
  {
    runId: string;
    amount: number;
    allocations: Allocation[];
    /** The run's charm, user and time, so usage can be corrected without a lookup. */
    charmId: string;
    userId: string;
    chargedAt: string;
    refundId?: string;
  }
>;
export type CreditsReserved = Event<
  'CreditsReserved',
  {
    reservationId: string;
    charmId: string;
    userId: string;
    amount: number;
    expiresAt: string;
    /** Which grants the held credits were set aside from (added to API.md's fields). */
    allocations: Allocation[];
  }
>;
export type ReservationCaptured = Event<
  'ReservationCaptured',
  {
    reservationId: string;
    runId: string;
    amount: number;
    released: number;
    /** The grants the captured credits came from. */
    allocations: Allocation[];
    /** The grants the rest went back to. */
    releasedAllocations: Allocation[];
    /** The run's charm and user, as on the hold. */
    charmId: string;
    userId: string;
  }
>;
export type ReservationReleased = Event<
  'ReservationReleased',
  {
    reservationId: string;
    amount: number;
    reason: 'released' | 'expired';
    /** The grants the held credits went back to. */
    allocations: Allocation[];
  }
>;
export type CreditsExpired = Event<'CreditsExpired', { grantId: string; amount: number }>;
export type CreditsTransferredOut = Event<
  'CreditsTransferredOut',
  { transferId: string; toOrganizationId: string; amount: number; allocations: Allocation[] }
>;
export type CreditsTransferredIn = Event<
  'CreditsTransferredIn',
  { transferId: string; fromOrganizationId: string; amount: number; grantId: string }
>;
export type LowBalanceThresholdSet = Event<'LowBalanceThresholdSet', { threshold: number }>;
/**
 * Available credits fell below the threshold: the fact behind the `LowBalance` notice.
 * Written once per crossing; the next one only after the balance rose back to the threshold.
 */
export type LowBalanceReached = Event<
  'LowBalanceReached',
  { threshold: number; available: number }
>;

export type OrganizationEvent =
  | OrganizationCreated
  | MemberAdded
  | MemberRoleChanged
  | MemberRemoved
  | CreditsGranted
  | CharmRunCharged
  | CharmRunRefunded
  | CreditsReserved
  | ReservationCaptured
  | ReservationReleased
  | CreditsExpired
  | CreditsTransferredOut
  | CreditsTransferredIn
  | LowBalanceThresholdSet
  | LowBalanceReached;

export type OrganizationEventType = OrganizationEvent['type'];

import { Map as ImmutableMap } from 'immutable';
import type { Allocation, GrantSource, OrganizationKind, Role } from './events';
import { RunBook } from './run-book';

/**
 * The write-side state of one organization, folded from its stream by `evolve`.
 * Collections are persistent (Immutable.js) so that evolve can stay pure without copying
 * a large organization on every event. Times are epoch milliseconds.
 */

export interface Grant {
  readonly grantId: string;
  readonly amount: number;
  readonly source: GrantSource;
  readonly priority: number;
  readonly expiresAt: number | null;
  /** Order of arrival: the last tie-breaker of the burn-down. */
  readonly sequence: number;
  /** Credits left to spend (held credits are set aside and not counted here). */
  readonly remaining: number;
  /** Credits of this grant set aside by open reservations. */
  readonly held: number;
  readonly grantedAt: number;
  readonly lastActivityAt: number;
}

export interface CharmRun {
  readonly runId: string;
  readonly charmId: string;
  readonly userId: string;
  readonly amount: number;
  readonly chargedAt: number;
  /** Per grant, what can still be refunded into it. */
  readonly refundable: readonly Allocation[];
  readonly refunded: number;
  /** Refunds by their idempotency key. */
  readonly refunds: ImmutableMap<string, number>;
  /** Available credits right after the charge: part of the first answer, repeated on replay. */
  readonly availableAfter: number;
  /** Set when the run was charged by capturing a reservation. */
  readonly reservationId?: string;
}

export interface Reservation {
  readonly reservationId: string;
  readonly charmId: string;
  readonly userId: string;
  readonly amount: number;
  readonly ttlSeconds: number;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly allocations: readonly Allocation[];
  readonly status: 'held' | 'captured' | 'released';
  readonly captured: number;
  readonly released: number;
  readonly runId?: string;
  readonly releaseReason?: 'released' | 'expired';
  readonly closedAt?: number;
}

export interface TransferOut {
  readonly transferId: string;
  readonly toOrganizationId: string;
  readonly amount: number;
  readonly at: number;
}

export interface TransferIn {
  readonly transferId: string;
  readonly fromOrganizationId: string;
  readonly amount: number;
  readonly grantId: string;
  readonly at: number;
}

export interface OrganizationState {
  readonly exists: boolean;
  readonly organizationId: string;
  readonly name: string;
  readonly kind: OrganizationKind;
  readonly ownerUserId: string;
  readonly createdAt: number;
  readonly members: ImmutableMap<string, Role>;
  readonly grants: ImmutableMap<string, Grant>;
  /** Grant ids in burn-down order: priority, earliest expiry (none last), oldest. */
  readonly burnDownOrder: readonly string[];
  readonly grantSequence: number;
  /** Runs of the idempotency window, by run id. */
  readonly runs: RunBook;
  readonly reservations: ImmutableMap<string, Reservation>;
  readonly transfersOut: ImmutableMap<string, TransferOut>;
  /** Keyed by `${fromOrganizationId}/${transferId}`: ids are only unique per sender. */
  readonly transfersIn: ImmutableMap<string, TransferIn>;
  readonly lowBalanceThreshold: number;
  /** The balance is below the threshold and the notice for this crossing was written. */
  readonly lowBalanceReached: boolean;
  /** When idempotency keys past their window were last dropped. */
  readonly prunedAt: number;
}

export const initialOrganizationState = (): OrganizationState => ({
  exists: false,
  organizationId: '',
  name: '',
  kind: 'company',
  ownerUserId: '',
  createdAt: 0,
  members: ImmutableMap(),
  grants: ImmutableMap(),
  burnDownOrder: [],
  grantSequence: 0,
  runs: RunBook.empty(),
  reservations: ImmutableMap(),
  transfersOut: ImmutableMap(),
  transfersIn: ImmutableMap(),
  lowBalanceThreshold: 0,
  lowBalanceReached: false,
  prunedAt: 0,
});

export const transferInKey = (fromOrganizationId: string, transferId: string) =>
  `${fromOrganizationId}/${transferId}`;

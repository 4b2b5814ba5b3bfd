import type { Allocation, OrganizationEvent } from '../src/ledger/organization/events';
import { fromRecorded } from '../src/write/aggregate-writer';
import { organizationOf, type Change, type Projection } from './change';

const GRANTS = 'balance_grants';

/**
 * Each organization's grants as they stand: remaining and held credits, priority, expiry.
 * Available credits are computed at read time, since expiry depends on when one asks.
 */
export const balanceProjection: Projection = {
  name: 'balance',
  tables: { [GRANTS]: ['organization_id', 'grant_id'] },
  handle(recorded): Change[] {
    const organizationId = organizationOf(recorded);
    if (organizationId === undefined) return [];
    const event = fromRecorded<OrganizationEvent>(recorded);
    const move = (allocations: readonly Allocation[], remaining: number, held: number) =>
      allocations.map(({ grantId, amount }): Change => ({
        kind: 'increment',
        table: GRANTS,
        key: { organization_id: organizationId, grant_id: grantId },
        add: { remaining: remaining * amount, held: held * amount },
      }));
    const grant = (
      grantId: string,
      amount: number,
      source: string,
      priority: number,
      expiresAt: string | null,
    ): Change => ({
      kind: 'upsert',
      table: GRANTS,
      key: { organization_id: organizationId, grant_id: grantId },
      set: {
        source,
        priority,
        expires_at: expiresAt,
        amount,
        remaining: amount,
        held: 0,
        granted_at: event.occurredAt,
        position: recorded.position.toString(),
      },
    });
    switch (event.type) {
      case 'CreditsGranted': {
        const { grantId, amount, source, priority, expiresAt } = event.data;
        return [grant(grantId, amount, source, priority, expiresAt)];
      }
      case 'CreditsTransferredIn':
        return [grant(event.data.grantId, event.data.amount, 'transfer', 100, null)];
      case 'CharmRunCharged':
      case 'CreditsTransferredOut':
        return move(event.data.allocations, -1, 0);
      case 'CharmRunRefunded':
        return move(event.data.allocations, +1, 0);
      case 'CreditsExpired':
        return move([event.data], -1, 0);
      case 'CreditsReserved':
        return move(event.data.allocations, -1, +1);
      case 'ReservationCaptured':
        return [
          ...move(event.data.allocations, 0, -1),
          ...move(event.data.releasedAllocations, +1, -1),
        ];
      case 'ReservationReleased':
        return move(event.data.allocations, +1, -1);
      default:
        return [];
    }
  },
};

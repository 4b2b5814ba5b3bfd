import type { OrganizationEvent } from '../src/ledger/organization/events';
import { fromRecorded } from '../src/write/aggregate-writer';
import { dayOf, organizationOf, type Change, type Projection } from './change';

const DAILY = 'usage_daily';
const RUNS = 'usage_runs';

/**
 * Usage for finance: pre-aggregated per organization × day × charm × user, and one line
 * per charm run with what was refunded of it. A refund counts on the run's own day.
 */
export const usageProjection: Projection = {
  name: 'usage',
  tables: {
    [DAILY]: ['organization_id', 'day', 'charm_id', 'user_id'],
    [RUNS]: ['organization_id', 'run_id'],
  },
  handle(recorded): Change[] {
    const organizationId = organizationOf(recorded);
    if (organizationId === undefined) return [];
    const event = fromRecorded<OrganizationEvent>(recorded);
    const charged = (runId: string, charmId: string, userId: string, amount: number): Change[] => {
      const day = dayOf(event.occurredAt);
      return [
        {
          kind: 'upsert',
          table: RUNS,
          key: { organization_id: organizationId, run_id: runId },
          set: {
            charm_id: charmId,
            user_id: userId,
            charged_at: event.occurredAt,
            day,
            credits: amount,
            refunded: 0,
          },
        },
        {
          kind: 'accumulate',
          table: DAILY,
          key: { organization_id: organizationId, day, charm_id: charmId, user_id: userId },
          add: { runs: 1, credits: amount, refunded: 0 },
        },
      ];
    };
    switch (event.type) {
      case 'CharmRunCharged': {
        const { runId, charmId, userId, amount } = event.data;
        return charged(runId, charmId, userId, amount);
      }
      case 'ReservationCaptured': {
        const { runId, charmId, userId, amount } = event.data;
        return charged(runId, charmId, userId, amount);
      }
      case 'CharmRunRefunded': {
        const { runId, charmId, userId, chargedAt, amount } = event.data;
        return [
          {
            kind: 'increment',
            table: RUNS,
            key: { organization_id: organizationId, run_id: runId },
            add: { refunded: amount },
          },
          {
            kind: 'accumulate',
            table: DAILY,
            key: {
              organization_id: organizationId,
              day: dayOf(chargedAt),
              charm_id: charmId,
              user_id: userId,
            },
            add: { runs: 0, credits: 0, refunded: amount },
          },
        ];
      }
      default:
        return [];
    }
  },
};

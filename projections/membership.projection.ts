import type { OrganizationEvent } from '../src/ledger/organization/events';
import type { UserEvent } from '../src/ledger/user/events';
import { fromRecorded } from '../src/write/aggregate-writer';
import { organizationOf, userOf, type Change, type Projection } from './change';

const ORGANIZATIONS = 'organizations';
const MEMBERSHIPS = 'memberships';
const ACTIVE = 'active_organizations';

/** Organizations, who belongs to which with what role, and each user's active organization. */
export const membershipProjection: Projection = {
  name: 'membership',
  tables: {
    [ORGANIZATIONS]: ['organization_id'],
    [MEMBERSHIPS]: ['organization_id', 'user_id'],
  },
  handle(recorded): Change[] {
    const organizationId = organizationOf(recorded);
    if (organizationId === undefined) return [];
    const event = fromRecorded<OrganizationEvent>(recorded);
    switch (event.type) {
      case 'OrganizationCreated': {
        const { name, kind, ownerUserId } = event.data;
        return [
          {
            kind: 'upsert',
            table: ORGANIZATIONS,
            key: { organization_id: organizationId },
            set: {
              name,
              kind,
              owner_user_id: ownerUserId,
              created_at: event.occurredAt,
              low_balance_threshold: 0,
            },
          },
          {
            kind: 'upsert',
            table: MEMBERSHIPS,
            key: { organization_id: organizationId, user_id: ownerUserId },
            set: { role: 'owner' },
          },
        ];
      }
      case 'MemberAdded':
      case 'MemberRoleChanged':
        return [
          {
            kind: 'upsert',
            table: MEMBERSHIPS,
            key: { organization_id: organizationId, user_id: event.data.userId },
            set: { role: event.data.role },
          },
        ];
      case 'LowBalanceThresholdSet':
        return [
          {
            kind: 'update',
            table: ORGANIZATIONS,
            key: { organization_id: organizationId },
            set: { low_balance_threshold: event.data.threshold },
          },
        ];
      case 'MemberRemoved':
        return [
          {
            kind: 'delete',
            table: MEMBERSHIPS,
            key: { organization_id: organizationId, user_id: event.data.userId },
          },
        ];
      default:
        return [];
    }
  },
};

export const activeOrganizationProjection: Projection = {
  name: 'active-organization',
  tables: { [ACTIVE]: ['user_id'] },
  handle(recorded): Change[] {
    const userId = userOf(recorded);
    if (userId === undefined) return [];
    const event = fromRecorded<UserEvent>(recorded);
    switch (event.type) {
      case 'UserRegistered':
        return [
          {
            kind: 'upsert',
            table: ACTIVE,
            key: { user_id: userId },
            set: {
              personal_organization_id: event.data.personalOrganizationId,
              organization_id: event.data.personalOrganizationId,
            },
          },
        ];
      case 'ActiveOrganizationSwitched':
        return [
          {
            kind: 'update',
            table: ACTIVE,
            key: { user_id: userId },
            set: { organization_id: event.data.organizationId },
          },
        ];
      default:
        return [];
    }
  },
};

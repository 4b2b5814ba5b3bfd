import type { OrganizationCommand } from '../../src/ledger/organization/commands';

/** A company organization owned by olga. */
export const createOrganization = (organizationId: string): OrganizationCommand => ({
  type: 'CreateOrganization',
  organizationId,
  name: 'Acme',
  kind: 'company',
  ownerUserId: 'olga',
});

/** A purchased grant `g` of `amount` credits that never expires. */
export const grantCredits = (amount: number): OrganizationCommand => ({
  type: 'GrantCredits',
  grantId: 'g',
  amount,
  source: 'purchase',
  priority: 100,
  expiresAt: null,
});

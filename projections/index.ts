import { balanceProjection } from './balance.projection';
import type { Projection } from './change';
import { activeOrganizationProjection, membershipProjection } from './membership.projection';
import { usageProjection } from './usage.projection';

export const PROJECTIONS: readonly Projection[] = [
  balanceProjection,
  usageProjection,
  membershipProjection,
  activeOrganizationProjection,
];

export type { Change, Projection, Row, Value } from './change';

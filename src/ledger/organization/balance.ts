import { toIso } from '../time';
import { availableCredits, isExpired, reservedCredits } from './burn-down';
import type { OrganizationState } from './state';

export interface GrantBalance {
  grantId: string;
  source: string;
  remaining: number;
  held: number;
  priority: number;
  expiresAt: string | null;
}

export interface Balance {
  available: number;
  reserved: number;
  /** Grants that still count, in the order they burn down. */
  grants: GrantBalance[];
}

/** The balance as it stands at `now`: expired grants are left out whether or not written. */
export function balanceAt(state: OrganizationState, now: number): Balance {
  const grants: GrantBalance[] = [];
  for (const grantId of state.burnDownOrder) {
    const grant = state.grants.get(grantId)!;
    if (isExpired(grant, now) || grant.remaining + grant.held === 0) continue;
    grants.push({
      grantId,
      source: grant.source,
      remaining: grant.remaining,
      held: grant.held,
      priority: grant.priority,
      expiresAt: grant.expiresAt === null ? null : toIso(grant.expiresAt),
    });
  }
  return { available: availableCredits(state, now), reserved: reservedCredits(state), grants };
}

import type { Allocation } from './events';
import type { Grant, OrganizationState } from './state';

/** A grant with an expiry stops counting at that instant, whether or not CreditsExpired is written. */
export const isExpired = (grant: Grant, now: number): boolean =>
  grant.expiresAt !== null && now >= grant.expiresAt;

/** Burn-down order: lower priority first, then earliest expiry (none last), then oldest. */
export function compareForBurnDown(a: Grant, b: Grant): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  if (a.expiresAt !== b.expiresAt) {
    if (a.expiresAt === null) return 1;
    if (b.expiresAt === null) return -1;
    return a.expiresAt - b.expiresAt;
  }
  return a.sequence - b.sequence;
}

/** The order with `grant` placed where the burn-down takes it (the key never changes). */
export function insertInBurnDownOrder(
  order: readonly string[],
  grants: OrganizationState['grants'],
  grant: Grant,
): string[] {
  let low = 0;
  let high = order.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareForBurnDown(grants.get(order[middle])!, grant) <= 0) low = middle + 1;
    else high = middle;
  }
  return [...order.slice(0, low), grant.grantId, ...order.slice(low)];
}

export function availableCredits(state: OrganizationState, now: number): number {
  return availableIn(state.grants, now);
}

/** `availableCredits` of a state holding `grants`. */
export function availableIn(grants: OrganizationState['grants'], now: number): number {
  let available = 0;
  for (const grant of grants.values()) {
    if (!isExpired(grant, now)) available += grant.remaining;
  }
  return available;
}

export function reservedCredits(state: OrganizationState): number {
  let reserved = 0;
  for (const grant of state.grants.values()) reserved += grant.held;
  return reserved;
}

/**
 * Takes `amount` from the spendable grants in burn-down order; undefined when they do not
 * hold enough. Pure: the caller turns the allocations into an event.
 */
export function allocate(
  state: OrganizationState,
  amount: number,
  now: number,
): Allocation[] | undefined {
  const allocations: Allocation[] = [];
  let missing = amount;
  for (const grantId of state.burnDownOrder) {
    const grant = state.grants.get(grantId)!;
    if (grant.remaining === 0 || isExpired(grant, now)) continue;
    const taken = Math.min(grant.remaining, missing);
    allocations.push({ grantId, amount: taken });
    missing -= taken;
    if (missing === 0) return allocations;
  }
  return undefined;
}

/**
 * Gives back up to `amount` of what `allocations` took, last taken first, so a partial
 * refund undoes the end of the charge. Returns the allocations given back.
 */
export function takeBack(allocations: readonly Allocation[], amount: number): Allocation[] {
  const back: Allocation[] = [];
  let left = amount;
  for (let i = allocations.length - 1; i >= 0 && left > 0; i--) {
    const given = Math.min(allocations[i].amount, left);
    if (given > 0) back.push({ grantId: allocations[i].grantId, amount: given });
    left -= given;
  }
  return back;
}

/** What is left of `from` once `minus` is taken out of it, grant by grant. */
export function subtractAllocations(
  from: readonly Allocation[],
  minus: readonly Allocation[],
): Allocation[] {
  const taken = new Map<string, number>();
  for (const { grantId, amount } of minus) taken.set(grantId, (taken.get(grantId) ?? 0) + amount);
  const left: Allocation[] = [];
  for (const { grantId, amount } of from) {
    const remove = Math.min(amount, taken.get(grantId) ?? 0);
    taken.set(grantId, (taken.get(grantId) ?? 0) - remove);
    if (amount - remove > 0) left.push({ grantId, amount: amount - remove });
  }
  return left;
}

export const sumOf = (allocations: readonly Allocation[]) =>
  allocations.reduce((sum, allocation) => sum + allocation.amount, 0);

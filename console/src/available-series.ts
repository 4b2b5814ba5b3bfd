import type { Allocation, LedgerEvent } from './api';

/** One point of the balance chart: available credits right after `at`, and what moved them. */
export interface AvailablePoint {
  at: number;
  available: number;
  cause: string;
  /** What the chart marks at this point: a grant, an expiry, a transfer. */
  mark?: string;
}

export interface Marker {
  at: number;
  available: number;
  label: string;
}

export interface AvailableSeries {
  points: AvailablePoint[];
  grants: Marker[];
  expiries: Marker[];
  transfers: Marker[];
}

interface GrantState {
  remaining: number;
  expiresAt: number | null;
}

/**
 * Available credits over time, folded from the organization's events the way the ledger's
 * evolve() moves credits between grants: available is what unexpired grants still hold, so
 * an expiry shows at its `expiresAt`, whether or not CreditsExpired has been written yet.
 */
export function availableSeries(events: readonly LedgerEvent[], until: number): AvailableSeries {
  const grants = new Map<string, GrantState>();
  const holds = new Map<string, Allocation[]>();
  const series: AvailableSeries = { points: [], grants: [], expiries: [], transfers: [] };
  const availableAt = (at: number) => {
    let sum = 0;
    for (const grant of grants.values()) {
      if (grant.expiresAt === null || at < grant.expiresAt) sum += grant.remaining;
    }
    return sum;
  };
  const move = (allocations: unknown, sign: 1 | -1) => {
    for (const { grantId, amount } of asAllocations(allocations)) {
      const grant = grants.get(grantId);
      if (grant) grant.remaining += sign * amount;
    }
  };
  // Expiries due before `at` that have not been drawn yet, each as a point of its own.
  const pendingExpiries: { at: number; grantId: string }[] = [];
  const drawExpiriesUntil = (at: number) => {
    pendingExpiries.sort((a, b) => a.at - b.at);
    while (pendingExpiries.length > 0 && pendingExpiries[0].at <= at) {
      const { at: expiredAt, grantId } = pendingExpiries.shift()!;
      const available = availableAt(expiredAt);
      const label = `grant ${grantId} expires`;
      series.points.push({ at: expiredAt, available, cause: 'expiry', mark: label });
      series.expiries.push({ at: expiredAt, available, label });
    }
  };

  for (const event of events) {
    const at = Date.parse(event.metadata.occurredAt);
    drawExpiriesUntil(at);
    const data = event.data;
    switch (event.type) {
      case 'CreditsGranted':
      case 'CreditsTransferredIn': {
        const expiresAt = typeof data.expiresAt === 'string' ? Date.parse(data.expiresAt) : null;
        const grantId = String(data.grantId);
        grants.set(grantId, { remaining: Number(data.amount), expiresAt });
        if (expiresAt !== null) pendingExpiries.push({ at: expiresAt, grantId });
        break;
      }
      case 'CharmRunCharged':
      case 'CreditsTransferredOut':
      case 'CreditsReserved':
        move(data.allocations, -1);
        if (event.type === 'CreditsReserved') {
          holds.set(String(data.reservationId), asAllocations(data.allocations));
        }
        break;
      case 'CharmRunRefunded':
        move(data.allocations, +1);
        break;
      case 'ReservationCaptured': {
        // What the hold took and the capture did not keep goes back to its grants.
        const held = holds.get(String(data.reservationId)) ?? [];
        move(subtract(held, asAllocations(data.allocations)), +1);
        holds.delete(String(data.reservationId));
        break;
      }
      case 'ReservationReleased':
        move(holds.get(String(data.reservationId)) ?? [], +1);
        holds.delete(String(data.reservationId));
        break;
      case 'CreditsExpired':
        move([{ grantId: data.grantId, amount: data.amount }], -1);
        break;
      default:
        continue; // Membership and settings move no credits.
    }
    const point: AvailablePoint = { at, available: availableAt(at), cause: event.type };
    if (event.type === 'CreditsGranted') {
      point.mark = `${String(data.amount)} credits granted`;
      series.grants.push({ ...point, label: point.mark });
    } else if (event.type === 'CreditsTransferredIn') {
      point.mark = `${String(data.amount)} credits in from ${String(data.fromOrganizationId)}`;
      series.transfers.push({ ...point, label: point.mark });
    } else if (event.type === 'CreditsTransferredOut') {
      point.mark = `${String(data.amount)} credits out to ${String(data.toOrganizationId)}`;
      series.transfers.push({ ...point, label: point.mark });
    }
    series.points.push(point);
  }
  // Expiries since the last event still change what is available. The line ends at the last
  // change rather than now, so that old histories keep a readable time axis.
  drawExpiriesUntil(until);
  return series;
}

function asAllocations(value: unknown): Allocation[] {
  if (!Array.isArray(value)) return [];
  return value.map((item: { grantId?: unknown; amount?: unknown }) => ({
    grantId: String(item.grantId),
    amount: Number(item.amount),
  }));
}

/** `from` less `minus`, grant by grant (as subtractAllocations in the ledger's burn-down). */
function subtract(from: Allocation[], minus: Allocation[]): Allocation[] {
  const taken = new Map<string, number>();
  for (const { grantId, amount } of minus) taken.set(grantId, (taken.get(grantId) ?? 0) + amount);
  return from.map(({ grantId, amount }) => {
    const remove = Math.min(amount, taken.get(grantId) ?? 0);
    taken.set(grantId, (taken.get(grantId) ?? 0) - remove);
    return { grantId, amount: amount - remove };
  });
}

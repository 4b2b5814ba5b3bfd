import { Map as ImmutableMap } from 'immutable';
import type { OrganizationState } from './state';

/** Bump when the state's shape changes: older snapshots are then ignored and rebuilt. */
export const ORGANIZATION_SNAPSHOT_VERSION = 1;

const NO_REFUNDS = ImmutableMap<string, number>();

export function serializeOrganization(state: OrganizationState): string {
  return JSON.stringify({
    ...state,
    members: [...state.members],
    grants: [...state.grants],
    runs: [...state.runs].map(([runId, run]) => [runId, { ...run, refunds: [...run.refunds] }]),
    reservations: [...state.reservations],
    transfersOut: [...state.transfersOut],
    transfersIn: [...state.transfersIn],
  });
}

export function deserializeOrganization(text: string): OrganizationState {
  const raw = JSON.parse(text);
  return {
    ...raw,
    members: ImmutableMap(raw.members),
    grants: ImmutableMap(raw.grants),
    runs: ImmutableMap(
      (raw.runs as [string, { refunds: [string, number][] }][]).map(([runId, run]) => {
        // Most runs were never refunded: share one empty map instead of building thousands.
        run.refunds = (run.refunds.length === 0 ? NO_REFUNDS : ImmutableMap(run.refunds)) as never;
        return [runId, run];
      }),
    ),
    reservations: ImmutableMap(raw.reservations),
    transfersOut: ImmutableMap(raw.transfersOut),
    transfersIn: ImmutableMap(raw.transfersIn),
  };
}

import type { Actor } from '../ledger/actor';

/** Scopes of service tokens (API.md, "Who may do what"). */
export const SERVICE_SCOPE = 'ledger:service';
export const REPORTS_SCOPE = 'ledger:reports';
export const AUDIT_SCOPE = 'ledger:audit';

/**
 * Who is calling, as the token says. A service acts by its scopes; a user by their role in
 * each organization; an integration as its user, in its one organization only.
 */
export type Caller =
  | { kind: 'service'; id: string; scopes: ReadonlySet<string> }
  | { kind: 'user'; userId: string }
  | { kind: 'integration'; userId: string; organizationId: string };

export function actorOf(caller: Caller): Actor {
  return caller.kind === 'service'
    ? { kind: 'service', id: caller.id }
    : { kind: caller.kind, id: caller.userId };
}

/** The ledger itself, for follow-up work nobody asked for directly. */
export const LEDGER_CALLER: Caller = {
  kind: 'service',
  id: 'ledger',
  scopes: new Set([SERVICE_SCOPE]),
};

import { Injectable } from '@nestjs/common';
import { forbidden } from '../ledger/errors';
import type { Role } from '../ledger/organization/events';
import { OrganizationWriter } from '../write/writers';
import { AUDIT_SCOPE, REPORTS_SCOPE, SERVICE_SCOPE, type Caller } from './caller';

/** What a caller may want to do in an organization. */
export type OrganizationAction =
  | 'charge'
  | 'reserve'
  | 'capture'
  | 'release'
  | 'readBalance'
  | 'readOrganization'
  | 'readMembers'
  | 'readUsage'
  | 'setThreshold'
  | 'refund'
  | 'readHistory'
  | 'verify'
  | 'manageMembers'
  | 'transferOut'
  | 'grant';

const EVERYONE: readonly Role[] = ['owner', 'admin', 'billing', 'member'];
const MONEY: readonly Role[] = ['owner', 'admin', 'billing'];
const MANAGERS: readonly Role[] = ['owner', 'admin'];

/**
 * API.md's table of who may do what, by role. Grants are for service tokens only. Refunds are
 * not in API.md's table: they give credits back, so they sit with those who handle money.
 */
export const ROLES_ALLOWED: Record<OrganizationAction, readonly Role[]> = {
  charge: EVERYONE,
  reserve: EVERYONE,
  capture: EVERYONE,
  release: EVERYONE,
  readBalance: EVERYONE,
  readOrganization: EVERYONE,
  readMembers: EVERYONE,
  readUsage: MONEY,
  setThreshold: MONEY,
  refund: MONEY,
  readHistory: MANAGERS,
  verify: MANAGERS,
  manageMembers: MANAGERS,
  transferOut: MANAGERS,
  grant: [],
};

/** Narrow service scopes and what each allows, in any organization. */
const SCOPE_ALLOWS: Record<string, readonly OrganizationAction[]> = {
  [REPORTS_SCOPE]: ['readUsage'],
  [AUDIT_SCOPE]: ['readHistory', 'verify'],
};

/**
 * The one place where access is decided, for HTTP and gRPC alike. Roles are read from the
 * organization's write-side state, so a removed member loses access at once.
 */
@Injectable()
export class Access {
  constructor(private readonly organizations: OrganizationWriter) {}

  async require(caller: Caller, action: OrganizationAction, organizationId: string): Promise<void> {
    if (caller.kind === 'service') {
      if (caller.scopes.has(SERVICE_SCOPE)) return;
      const allowed = [...caller.scopes].some((scope) => SCOPE_ALLOWS[scope]?.includes(action));
      if (!allowed) throw forbidden(`the token's scopes do not allow ${action}`);
      return;
    }
    if (caller.kind === 'integration' && caller.organizationId !== organizationId) {
      throw forbidden(`this integration works only in organization ${caller.organizationId}`);
    }
    const { state } = await this.organizations.read(organizationId);
    const role = state.members.get(caller.userId);
    if (!role) throw forbidden(`user ${caller.userId} is not a member of ${organizationId}`);
    if (!ROLES_ALLOWED[action].includes(role)) {
      throw forbidden(
        action === 'grant'
          ? 'credits are granted by services only'
          : `a ${role} may not ${describe(action)}`,
      );
    }
  }

  /** Acting for a user: services may name anyone; users and integrations only themselves. */
  requireSelf(caller: Caller, userId: string, what: string): void {
    if (caller.kind === 'service') {
      if (caller.scopes.has(SERVICE_SCOPE)) return;
      throw forbidden(`the token's scopes do not allow ${what}`);
    }
    if (caller.userId !== userId) throw forbidden(`users may ${what} only for themselves`);
  }

  /** Things of a user's own (sign-up, switching the active organization): no integrations. */
  requireUserOrService(caller: Caller, userId: string, what: string): void {
    if (caller.kind === 'integration') throw forbidden(`integrations may not ${what}`);
    this.requireSelf(caller, userId, what);
  }
}

function describe(action: OrganizationAction): string {
  return action.replace(/[A-Z]/g, (letter) => ` ${letter.toLowerCase()}`);
}

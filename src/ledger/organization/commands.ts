import type { Actor } from '../actor';
import type { GrantSource, OrganizationKind, Role } from './events';

/** What callers ask of an organization. Inputs are already shape-checked at the edge. */
export type OrganizationCommand =
  | {
      type: 'CreateOrganization';
      organizationId: string;
      name: string;
      kind: OrganizationKind;
      ownerUserId: string;
    }
  | { type: 'AddMember'; userId: string; role: Role; actor: Actor }
  | { type: 'ChangeMemberRole'; userId: string; role: Role; actor: Actor }
  | { type: 'RemoveMember'; userId: string; actor: Actor }
  | {
      type: 'GrantCredits';
      grantId: string;
      amount: number;
      source: GrantSource;
      priority: number;
      expiresAt: string | null;
    }
  | { type: 'ChargeCharmRun'; runId: string; charmId: string; userId: string; amount: number }
  | { type: 'RefundCharmRun'; runId: string; amount?: number; refundId?: string }
  | {
      type: 'ReserveCredits';
      reservationId: string;
      charmId: string;
      userId: string;
      amount: number;
      ttlSeconds: number;
    }
  | { type: 'CaptureReservation'; reservationId: string; amount: number; runId?: string }
  | { type: 'ReleaseReservation'; reservationId: string }
  /** Housekeeping: write what time has already decided (expired grants and holds). */
  | { type: 'ExpireDue' }
  | {
      type: 'TransferCredits';
      transferId: string;
      toOrganizationId: string;
      amount: number;
      actor: Actor;
      /** The actor's role in the receiving organization, looked up by the handler. */
      actorRoleInRecipient: Role | null;
    }
  | { type: 'ReceiveTransfer'; transferId: string; fromOrganizationId: string; amount: number }
  | { type: 'SetLowBalanceThreshold'; threshold: number };

export type OrganizationCommandType = OrganizationCommand['type'];

import { Command } from '@nestjs/cqrs';
import type { GrantSource, OrganizationKind, Role } from '../ledger/organization/events';
import type { Allocation } from '../ledger/organization/events';
import type { Caller } from '../auth/caller';
import type { CommandContext } from './aggregate-writer';

/**
 * The commands the edges send over the command bus. Each reply carries `position` (the
 * write's global position, for read-your-writes) and `replayed` (an idempotent repeat).
 */
/** Who asked (checked against the access table) and the metadata their events carry. */
export interface RequestContext extends CommandContext {
  caller: Caller;
}

export interface Reply {
  position: bigint;
  replayed: boolean;
}

export interface AvailableBalance {
  available: number;
  reserved: number;
}

export class RegisterUser extends Command<
  Reply & { userId: string; personalOrganizationId: string; activeOrganizationId: string }
> {
  constructor(
    readonly input: { userId: string; name?: string },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export class SwitchActiveOrganization extends Command<Reply & { activeOrganizationId: string }> {
  constructor(
    readonly input: { userId: string; organizationId: string },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export interface OrganizationReply extends Reply {
  organizationId: string;
  name: string;
  kind: OrganizationKind;
  ownerUserId: string;
}

export class CreateOrganization extends Command<OrganizationReply> {
  constructor(
    readonly input: { organizationId: string; name: string; ownerUserId: string },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export interface MemberReply extends Reply {
  organizationId: string;
  userId: string;
  role: Role;
}

export class AddMember extends Command<MemberReply> {
  constructor(
    readonly input: { organizationId: string; userId: string; role: Role },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export class ChangeMemberRole extends Command<MemberReply> {
  constructor(
    readonly input: { organizationId: string; userId: string; role: Role },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export class RemoveMember extends Command<Reply & { organizationId: string; userId: string }> {
  constructor(
    readonly input: { organizationId: string; userId: string },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export class GrantCredits extends Command<
  Reply & {
    organizationId: string;
    grantId: string;
    amount: number;
    source: GrantSource;
    priority: number;
    expiresAt: string | null;
    balance: AvailableBalance;
  }
> {
  constructor(
    readonly input: {
      organizationId: string;
      grantId: string;
      amount: number;
      source: GrantSource;
      priority?: number;
      expiresAt?: string | null;
    },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export class ChargeCharmRun extends Command<
  Reply & {
    runId: string;
    organizationId: string;
    charged: number;
    allocations: Allocation[];
    balance: { available: number };
  }
> {
  constructor(
    readonly input: {
      runId: string;
      charmId: string;
      userId: string;
      amount: number;
      organizationId?: string;
    },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export class RefundCharmRun extends Command<
  Reply & {
    organizationId: string;
    runId: string;
    refunded: number;
    totalRefunded: number;
    allocations: Allocation[];
    /** Credits that went back into grants whose time was up, and expired again at once. */
    expired: Allocation[];
    balance: { available: number };
  }
> {
  constructor(
    readonly input: { organizationId: string; runId: string; amount?: number; refundId?: string },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export class ReserveCredits extends Command<
  Reply & {
    organizationId: string;
    reservationId: string;
    amount: number;
    expiresAt: string;
    balance: AvailableBalance;
  }
> {
  constructor(
    readonly input: {
      organizationId?: string;
      reservationId: string;
      charmId: string;
      userId: string;
      amount: number;
      ttlSeconds?: number;
    },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export class CaptureReservation extends Command<
  Reply & {
    organizationId: string;
    reservationId: string;
    runId: string;
    captured: number;
    released: number;
    expired: Allocation[];
    balance: AvailableBalance;
  }
> {
  constructor(
    readonly input: {
      organizationId: string;
      reservationId: string;
      amount: number;
      runId?: string;
    },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export class ReleaseReservation extends Command<
  Reply & {
    organizationId: string;
    reservationId: string;
    released: number;
    reason: 'released' | 'expired';
    expired: Allocation[];
    balance: AvailableBalance;
  }
> {
  constructor(
    readonly input: { organizationId: string; reservationId: string },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export class TransferCredits extends Command<
  Reply & {
    transferId: string;
    fromOrganizationId: string;
    toOrganizationId: string;
    amount: number;
    balance: { available: number };
  }
> {
  constructor(
    readonly input: {
      organizationId: string;
      transferId: string;
      toOrganizationId: string;
      amount: number;
    },
    readonly context: RequestContext,
  ) {
    super();
  }
}

/** Writes the receiving half of a transfer (idempotent): used at once and by the recovery. */
export class ReceiveTransfer extends Command<Reply> {
  constructor(
    readonly input: {
      toOrganizationId: string;
      fromOrganizationId: string;
      transferId: string;
      amount: number;
    },
    readonly context: RequestContext,
  ) {
    super();
  }
}

export class SetLowBalanceThreshold extends Command<
  Reply & { organizationId: string; threshold: number }
> {
  constructor(
    readonly input: { organizationId: string; threshold: number },
    readonly context: RequestContext,
  ) {
    super();
  }
}

/** Writes the expiries and automatic releases that time has already decided. */
export class ExpireDue extends Command<Reply & { events: number }> {
  constructor(
    readonly input: { organizationId: string },
    readonly context: RequestContext,
  ) {
    super();
  }
}

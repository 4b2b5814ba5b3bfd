import { CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { notFound } from '../../ledger/errors';
import { availableCredits, reservedCredits } from '../../ledger/organization/burn-down';
import type { Allocation, OrganizationEvent } from '../../ledger/organization/events';
import type { OrganizationState } from '../../ledger/organization/state';
import { DEFAULT_RESERVATION_TTL_SECONDS, toIso } from '../../ledger/time';
import { Access, type OrganizationAction } from '../../auth/access';
import type { Caller } from '../../auth/caller';
import { Clock } from '../clock';
import {
  CaptureReservation,
  ChargeCharmRun,
  ExpireDue,
  GrantCredits,
  RefundCharmRun,
  ReleaseReservation,
  ReserveCredits,
  SetLowBalanceThreshold,
} from '../commands';
import { OrganizationWriter, UserWriter } from '../writers';

/** Grants made without a priority burn after those with a lower one. */
export const DEFAULT_GRANT_PRIORITY = 100;

@CommandHandler(GrantCredits)
export class GrantCreditsHandler implements ICommandHandler<GrantCredits> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly clock: Clock,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: GrantCredits) {
    const { organizationId, grantId, amount, source } = input;
    await this.access.require(context.caller, 'grant', organizationId);
    const priority = input.priority ?? DEFAULT_GRANT_PRIORITY;
    const expiresAt = input.expiresAt == null ? null : toIso(Date.parse(input.expiresAt));
    return this.organizations.reply(
      organizationId,
      { type: 'GrantCredits', grantId, amount, source, priority, expiresAt },
      context,
      ({ state, replayed }) => ({
        organizationId,
        grantId,
        amount,
        source,
        priority,
        expiresAt,
        balance: balanceOf(state, this.clock.now()),
        replayed,
      }),
    );
  }
}

@CommandHandler(ChargeCharmRun)
export class ChargeCharmRunHandler implements ICommandHandler<ChargeCharmRun> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly users: UserWriter,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: ChargeCharmRun) {
    const { runId, charmId, userId, amount } = input;
    const organizationId = await payingOrganization(
      this.access,
      this.users,
      context.caller,
      'charge',
      userId,
      input.organizationId,
    );
    return this.organizations.reply(
      organizationId,
      { type: 'ChargeCharmRun', runId, charmId, userId, amount },
      context,
      ({ state, replayed }) => {
        const run = state.runs.get(runId)!;
        return {
          runId,
          organizationId,
          charged: run.amount,
          allocations: [...run.refundable],
          balance: { available: run.availableAfter },
          replayed,
        };
      },
    );
  }
}

@CommandHandler(RefundCharmRun)
export class RefundCharmRunHandler implements ICommandHandler<RefundCharmRun> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly clock: Clock,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: RefundCharmRun) {
    const { organizationId, runId, amount, refundId } = input;
    await this.access.require(context.caller, 'refund', organizationId);
    return this.organizations.reply(
      organizationId,
      { type: 'RefundCharmRun', runId, amount, refundId },
      context,
      ({ state, events, replayed }) => {
        const run = state.runs.get(runId)!;
        const refund = events.find((event) => event.type === 'CharmRunRefunded');
        return {
          organizationId,
          runId,
          refunded: refund ? refund.data.amount : run.refunds.get(refundId!)!,
          totalRefunded: run.refunded,
          allocations: refund ? refund.data.allocations : [],
          expired: expiredIn(events),
          balance: { available: availableCredits(state, this.clock.now()) },
          replayed,
        };
      },
    );
  }
}

@CommandHandler(ReserveCredits)
export class ReserveCreditsHandler implements ICommandHandler<ReserveCredits> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly users: UserWriter,
    private readonly clock: Clock,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: ReserveCredits) {
    const { reservationId, charmId, userId, amount } = input;
    const ttlSeconds = input.ttlSeconds ?? DEFAULT_RESERVATION_TTL_SECONDS;
    const organizationId = await payingOrganization(
      this.access,
      this.users,
      context.caller,
      'reserve',
      userId,
      input.organizationId,
    );
    return this.organizations.reply(
      organizationId,
      { type: 'ReserveCredits', reservationId, charmId, userId, amount, ttlSeconds },
      context,
      ({ state, replayed }) => {
        const reservation = state.reservations.get(reservationId)!;
        return {
          organizationId,
          reservationId,
          amount: reservation.amount,
          expiresAt: toIso(reservation.expiresAt),
          status: reservation.status,
          balance: balanceOf(state, this.clock.now()),
          replayed,
        };
      },
    );
  }
}

@CommandHandler(CaptureReservation)
export class CaptureReservationHandler implements ICommandHandler<CaptureReservation> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly clock: Clock,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: CaptureReservation) {
    const { organizationId, reservationId, amount, runId } = input;
    await this.access.require(context.caller, 'capture', organizationId);
    return this.organizations.reply(
      organizationId,
      { type: 'CaptureReservation', reservationId, amount, runId },
      context,
      ({ state, events, replayed }) => {
        const reservation = state.reservations.get(reservationId)!;
        return {
          organizationId,
          reservationId,
          runId: reservation.runId!,
          captured: reservation.captured,
          released: reservation.released,
          expired: expiredIn(events),
          balance: balanceOf(state, this.clock.now()),
          replayed,
        };
      },
    );
  }
}

@CommandHandler(ReleaseReservation)
export class ReleaseReservationHandler implements ICommandHandler<ReleaseReservation> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly clock: Clock,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: ReleaseReservation) {
    const { organizationId, reservationId } = input;
    await this.access.require(context.caller, 'release', organizationId);
    return this.organizations.reply(
      organizationId,
      { type: 'ReleaseReservation', reservationId },
      context,
      ({ state, events, replayed }) => {
        const reservation = state.reservations.get(reservationId)!;
        return {
          organizationId,
          reservationId,
          released: reservation.released,
          reason: reservation.releaseReason!,
          expired: expiredIn(events),
          balance: balanceOf(state, this.clock.now()),
          replayed,
        };
      },
    );
  }
}

@CommandHandler(SetLowBalanceThreshold)
export class SetLowBalanceThresholdHandler implements ICommandHandler<SetLowBalanceThreshold> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: SetLowBalanceThreshold) {
    const { organizationId, threshold } = input;
    await this.access.require(context.caller, 'setThreshold', organizationId);
    return this.organizations.reply(
      organizationId,
      { type: 'SetLowBalanceThreshold', threshold },
      context,
      ({ state, replayed }) => ({
        organizationId,
        threshold: state.lowBalanceThreshold,
        lowBalance: state.lowBalanceReached,
        replayed,
      }),
    );
  }
}

@CommandHandler(ExpireDue)
export class ExpireDueHandler implements ICommandHandler<ExpireDue> {
  constructor(private readonly organizations: OrganizationWriter) {}

  async execute({ input, context }: ExpireDue) {
    return this.organizations.reply(
      input.organizationId,
      { type: 'ExpireDue' },
      context,
      ({ events, replayed }) => ({ events: events.length, replayed }),
    );
  }
}

/**
 * Who pays for a run or hold: the organization named, or else the user's active one. Users
 * and integrations charge only their own runs, where their role allows it.
 */
async function payingOrganization(
  access: Access,
  users: UserWriter,
  caller: Caller,
  action: OrganizationAction,
  userId: string,
  named: string | undefined,
): Promise<string> {
  access.requireSelf(caller, userId, `${action} charm runs`);
  let organizationId = named;
  if (organizationId === undefined) {
    const user = await users.read(userId);
    if (!user.state.registered) {
      throw notFound(`user ${userId} is not registered, so has no active organization`);
    }
    organizationId = user.state.activeOrganizationId;
  }
  await access.require(caller, action, organizationId);
  return organizationId;
}

function balanceOf(state: OrganizationState, now: number) {
  return { available: availableCredits(state, now), reserved: reservedCredits(state) };
}

function expiredIn(events: OrganizationEvent[]): Allocation[] {
  return events.flatMap((event) => (event.type === 'CreditsExpired' ? [event.data] : []));
}

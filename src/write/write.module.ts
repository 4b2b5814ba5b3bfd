import { Module } from '@nestjs/common';
import { CqrsModule } from '@nestjs/cqrs';
import { GetBalanceAtHandler, GetHistoryHandler } from '../audit/history';
import { Access } from '../auth/access';
import { Clock, SystemClock } from './clock';
import { CrashPoints } from './crash-points';
import { FollowUps } from './follow-ups';
import {
  CaptureReservationHandler,
  ChargeCharmRunHandler,
  ExpireDueHandler,
  GrantCreditsHandler,
  RefundCharmRunHandler,
  ReleaseReservationHandler,
  ReserveCreditsHandler,
  SetLowBalanceThresholdHandler,
} from './handlers/credits.handlers';
import {
  AddMemberHandler,
  ChangeMemberRoleHandler,
  CreateOrganizationHandler,
  RemoveMemberHandler,
} from './handlers/organizations.handlers';
import { ReceiveTransferHandler, TransferCreditsHandler } from './handlers/transfers.handlers';
import { RegisterUserHandler, SwitchActiveOrganizationHandler } from './handlers/users.handlers';
import { GetBalanceHandler } from './queries';
import { OrganizationWriter, UserWriter } from './writers';

const commandHandlers = [
  RegisterUserHandler,
  SwitchActiveOrganizationHandler,
  CreateOrganizationHandler,
  AddMemberHandler,
  ChangeMemberRoleHandler,
  RemoveMemberHandler,
  GrantCreditsHandler,
  ChargeCharmRunHandler,
  RefundCharmRunHandler,
  ReserveCreditsHandler,
  CaptureReservationHandler,
  ReleaseReservationHandler,
  SetLowBalanceThresholdHandler,
  ExpireDueHandler,
  TransferCreditsHandler,
  ReceiveTransferHandler,
];

const queryHandlers = [GetBalanceHandler, GetBalanceAtHandler, GetHistoryHandler];

/** The write side: command handlers, the per-aggregate queues, follow-ups and the clock. */
@Module({
  imports: [CqrsModule.forRoot()],
  providers: [
    { provide: Clock, useClass: SystemClock },
    OrganizationWriter,
    UserWriter,
    Access,
    CrashPoints,
    FollowUps,
    ...commandHandlers,
    ...queryHandlers,
  ],
  exports: [CqrsModule, OrganizationWriter, UserWriter, FollowUps, Clock, Access, CrashPoints],
})
export class WriteModule {}

import { Body, Controller, Param, Post, Res } from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import { ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import type { RequestContext } from '../../write/commands';
import {
  CaptureReservation,
  ChargeCharmRun,
  GrantCredits,
  RefundCharmRun,
  ReleaseReservation,
  ReserveCredits,
  TransferCredits,
} from '../../write/commands';
import {
  CaptureReservationDto,
  ChargeCharmRunDto,
  GrantCreditsDto,
  RefundCharmRunDto,
  ReleaseReservationDto,
  ReserveCreditsDto,
  TransferCreditsDto,
} from './dto/credits.dto';
import { LedgerIdPipe } from './ledger-id.pipe';
import { written } from './replies';
import { LedgerContext } from './request-context';

@ApiTags('credits')
@Controller('v1')
export class CreditsController {
  constructor(private readonly commands: CommandBus) {}

  @Post('organizations/:organizationId/grants')
  async grant(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Body() body: GrantCreditsDto,
    @LedgerContext() context: RequestContext,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    const reply = await this.commands.execute(
      new GrantCredits({ organizationId, ...body }, context),
    );
    return written(response, reply);
  }

  /** Charges a charm run once per runId; without organizationId, the user's active one pays. */
  @Post('charm-runs')
  async charge(
    @Body() body: ChargeCharmRunDto,
    @LedgerContext() context: RequestContext,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    return written(response, await this.commands.execute(new ChargeCharmRun(body, context)));
  }

  @Post('organizations/:organizationId/charm-runs/:runId/refund')
  async refund(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Param('runId', LedgerIdPipe) runId: string,
    @Body() body: RefundCharmRunDto,
    @LedgerContext() context: RequestContext,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    const reply = await this.commands.execute(
      new RefundCharmRun({ organizationId, runId, ...body }, context),
    );
    return written(response, reply);
  }

  @Post('organizations/:organizationId/reservations')
  async reserve(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Body() body: ReserveCreditsDto,
    @LedgerContext() context: RequestContext,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    const reply = await this.commands.execute(
      new ReserveCredits({ organizationId, ...body }, context),
    );
    return written(response, reply);
  }

  @Post('organizations/:organizationId/reservations/:reservationId/capture')
  async capture(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Param('reservationId', LedgerIdPipe) reservationId: string,
    @Body() body: CaptureReservationDto,
    @LedgerContext() context: RequestContext,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    const reply = await this.commands.execute(
      new CaptureReservation({ organizationId, reservationId, ...body }, context),
    );
    return written(response, reply);
  }

  @Post('organizations/:organizationId/reservations/:reservationId/release')
  async release(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Param('reservationId', LedgerIdPipe) reservationId: string,
    @Body() _body: ReleaseReservationDto,
    @LedgerContext() context: RequestContext,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    const reply = await this.commands.execute(
      new ReleaseReservation({ organizationId, reservationId }, context),
    );
    return written(response, reply);
  }

  @Post('organizations/:organizationId/transfers')
  async transfer(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Body() body: TransferCreditsDto,
    @LedgerContext() context: RequestContext,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    const reply = await this.commands.execute(
      new TransferCredits({ organizationId, ...body }, context),
    );
    return written(response, reply);
  }
}

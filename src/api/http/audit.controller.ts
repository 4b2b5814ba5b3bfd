import { Controller, HttpCode, Param, Post } from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import { ApiTags } from '@nestjs/swagger';
import { VerifyOrganization } from '../../audit/verify';
import type { RequestContext } from '../../write/commands';
import { LedgerIdPipe } from './ledger-id.pipe';
import { LedgerContext } from './request-context';

@ApiTags('audit')
@Controller('v1/organizations/:organizationId/audit')
export class AuditController {
  constructor(private readonly commands: CommandBus) {}

  /** Replays the stream from revision 0 and compares every read model of the organization. */
  @Post('verify')
  @HttpCode(200)
  verify(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @LedgerContext() { caller }: RequestContext,
  ) {
    return this.commands.execute(new VerifyOrganization(caller, organizationId));
  }
}

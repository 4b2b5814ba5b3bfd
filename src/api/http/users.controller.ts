import { Body, Controller, Param, Post, Put, Res } from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import { ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import type { RequestContext } from '../../write/commands';
import { RegisterUser, SwitchActiveOrganization } from '../../write/commands';
import { RegisterUserDto, SwitchActiveOrganizationDto } from './dto/users.dto';
import { LedgerIdPipe } from './ledger-id.pipe';
import { positionText, written } from './replies';
import { LedgerContext } from './request-context';

@ApiTags('users')
@Controller('v1/users')
export class UsersController {
  constructor(private readonly commands: CommandBus) {}

  /** Sign-up: the user's personal organization is made and becomes active. */
  @Post()
  async register(
    @Body() body: RegisterUserDto,
    @LedgerContext() context: RequestContext,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    return written(response, await this.commands.execute(new RegisterUser(body, context)));
  }

  @Put(':userId/active-organization')
  async switchActiveOrganization(
    @Param('userId', LedgerIdPipe) userId: string,
    @Body() body: SwitchActiveOrganizationDto,
    @LedgerContext() context: RequestContext,
  ) {
    const reply = await this.commands.execute(
      new SwitchActiveOrganization({ userId, organizationId: body.organizationId }, context),
    );
    return { ...reply, position: positionText(reply.position) };
  }
}

import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  Patch,
  Post,
  Put,
  Query,
  Res,
} from '@nestjs/common';
import { CommandBus, QueryBus } from '@nestjs/cqrs';
import { ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import type { RequestContext } from '../../write/commands';
import {
  AddMember,
  ChangeMemberRole,
  CreateOrganization,
  RemoveMember,
  SetLowBalanceThreshold,
} from '../../write/commands';
import { GetOrganization, ListMembers } from '../../read/queries';
import {
  AddMemberDto,
  ChangeMemberRoleDto,
  CreateOrganizationDto,
  LowBalanceThresholdDto,
} from './dto/organizations.dto';
import { ReadsYourWrites } from '../../read/read-your-writes.interceptor';
import { ReadQueryDto } from './dto/queries.dto';
import { LedgerIdPipe } from './ledger-id.pipe';
import { positionText, written } from './replies';
import { LedgerContext } from './request-context';

@ApiTags('organizations')
@Controller('v1/organizations')
export class OrganizationsController {
  constructor(
    private readonly commands: CommandBus,
    private readonly queries: QueryBus,
  ) {}

  /** A company organization; the owner becomes its first member. */
  @Post()
  async create(
    @Body() body: CreateOrganizationDto,
    @LedgerContext() context: RequestContext,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    return written(response, await this.commands.execute(new CreateOrganization(body, context)));
  }

  @Get(':organizationId')
  @ReadsYourWrites()
  async get(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Query() _query: ReadQueryDto,
    @LedgerContext() { caller }: RequestContext,
  ) {
    const organization = await this.queries.execute(new GetOrganization(caller, organizationId));
    return { ...organization, position: positionText(organization.position) };
  }

  @Get(':organizationId/members')
  @ReadsYourWrites()
  async members(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Query() _query: ReadQueryDto,
    @LedgerContext() { caller }: RequestContext,
  ) {
    const members = await this.queries.execute(new ListMembers(caller, organizationId));
    return { ...members, position: positionText(members.position) };
  }

  @Post(':organizationId/members')
  async addMember(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Body() body: AddMemberDto,
    @LedgerContext() context: RequestContext,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    const reply = await this.commands.execute(new AddMember({ organizationId, ...body }, context));
    return written(response, reply);
  }

  @Patch(':organizationId/members/:userId')
  async changeRole(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Param('userId', LedgerIdPipe) userId: string,
    @Body() body: ChangeMemberRoleDto,
    @LedgerContext() context: RequestContext,
  ) {
    const reply = await this.commands.execute(
      new ChangeMemberRole({ organizationId, userId, role: body.role }, context),
    );
    return { ...reply, position: positionText(reply.position) };
  }

  /** Never the last owner. */
  @Delete(':organizationId/members/:userId')
  @HttpCode(204)
  async removeMember(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Param('userId', LedgerIdPipe) userId: string,
    @LedgerContext() context: RequestContext,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    const reply = await this.commands.execute(
      new RemoveMember({ organizationId, userId }, context),
    );
    response.header('Ledger-Position', positionText(reply.position));
  }

  @Put(':organizationId/low-balance-threshold')
  async setLowBalanceThreshold(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Body() body: LowBalanceThresholdDto,
    @LedgerContext() context: RequestContext,
  ) {
    const reply = await this.commands.execute(
      new SetLowBalanceThreshold({ organizationId, threshold: body.threshold }, context),
    );
    return { ...reply, position: positionText(reply.position) };
  }
}

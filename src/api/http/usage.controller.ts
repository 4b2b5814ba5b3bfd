import { Controller, Get, Headers, Param, Query, Res } from '@nestjs/common';
import { QueryBus } from '@nestjs/cqrs';
import { ApiProduces, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { GetUsage, GetUserOrganizations, nextDay, reportDays, toCsv } from '../../read/queries';
import type { RequestContext } from '../../write/commands';
import { ReadQueryDto, UsageQueryDto } from './dto/queries.dto';
import { ReadsYourWrites } from '../../read/read-your-writes.interceptor';
import { LedgerIdPipe } from './ledger-id.pipe';
import { LedgerContext } from './request-context';

@ApiTags('read models')
@ReadsYourWrites()
@Controller('v1')
export class UsageController {
  constructor(private readonly queries: QueryBus) {}

  /** The user's organizations with role and kind, and which one is active. */
  @Get('users/:userId/organizations')
  async userOrganizations(
    @Param('userId', LedgerIdPipe) userId: string,
    @Query() _query: ReadQueryDto,
    @LedgerContext() { caller }: RequestContext,
  ) {
    return this.queries.execute(new GetUserOrganizations(caller, userId));
  }

  /** Usage by day, charm or user; `Accept: text/csv` gives the same rows as CSV. */
  @Get('organizations/:organizationId/usage')
  @ApiProduces('application/json', 'text/csv')
  async usage(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Query() query: UsageQueryDto,
    @LedgerContext() { caller }: RequestContext,
    @Headers('accept') accept: string | undefined,
    @Res({ passthrough: true }) response: FastifyReply,
  ) {
    const { from, to } = reportDays(query.from, query.to);
    const report = await this.queries.execute(
      new GetUsage(caller, organizationId, from, nextDay(to), query.groupBy ?? 'day'),
    );
    const result = { ...report, to };
    if (accept?.includes('text/csv')) {
      response.header('content-type', 'text/csv; charset=utf-8');
      response.header(
        'content-disposition',
        `attachment; filename="usage-${organizationId}-${from}-${to}-by-${result.groupBy}.csv"`,
      );
      return toCsv(result.rows);
    }
    return result;
  }
}

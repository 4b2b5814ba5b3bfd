import { Controller, Get, Param, Query } from '@nestjs/common';
import { QueryBus } from '@nestjs/cqrs';
import { ApiTags } from '@nestjs/swagger';
import { GetBalanceAt, GetHistory } from '../../audit/history';
import { GetBalance } from '../../write/queries';
import { BalanceQueryDto, HistoryQueryDto } from './dto/queries.dto';
import { ReadsYourWrites } from '../../read/read-your-writes.interceptor';
import { LedgerIdPipe } from './ledger-id.pipe';
import { positionText } from './replies';
import { LedgerContext } from './request-context';
import type { RequestContext } from '../../write/commands';

@ApiTags('balance and history')
@ReadsYourWrites()
@Controller('v1/organizations/:organizationId')
export class BalanceController {
  constructor(private readonly queries: QueryBus) {}

  /** Now: from the write side, consistent with every acknowledged write. With `at`: as it was then. */
  @Get('balance')
  async balance(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Query() query: BalanceQueryDto,
    @LedgerContext() { caller }: RequestContext,
  ) {
    const balance = await this.queries.execute(
      query.at === undefined
        ? new GetBalance(caller, organizationId)
        : new GetBalanceAt(caller, organizationId, query.at),
    );
    return { ...balance, position: positionText(balance.position) };
  }

  /** The organization's events in order, straight from its stream. */
  @Get('history')
  async history(
    @Param('organizationId', LedgerIdPipe) organizationId: string,
    @Query() query: HistoryQueryDto,
    @LedgerContext() { caller }: RequestContext,
  ) {
    const history = await this.queries.execute(
      new GetHistory(caller, organizationId, query.fromRevision ?? 0, query.limit ?? 100, query.at),
    );
    return {
      ...history,
      events: history.events.map((event) => ({
        ...event,
        revision: Number(event.revision),
        position: positionText(event.position),
      })),
      ...(history.stateAt && {
        stateAt: { ...history.stateAt, position: positionText(history.stateAt.position) },
      }),
    };
  }
}

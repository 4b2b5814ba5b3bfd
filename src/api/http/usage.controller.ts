import { Controller, Get, Headers, Param, Query, Res } from '@nestjs/common';
import { QueryBus } from '@nestjs/cqrs';
import { ApiProduces, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ValidationFailed } from '../../ledger/errors';
import { GetUsage, GetUserOrganizations, type UsageRow } from '../../read/queries';
import type { RequestContext } from '../../write/commands';
import { ReadQueryDto, UsageQueryDto } from './dto/queries.dto';
import { LedgerIdPipe } from './ledger-id.pipe';
import { LedgerContext } from './request-context';

const DAY_MS = 24 * 60 * 60 * 1000;
/** A report spans at most about five years of days. */
const MAX_REPORT_DAYS = 5 * 366;

@ApiTags('read models')
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
    @Res({ passthrough: true }) response: Response,
  ) {
    const { from, to } = reportDays(query.from, query.to);
    const report = await this.queries.execute(
      new GetUsage(caller, organizationId, from, nextDay(to), query.groupBy ?? 'day'),
    );
    const result = { ...report, to };
    if (accept?.includes('text/csv')) {
      response.setHeader('content-type', 'text/csv; charset=utf-8');
      response.setHeader(
        'content-disposition',
        `attachment; filename="usage-${organizationId}-${from}-${to}-by-${result.groupBy}.csv"`,
      );
      return toCsv(result.rows);
    }
    return result;
  }
}

function reportDays(from: string | undefined, to: string | undefined) {
  const today = new Date().toISOString().slice(0, 10);
  const last = to ?? today;
  const first = from ?? `${last.slice(0, 8)}01`;
  const errors = [];
  if (Number.isNaN(Date.parse(first)))
    errors.push({ field: 'from', message: 'is not a real date' });
  if (Number.isNaN(Date.parse(last))) errors.push({ field: 'to', message: 'is not a real date' });
  if (errors.length > 0) throw new ValidationFailed(errors);
  const span = (Date.parse(last) - Date.parse(first)) / DAY_MS;
  if (span < 0) throw new ValidationFailed([{ field: 'to', message: 'must not be before from' }]);
  if (span > MAX_REPORT_DAYS) {
    throw new ValidationFailed([
      { field: 'to', message: `at most ${MAX_REPORT_DAYS} days after from` },
    ]);
  }
  return { from: first, to: last };
}

const nextDay = (day: string) => new Date(Date.parse(day) + DAY_MS).toISOString().slice(0, 10);

const csvField = (value: string | number) => {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
};

/** A header row, then one row per key. */
export function toCsv(rows: UsageRow[]): string {
  const lines = ['key,runs,credits,refunded'];
  for (const row of rows) {
    lines.push([row.key, row.runs, row.credits, row.refunded].map(csvField).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

import { Inject } from '@nestjs/common';
import { Query, QueryHandler, type IQueryHandler } from '@nestjs/cqrs';
import type { DataSource } from 'typeorm';
import { Access } from '../auth/access';
import type { Caller } from '../auth/caller';
import { notFound, ValidationFailed } from '../ledger/errors';
import { dialectOf } from './read-model-database';
import { READ_MODEL_DATABASE, ReadModels } from './read-models';

/** An organization's name, kind, owner and member count, from the read models. */
export class GetOrganization extends Query<{
  organizationId: string;
  name: string;
  kind: string;
  ownerUserId: string;
  memberCount: number;
  lowBalanceThreshold: number;
  position: bigint;
}> {
  constructor(
    readonly caller: Caller,
    readonly organizationId: string,
  ) {
    super();
  }
}

export class ListMembers extends Query<{
  organizationId: string;
  members: { userId: string; role: string }[];
  position: bigint;
}> {
  constructor(
    readonly caller: Caller,
    readonly organizationId: string,
  ) {
    super();
  }
}

@QueryHandler(GetOrganization)
export class GetOrganizationHandler implements IQueryHandler<GetOrganization> {
  constructor(
    @Inject(READ_MODEL_DATABASE) private readonly database: DataSource,
    private readonly readModels: ReadModels,
    private readonly access: Access,
  ) {}

  async execute({ caller, organizationId }: GetOrganization) {
    await this.access.require(caller, 'readOrganization', organizationId);
    const position = this.readModels.position;
    const p = placeholders(this.database);
    const [row] = await this.database.query(
      `SELECT o.*, (SELECT COUNT(*) FROM "memberships" m WHERE m."organization_id" = o."organization_id") AS "member_count"
         FROM "organizations" o WHERE o."organization_id" = ${p(1)}`,
      [organizationId],
    );
    if (!row) throw notFound(`organization ${organizationId} not found`);
    return {
      organizationId,
      name: row.name,
      kind: row.kind,
      ownerUserId: row.owner_user_id,
      memberCount: Number(row.member_count),
      lowBalanceThreshold: Number(row.low_balance_threshold),
      position,
    };
  }
}

@QueryHandler(ListMembers)
export class ListMembersHandler implements IQueryHandler<ListMembers> {
  constructor(
    @Inject(READ_MODEL_DATABASE) private readonly database: DataSource,
    private readonly readModels: ReadModels,
    private readonly access: Access,
  ) {}

  async execute({ caller, organizationId }: ListMembers) {
    await this.access.require(caller, 'readMembers', organizationId);
    const position = this.readModels.position;
    const p = placeholders(this.database);
    const [organization] = await this.database.query(
      `SELECT 1 FROM "organizations" WHERE "organization_id" = ${p(1)}`,
      [organizationId],
    );
    if (!organization) throw notFound(`organization ${organizationId} not found`);
    const rows: { user_id: string; role: string }[] = await this.database.query(
      `SELECT "user_id", "role" FROM "memberships" WHERE "organization_id" = ${p(1)} ORDER BY "user_id"`,
      [organizationId],
    );
    return {
      organizationId,
      members: rows.map((row) => ({ userId: row.user_id, role: row.role })),
      position,
    };
  }
}

export interface UserOrganization {
  organizationId: string;
  name: string;
  kind: string;
  role: string;
  active: boolean;
}

/** A user's organizations with role and kind, and which one is active. */
export class GetUserOrganizations extends Query<{
  userId: string;
  activeOrganizationId: string | null;
  organizations: UserOrganization[];
}> {
  constructor(
    readonly caller: Caller,
    readonly userId: string,
  ) {
    super();
  }
}

export type UsageGrouping = 'day' | 'charm' | 'user';

export interface UsageRow {
  key: string;
  runs: number;
  credits: number;
  refunded: number;
}

/** Usage of one organization from `from` (inclusive) to `to` (exclusive), by day, charm or user. */
export class GetUsage extends Query<{
  organizationId: string;
  from: string;
  to: string;
  groupBy: UsageGrouping;
  rows: UsageRow[];
  totals: Omit<UsageRow, 'key'>;
}> {
  constructor(
    readonly caller: Caller,
    readonly organizationId: string,
    readonly from: string,
    readonly to: string,
    readonly groupBy: UsageGrouping,
  ) {
    super();
  }
}

const placeholders = (dataSource: DataSource) =>
  dialectOf(dataSource) === 'postgres' ? (n: number) => `$${n}` : () => '?';

@QueryHandler(GetUserOrganizations)
export class GetUserOrganizationsHandler implements IQueryHandler<GetUserOrganizations> {
  constructor(
    @Inject(READ_MODEL_DATABASE) private readonly database: DataSource,
    private readonly access: Access,
  ) {}

  async execute({ caller, userId }: GetUserOrganizations) {
    this.access.requireUserOrService(caller, userId, "read a user's organizations");
    const p = placeholders(this.database);
    const [active] = await this.database.query(
      `SELECT "organization_id" FROM "active_organizations" WHERE "user_id" = ${p(1)}`,
      [userId],
    );
    const rows: { organization_id: string; name: string; kind: string; role: string }[] =
      await this.database.query(
        `SELECT m."organization_id", o."name", o."kind", m."role"
           FROM "memberships" m JOIN "organizations" o ON o."organization_id" = m."organization_id"
          WHERE m."user_id" = ${p(1)} ORDER BY m."organization_id"`,
        [userId],
      );
    if (!active && rows.length === 0) throw notFound(`user ${userId} not found`);
    const activeOrganizationId: string | null = active?.organization_id ?? null;
    return {
      userId,
      activeOrganizationId,
      organizations: rows.map((row) => ({
        organizationId: row.organization_id,
        name: row.name,
        kind: row.kind,
        role: row.role,
        active: row.organization_id === activeOrganizationId,
      })),
    };
  }
}

const GROUP_COLUMN: Record<UsageGrouping, string> = {
  day: 'day',
  charm: 'charm_id',
  user: 'user_id',
};

@QueryHandler(GetUsage)
export class GetUsageHandler implements IQueryHandler<GetUsage> {
  constructor(
    @Inject(READ_MODEL_DATABASE) private readonly database: DataSource,
    private readonly access: Access,
  ) {}

  async execute({ caller, organizationId, from, to, groupBy }: GetUsage) {
    await this.access.require(caller, 'readUsage', organizationId);
    return usageReport(this.database, organizationId, from, to, groupBy);
  }
}

/** Usage rows and totals from the daily aggregates; `to` is exclusive. */
export async function usageReport(
  database: DataSource,
  organizationId: string,
  from: string,
  to: string,
  groupBy: UsageGrouping,
) {
  const p = placeholders(database);
  const column = GROUP_COLUMN[groupBy];
  const rows: Record<string, string | number>[] = await database.query(
    `SELECT "${column}" AS "key", SUM("runs") AS "runs", SUM("credits") AS "credits", SUM("refunded") AS "refunded"
       FROM "usage_daily"
      WHERE "organization_id" = ${p(1)} AND "day" >= ${p(2)} AND "day" < ${p(3)}
      GROUP BY "${column}" ORDER BY "${column}"`,
    [organizationId, from, to],
  );
  const usage = rows.map((row) => ({
    key: String(row.key),
    runs: Number(row.runs),
    credits: Number(row.credits),
    refunded: Number(row.refunded),
  }));
  const totals = usage.reduce(
    (sum, row) => ({
      runs: sum.runs + row.runs,
      credits: sum.credits + row.credits,
      refunded: sum.refunded + row.refunded,
    }),
    { runs: 0, credits: 0, refunded: 0 },
  );
  return { organizationId, from, to, groupBy, rows: usage, totals };
}

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

const DAY_MS = 24 * 60 * 60 * 1000;
/** A report spans at most about five years of days. */
const MAX_REPORT_DAYS = 5 * 366;

/** The days a report covers: both inclusive; by default this month up to today (UTC). */
export function reportDays(from: string | undefined, to: string | undefined) {
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

export const nextDay = (day: string) =>
  new Date(Date.parse(day) + DAY_MS).toISOString().slice(0, 10);

import { Inject } from '@nestjs/common';
import { Query, QueryHandler, type IQueryHandler } from '@nestjs/cqrs';
import type { DataSource } from 'typeorm';
import { Access } from '../auth/access';
import type { Caller } from '../auth/caller';
import { notFound } from '../ledger/errors';
import { dialectOf } from './read-model-database';
import { READ_MODEL_DATABASE } from './read-models';

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
    const p = placeholders(this.database);
    const column = GROUP_COLUMN[groupBy];
    const rows: Record<string, string | number>[] = await this.database.query(
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
}

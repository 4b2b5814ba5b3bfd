import { Inject } from '@nestjs/common';
import { Command, CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import type { DataSource } from 'typeorm';
import { PROJECTIONS, type Row } from '../../projections';
import { InMemoryReadModel, keyOf } from '../../projections/in-memory-model';
import { Access } from '../auth/access';
import type { Caller } from '../auth/caller';
import { EVENT_STORE, type EventStore } from '../event-store/event-store';
import { notFound } from '../ledger/errors';
import { organizationStreamId } from '../ledger/identifiers';
import { dialectOf } from '../read/read-model-database';
import { READ_MODEL_DATABASE, ReadModels } from '../read/read-models';

export interface Difference {
  table: string;
  key: Row;
  /** `missing`: replay has the row, the read model not; `unexpected`: the other way round. */
  problem: 'missing' | 'unexpected' | 'different';
  column?: string;
  expected?: unknown;
  actual?: unknown;
}

export interface VerifyReport {
  organizationId: string;
  consistent: boolean;
  eventsReplayed: number;
  position: string;
  differences: Difference[];
}

/**
 * Replays the organization's stream from revision 0 through the projections into memory,
 * and compares every read-model row of the organization with it.
 */
export class VerifyOrganization extends Command<VerifyReport> {
  constructor(
    readonly caller: Caller,
    readonly organizationId: string,
  ) {
    super();
  }
}

const PAGE = 1000;

@CommandHandler(VerifyOrganization)
export class VerifyOrganizationHandler implements ICommandHandler<VerifyOrganization> {
  constructor(
    @Inject(EVENT_STORE) private readonly store: EventStore,
    @Inject(READ_MODEL_DATABASE) private readonly database: DataSource,
    private readonly readModels: ReadModels,
    private readonly access: Access,
  ) {}

  async execute({ caller, organizationId }: VerifyOrganization): Promise<VerifyReport> {
    await this.access.require(caller, 'verify', organizationId);
    return verifyOrganization(this.store, this.database, organizationId, (position) =>
      this.readModels.reach(position),
    );
  }
}

/**
 * The comparison itself, for the HTTP endpoint and the operator CLI. `reach` waits until
 * the read models have seen the stream's last event, so lag is not reported as a difference.
 */
export async function verifyOrganization(
  store: EventStore,
  database: DataSource,
  organizationId: string,
  reach: (position: bigint) => Promise<void>,
): Promise<VerifyReport> {
  const streamId = organizationStreamId(organizationId);
  const expected = new InMemoryReadModel();
  let replayed = 0;
  let position = 0n;
  for (let from = 0n; ; from += BigInt(PAGE)) {
    const page = await store.readStream(streamId, { fromRevision: from, maxCount: PAGE });
    for (const event of page) {
      for (const projection of PROJECTIONS) expected.apply(projection.handle(event));
      position = event.position;
    }
    replayed += page.length;
    if (page.length < PAGE) break;
  }
  if (replayed === 0) throw notFound(`organization ${organizationId} not found`);
  await reach(position);

  const placeholder = dialectOf(database) === 'postgres' ? '$1' : '?';
  const differences: Difference[] = [];
  for (const projection of PROJECTIONS) {
    for (const [table, keyColumns] of Object.entries(projection.tables)) {
      if (!keyColumns.includes('organization_id')) continue;
      const actual: Row[] = await database.query(
        `SELECT * FROM "${table}" WHERE "organization_id" = ${placeholder}`,
        [organizationId],
      );
      differences.push(...compare(table, keyColumns, expected.rows(table), actual));
    }
  }
  return {
    organizationId,
    consistent: differences.length === 0,
    eventsReplayed: replayed,
    position: position.toString(),
    differences,
  };
}

/** Numbers compare by value (PostgreSQL returns bigint as text); everything else as text. */
const same = (a: unknown, b: unknown) =>
  typeof a === 'number' || typeof b === 'number'
    ? Number(a) === Number(b)
    : String(a ?? '') === String(b ?? '');

function compare(
  table: string,
  keyColumns: readonly string[],
  expected: Row[],
  actual: Row[],
): Difference[] {
  const keyFrom = (row: Row) =>
    Object.fromEntries(keyColumns.map((column) => [column, row[column]]));
  const actualByKey = new Map(actual.map((row) => [keyOf(keyFrom(row)), row]));
  const differences: Difference[] = [];
  for (const row of expected) {
    const key = keyFrom(row);
    const found = actualByKey.get(keyOf(key));
    actualByKey.delete(keyOf(key));
    if (!found) {
      differences.push({ table, key, problem: 'missing' });
      continue;
    }
    for (const [column, value] of Object.entries(row)) {
      if (!same(value, found[column])) {
        differences.push({
          table,
          key,
          problem: 'different',
          column,
          expected: value,
          actual: found[column],
        });
      }
    }
  }
  for (const row of actualByKey.values())
    differences.push({ table, key: keyFrom(row), problem: 'unexpected' });
  return differences;
}

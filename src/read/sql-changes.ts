import type { Change, Row, Value } from '../../projections';
import type { Dialect } from './read-model-database';

/** Runs SQL in the current transaction. */
export type Execute = (sql: string, parameters: Value[]) => Promise<unknown>;

const quote = (name: string) => `"${name}"`;

/**
 * Turns a projection's changes into SQL both SQLite and PostgreSQL understand
 * (INSERT ... ON CONFLICT ... DO UPDATE). `table` maps a model's table to the physical one,
 * so a rebuild can write into fresh tables.
 */
export async function applyChanges(
  changes: readonly Change[],
  execute: Execute,
  dialect: Dialect,
  table: (name: string) => string = (name) => name,
): Promise<void> {
  for (const change of changes) {
    const { sql, parameters } = toSql(change, dialect, table(change.table));
    await execute(sql, parameters);
  }
}

function toSql(change: Change, dialect: Dialect, tableName: string) {
  const parameters: Value[] = [];
  const placeholder = (value: Value) => {
    parameters.push(value);
    return dialect === 'postgres' ? `$${parameters.length}` : '?';
  };
  const target = quote(tableName);
  const where = (key: Row) =>
    Object.entries(key)
      .map(([column, value]) => `${quote(column)} = ${placeholder(value)}`)
      .join(' AND ');
  const keyColumns = Object.keys(change.key).map(quote).join(', ');

  switch (change.kind) {
    case 'upsert': {
      const row = { ...change.key, ...change.set };
      const columns = Object.keys(row);
      const values = columns.map((column) => placeholder(row[column]));
      const updates = Object.keys(change.set)
        .map((column) => `${quote(column)} = excluded.${quote(column)}`)
        .join(', ');
      return {
        sql: `INSERT INTO ${target} (${columns.map(quote).join(', ')}) VALUES (${values.join(', ')}) ON CONFLICT (${keyColumns}) DO UPDATE SET ${updates}`,
        parameters,
      };
    }
    case 'increment': {
      const sets = Object.entries(change.add)
        .map(([column, value]) => `${quote(column)} = ${quote(column)} + ${placeholder(value)}`)
        .join(', ');
      return { sql: `UPDATE ${target} SET ${sets} WHERE ${where(change.key)}`, parameters };
    }
    case 'accumulate': {
      const row: Row = { ...change.key, ...change.add };
      const columns = Object.keys(row);
      const values = columns.map((column) => placeholder(row[column]));
      const updates = Object.keys(change.add)
        .map(
          (column) => `${quote(column)} = ${target}.${quote(column)} + excluded.${quote(column)}`,
        )
        .join(', ');
      return {
        sql: `INSERT INTO ${target} (${columns.map(quote).join(', ')}) VALUES (${values.join(', ')}) ON CONFLICT (${keyColumns}) DO UPDATE SET ${updates}`,
        parameters,
      };
    }
    case 'update': {
      const sets = Object.entries(change.set)
        .map(([column, value]) => `${quote(column)} = ${placeholder(value)}`)
        .join(', ');
      return { sql: `UPDATE ${target} SET ${sets} WHERE ${where(change.key)}`, parameters };
    }
    case 'delete':
      return { sql: `DELETE FROM ${target} WHERE ${where(change.key)}`, parameters };
    default: {
      const unknown: never = change;
      throw new Error(`unknown change ${JSON.stringify(unknown)}`);
    }
  }
}

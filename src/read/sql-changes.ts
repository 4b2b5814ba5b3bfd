import type { Change, Row, Value } from '../../projections';
import type { Dialect } from './read-model-database';

/** Runs SQL in the current transaction. */
export type Execute = (sql: string, parameters: Value[]) => Promise<unknown>;

const quote = (name: string) => `"${name}"`;

/**
 * Turns a projection's changes into SQL both SQLite and PostgreSQL understand
 * (INSERT ... ON CONFLICT ... DO UPDATE). `table` maps a model's table to the physical one,
 * so a rebuild can write into fresh tables. The changes are first folded per row
 * (`coalesce`), then inserts of the same shape go out as one multi-row statement.
 */
export async function applyChanges(
  changes: readonly Change[],
  execute: Execute,
  dialect: Dialect,
  table: (name: string) => string = (name) => name,
): Promise<void> {
  for (const wave of waves(coalesce(changes))) {
    for (const group of groupByShape(wave)) {
      let start = 0;
      for (const size of statementSizes(group.length)) {
        const rows = group.slice(start, (start += size));
        const first = rows[0];
        const { sql, parameters } =
          rows.length === 1
            ? toSql(first, dialect, table(first.table))
            : first.kind === 'increment'
              ? toMultiRowIncrement(rows as Increment[], dialect, table(first.table))
              : toMultiRowInsert(rows as Insert[], dialect, table(first.table));
        await execute(sql, parameters);
      }
    }
  }
}

/** Rows per multi-row statement at most: well under both databases' parameter limits. */
const ROWS_PER_STATEMENT = 128;

/**
 * `count` rows as statements of 128 rows and then powers of two (250 = 128 + 64 + 32 + 16 + 8
 * + 2). With a statement for every row count, the drivers' caches of prepared statements (100
 * on SQLite) held and kept preparing up to 200 sizes of each: the service's RSS rose by 45 MB
 * in the 100,000-organization bench when additions went multi-row. Now each shape has 8 sizes.
 */
export function statementSizes(count: number): number[] {
  const sizes: number[] = [];
  let left = count;
  for (; left >= ROWS_PER_STATEMENT; left -= ROWS_PER_STATEMENT) sizes.push(ROWS_PER_STATEMENT);
  for (let size = ROWS_PER_STATEMENT / 2; size >= 1; size /= 2) {
    if (left >= size) {
      sizes.push(size);
      left -= size;
    }
  }
  return sizes;
}

type Insert = Extract<Change, { kind: 'upsert' | 'accumulate' }>;
type Increment = Extract<Change, { kind: 'increment' }>;

/**
 * The row a change is to, as one string: the table, then each key value with its length, so
 * that no two keys can run together. Cheaper than JSON of the key, which was a third of the
 * time spent folding a hot organization's page.
 */
function rowId(change: Change): string {
  let id = change.table;
  for (const column in change.key) {
    const value = change.key[column];
    id += typeof value === 'string' ? `\u0000${value.length}:${value}` : `\u0000#${value}`;
  }
  return id;
}

const sameColumns = (a: object, b: object) => {
  let count = 0;
  for (const column in a) {
    if (!(column in b)) return false;
    count += 1;
  }
  for (const _ in b) count -= 1;
  return count === 0;
};

/**
 * One change with the same effect as `a` then `b` on one row, or undefined if there is none.
 * An addition goes into `a` itself only if `ours` (a change `merge` made): the projections'
 * own changes are never modified, as audit verify applies them as they came.
 */
function merge(a: Change, b: Change, ours: boolean): Change | undefined {
  if ((a.kind === 'accumulate' || a.kind === 'increment') && a.kind === b.kind) {
    if (!sameColumns(a.add, b.add)) return undefined;
    const sum = ours ? a : { ...a, add: { ...a.add } };
    for (const column in b.add) sum.add[column] += b.add[column];
    return sum;
  }
  // An overwrite after an insert-or-overwrite (or after an overwrite) folds into the first.
  if ((a.kind === 'upsert' || a.kind === 'update') && b.kind === 'update') {
    return { ...a, set: { ...a.set, ...b.set } };
  }
  if (a.kind === 'upsert' && b.kind === 'upsert') return { ...a, set: { ...a.set, ...b.set } };
  if (a.kind === 'delete' && b.kind === 'delete') return a;
  return undefined;
}

/**
 * Folds consecutive changes to the same row where their kinds allow (additions summed,
 * overwrites merged): a hot organization's page of charges becomes one write per row.
 * Rows are independent, so only the order of changes to one row matters; it is kept.
 * Returns each row's remaining changes, in order.
 */
export function coalesce(changes: readonly Change[]): Change[][] {
  const byRow = new Map<string, Change[]>();
  const made = new Set<Change>();
  for (const change of changes) {
    const id = rowId(change);
    const list = byRow.get(id);
    if (list === undefined) {
      byRow.set(id, [change]);
      continue;
    }
    const last = list[list.length - 1];
    const merged = merge(last, change, made.has(last));
    if (merged === undefined) list.push(change);
    else {
      list[list.length - 1] = merged;
      made.add(merged);
    }
  }
  return [...byRow.values()];
}

/** The first change of every row, then the second of every row, ...: each wave touches distinct rows. */
function waves(rows: Change[][]): Change[][] {
  const result: Change[][] = [];
  for (const list of rows) {
    list.forEach((change, index) => (result[index] ??= []).push(change));
  }
  return result;
}

/**
 * Inserts and increments of one table, kind and columns together (they can share a
 * statement); others alone. An increment shares one only when its key is text: the rows of a
 * multi-row UPDATE come in as VALUES, which PostgreSQL types as text.
 */
function groupByShape(wave: Change[]): Change[][] {
  const groups = new Map<string, Change[]>();
  const single: Change[][] = [];
  for (const change of wave) {
    const shared =
      change.kind === 'upsert' ||
      change.kind === 'accumulate' ||
      (change.kind === 'increment' &&
        Object.values(change.key).every((value) => typeof value === 'string'));
    if (!shared) {
      single.push([change]);
      continue;
    }
    const values = change.kind === 'upsert' ? change.set : change.add;
    const shape = `${change.table}\u0000${change.kind}\u0000${Object.keys(change.key).join(',')}\u0000${Object.keys(values).join(',')}`;
    const group = groups.get(shape);
    if (group) group.push(change);
    else groups.set(shape, [change]);
  }
  return [...groups.values(), ...single];
}

/**
 * The text of multi-row statements, by shape and row count: a rebuild sends thousands of the
 * same few, and building the text per statement was a sixth of its time.
 */
const statementTexts = new Map<string, string>();
const MAX_STATEMENT_TEXTS = 1024;

function statementText(shape: unknown[], build: () => string): string {
  const key = shape.join('\u0000');
  let sql = statementTexts.get(key);
  if (sql === undefined) {
    sql = build();
    if (statementTexts.size >= MAX_STATEMENT_TEXTS) statementTexts.clear();
    statementTexts.set(key, sql);
  }
  return sql;
}

/** INSERT ... VALUES (...), (...) ON CONFLICT ...: the rows are distinct (one wave). */
function toMultiRowInsert(rows: Insert[], dialect: Dialect, tableName: string) {
  const first = rows[0];
  const keyColumns = Object.keys(first.key);
  const valueColumns = Object.keys(first.kind === 'upsert' ? first.set : first.add);
  const parameters: Value[] = [];
  for (const change of rows) {
    const values = change.kind === 'upsert' ? change.set : change.add;
    for (const column of keyColumns) parameters.push(change.key[column]);
    for (const column of valueColumns) parameters.push(values[column]);
  }
  const sql = statementText(
    [dialect, tableName, first.kind, keyColumns, valueColumns, rows.length],
    () => multiRowInsertText(dialect, tableName, first.kind, keyColumns, valueColumns, rows.length),
  );
  return { sql, parameters };
}

/**
 * One UPDATE adding to many existing rows (distinct: one wave), their keys and additions as a
 * VALUES list: spread over a thousand organizations, a page of charges touched as many grant
 * rows, and a statement each was most of the read side's time.
 */
function toMultiRowIncrement(rows: Increment[], dialect: Dialect, tableName: string) {
  const first = rows[0];
  const keyColumns = Object.keys(first.key);
  const addColumns = Object.keys(first.add);
  const parameters: Value[] = [];
  for (const change of rows) {
    for (const column of keyColumns) parameters.push(change.key[column]);
    for (const column of addColumns) {
      // Cast to BIGINT below: a fraction would be cut silently on SQLite.
      if (!Number.isSafeInteger(change.add[column])) {
        throw new Error(`${tableName}.${column} can only add integers`);
      }
      parameters.push(change.add[column]);
    }
  }
  const sql = statementText(
    [dialect, tableName, 'increments', keyColumns, addColumns, rows.length],
    () => multiRowIncrementText(dialect, tableName, keyColumns, addColumns, rows.length),
  );
  return { sql, parameters };
}

/** `(?, ?), (?, ?)` or `($1, $2), ($3, $4)`, with `wrap` around each column's placeholder. */
function tuplesText(
  dialect: Dialect,
  count: number,
  width: number,
  wrap: (placeholder: string, column: number) => string = (placeholder) => placeholder,
): string {
  const tuples: string[] = [];
  for (let row = 0; row < count; row++) {
    const placeholders: string[] = [];
    for (let column = 0; column < width; column++) {
      placeholders.push(
        wrap(dialect === 'postgres' ? `$${row * width + column + 1}` : '?', column),
      );
    }
    tuples.push(`(${placeholders.join(', ')})`);
  }
  return tuples.join(', ');
}

function multiRowIncrementText(
  dialect: Dialect,
  tableName: string,
  keyColumns: string[],
  addColumns: string[],
  count: number,
): string {
  const target = quote(tableName);
  const values = tuplesText(dialect, count, keyColumns.length + addColumns.length, (p, column) =>
    column < keyColumns.length ? p : `CAST(${p} AS BIGINT)`,
  );
  const columns = [...keyColumns, ...addColumns].map(quote).join(', ');
  const sets = addColumns
    .map((column) => `${quote(column)} = ${target}.${quote(column)} + "added".${quote(column)}`)
    .join(', ');
  const where = keyColumns
    .map((column) => `${target}.${quote(column)} = "added".${quote(column)}`)
    .join(' AND ');
  return `WITH "added" (${columns}) AS (VALUES ${values}) UPDATE ${target} SET ${sets} FROM "added" WHERE ${where}`;
}

function multiRowInsertText(
  dialect: Dialect,
  tableName: string,
  kind: Insert['kind'],
  keyColumns: string[],
  valueColumns: string[],
  count: number,
): string {
  const target = quote(tableName);
  const tuples = tuplesText(dialect, count, keyColumns.length + valueColumns.length);
  const updates = valueColumns
    .map((column) =>
      kind === 'upsert'
        ? `${quote(column)} = excluded.${quote(column)}`
        : `${quote(column)} = ${target}.${quote(column)} + excluded.${quote(column)}`,
    )
    .join(', ');
  const columns = [...keyColumns, ...valueColumns].map(quote).join(', ');
  return `INSERT INTO ${target} (${columns}) VALUES ${tuples} ON CONFLICT (${keyColumns.map(quote).join(', ')}) DO UPDATE SET ${updates}`;
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

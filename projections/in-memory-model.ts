import type { Change, Row } from './change';

/**
 * The read models as plain maps, fed by the same changes as the database: what a replay of
 * the streams says the tables should hold (audit verify).
 */
export class InMemoryReadModel {
  readonly tables = new Map<string, Map<string, Row>>();

  apply(changes: readonly Change[]): void {
    for (const change of changes) {
      const table = this.tables.get(change.table) ?? new Map<string, Row>();
      this.tables.set(change.table, table);
      const id = keyOf(change.key);
      const row = table.get(id);
      switch (change.kind) {
        case 'upsert':
          table.set(id, { ...(row ?? change.key), ...change.key, ...change.set });
          break;
        case 'update':
          if (row) table.set(id, { ...row, ...change.set });
          break;
        case 'increment':
        case 'accumulate': {
          if (!row && change.kind === 'increment') break;
          const next: Row = { ...(row ?? change.key) };
          for (const [column, amount] of Object.entries(change.add)) {
            next[column] = Number(next[column] ?? 0) + amount;
          }
          table.set(id, next);
          break;
        }
        case 'delete':
          table.delete(id);
          break;
        default: {
          const unknown: never = change;
          throw new Error(`unknown change ${JSON.stringify(unknown)}`);
        }
      }
    }
  }

  rows(table: string): Row[] {
    return [...(this.tables.get(table)?.values() ?? [])];
  }
}

/** A row's identity from its key columns, in a stable order. */
export const keyOf = (key: Row): string =>
  JSON.stringify(
    Object.keys(key)
      .sort()
      .map((column) => [column, key[column]]),
  );

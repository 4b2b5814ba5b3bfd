import type { RecordedEvent } from '../src/event-store/event-store';

/**
 * What a projection asks of its read model for one event: plain data, so that the same
 * handler feeds the database (through the runner) and an in-memory model (audit verify).
 */
export type Value = string | number | null;
export type Row = Record<string, Value>;

export type Change =
  /** Insert the row, or overwrite the given columns of the row with that key. */
  | { kind: 'upsert'; table: string; key: Row; set: Row }
  /** Add to numeric columns of an existing row. */
  | { kind: 'increment'; table: string; key: Row; add: Record<string, number> }
  /** Add to numeric columns, starting the row from these amounts if it is missing. */
  | { kind: 'accumulate'; table: string; key: Row; add: Record<string, number> }
  /** Overwrite columns of an existing row; nothing if it is missing. */
  | { kind: 'update'; table: string; key: Row; set: Row }
  | { kind: 'delete'; table: string; key: Row };

export interface Projection {
  /** Stable name: the checkpoint's key. */
  readonly name: string;
  /** Tables it owns, with their key columns; rebuilt and verified as a whole. */
  readonly tables: Readonly<Record<string, readonly string[]>>;
  /** Pure: the read-model changes one event makes. */
  handle(event: RecordedEvent): Change[];
}

/** The organization a stream belongs to, or undefined for another stream. */
export const organizationOf = (event: RecordedEvent): string | undefined =>
  event.streamId.startsWith('organization-') ? event.streamId.slice(13) : undefined;

export const userOf = (event: RecordedEvent): string | undefined =>
  event.streamId.startsWith('user-') ? event.streamId.slice(5) : undefined;

/** Usage is kept by UTC day. */
export const dayOf = (iso: string) => iso.slice(0, 10);

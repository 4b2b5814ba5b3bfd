/**
 * What the write pipeline needs to know of an aggregate: where its stream is and how its
 * decider works. Organizations and users both run through the same pipeline.
 */
export interface DomainEvent {
  type: string;
  data: unknown;
  occurredAt: string;
}

export interface AggregateType<State, Command, Event extends DomainEvent> {
  readonly name: string;
  streamId(id: string): string;
  initialState(): State;
  decide(command: Command, state: State, now: number): Event[];
  evolve(state: State, event: Event): State;
  snapshots?: {
    schemaVersion: number;
    /**
     * The snapshot's text and its parts, built in slices: the writer pauses where it yields,
     * so a large state's snapshot does not hold other requests up for its whole length. A
     * part keeps its key for as long as its text stays the same (see SnapshotPart).
     */
    serialize(state: State): Generator<void, SnapshotOf, void>;
    /** `schemaVersion` is the snapshot's: the current one, or one of `alsoReads`. */
    deserialize(text: string, schemaVersion: number, parts: ReadonlyMap<string, string>): State;
    /**
     * Older versions `deserialize` still reads, so that an upgrade does not send every large
     * aggregate back to its whole history on its first load.
     */
    alsoReads?: readonly number[];
    /**
     * Roughly how many entries each snapshot of `state` writes (its parts already stored
     * aside). The writer snapshots no more often than every `size / 40` events, so that
     * snapshotting costs O(1) per event however large the state grows.
     */
    size?(state: State): number;
  };
}

/** A snapshot as an aggregate writes it: its own text, and the parts it refers to by key. */
export interface SnapshotOf {
  state: string;
  parts: { key: string; text: string }[];
}

import { LedgerError, type LedgerErrorCode } from '../../src/ledger/errors';

/**
 * Given/when/then for pure deciders: given past events, when a command is decided at `now`,
 * then these events (compared without their time) or this error.
 */
export interface Decider<State, Command, Event extends { occurredAt: string }> {
  initialState(): State;
  decide(command: Command, state: State, now: number): Event[];
  evolve(state: State, event: Event): State;
}

export const T0 = Date.parse('2026-03-01T12:00:00Z');
export const HOUR = 60 * 60 * 1000;
export const DAY = 24 * HOUR;
export const at = (millis: number) => new Date(millis).toISOString();

/** Events as tests write them: the time is optional and defaults to T0. */
export type Given<Event extends { occurredAt: string }> = Event extends unknown
  ? Omit<Event, 'occurredAt'> & { occurredAt?: string }
  : never;
type Untimed<Event> = Event extends unknown ? Omit<Event, 'occurredAt'> : never;

export function specification<State, Command, Event extends { occurredAt: string }>(
  decider: Decider<State, Command, Event>,
) {
  return {
    given(events: Given<Event>[]) {
      const state = events.reduce(
        (current, event) =>
          decider.evolve(current, { occurredAt: at(T0), ...event } as unknown as Event),
        decider.initialState(),
      );
      return {
        state,
        when(command: Command, now = T0) {
          const decide = () => decider.decide(command, state, now);
          return {
            then(expected: Untimed<Event>[]) {
              const events = decide();
              expect(events.map(({ occurredAt: _, ...rest }) => rest)).toEqual(expected);
              for (const event of events) expect(event.occurredAt).toBe(at(now));
            },
            thenNothing() {
              expect(decide()).toEqual([]);
            },
            thenThrows(code: LedgerErrorCode, message?: RegExp) {
              let error: unknown;
              try {
                decide();
              } catch (thrown) {
                error = thrown;
              }
              expect(error).toBeInstanceOf(LedgerError);
              expect((error as LedgerError).code).toBe(code);
              if (message) expect((error as LedgerError).message).toMatch(message);
            },
            events: decide,
          };
        },
      };
    },
  };
}

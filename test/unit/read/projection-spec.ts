import type { Projection, Row } from '../../../projections';
import { InMemoryReadModel } from '../../../projections/in-memory-model';
import type { RecordedEvent } from '../../../src/event-store/event-store';

/** Given recorded events, when one more arrives, then these rows (in memory, as in the DB). */
export function projectionSpec(projection: Projection) {
  let position = 0n;
  const recorded = (
    streamId: string,
    type: string,
    data: unknown,
    occurredAt = '2026-05-01T10:00:00.000Z',
  ): RecordedEvent => {
    position += 1n;
    return {
      eventId: `e${position}`,
      type,
      streamId,
      revision: position - 1n,
      position,
      data,
      metadata: {
        eventId: `e${position}`,
        occurredAt,
        actor: { kind: 'service', id: 'test' },
        correlationId: 'c',
        causationId: 'c',
      },
    };
  };
  return {
    recorded,
    given(events: RecordedEvent[]) {
      const model = new InMemoryReadModel();
      for (const event of events) model.apply(projection.handle(event));
      return {
        when(event: RecordedEvent) {
          const changes = projection.handle(event);
          model.apply(changes);
          return {
            changes,
            then(table: string, rows: Row[]) {
              expect(model.rows(table)).toEqual(rows);
            },
          };
        },
      };
    },
  };
}

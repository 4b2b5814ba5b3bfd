import { Table, TableIndex, type DataSource, type EntityManager } from 'typeorm';
import type { Projection } from '../../projections';
import type { EventStore } from '../event-store/event-store';
import { ProjectionRunner, saveCheckpoint } from './projection-runner';
import { dialectOf } from './read-model-database';

const SHADOW = '__rebuild';
const CHECKPOINTS = 'projection_checkpoints';

export interface RebuildProgress {
  projection: string;
  position: bigint;
  target: bigint;
  events: number;
}

/**
 * Rebuilds projections from position 0 into fresh tables while the service goes on
 * answering (and updating) the old ones. Once the new tables have caught up with the live
 * checkpoint, one transaction swaps them in under the live checkpoint, so the running
 * service continues from exactly where the new tables stand. Projections whose live
 * checkpoints agree (the service moves them together) are rebuilt in one pass over the
 * events.
 */
export async function rebuildProjections(
  store: EventStore,
  dataSource: DataSource,
  projections: readonly Projection[],
  onProgress?: (progress: RebuildProgress) => void,
): Promise<void> {
  const together = new Map<bigint, Projection[]>();
  for (const projection of projections) {
    const live = await liveCheckpoint(dataSource, projection);
    together.set(live, [...(together.get(live) ?? []), projection]);
  }
  for (const [target, group] of together) {
    await rebuildTogether(dataSource, store, group, target, onProgress);
  }
}

async function rebuildTogether(
  dataSource: DataSource,
  store: EventStore,
  projections: Projection[],
  target: bigint,
  onProgress?: (progress: RebuildProgress) => void,
): Promise<void> {
  const name = projections.map((projection) => projection.name).join(', ');
  for (const projection of projections) await createShadowTables(dataSource, projection);
  const runner = new ProjectionRunner(store, dataSource, projections, {
    suffix: SHADOW,
    pageSize: 2000,
  });
  let events = 0;
  await runner.handleUntil(target, (position, handled) => {
    events += handled;
    onProgress?.({ projection: name, position, target, events });
  });
  await dataSource.transaction(async (manager) => {
    const tables = projections.flatMap((projection) => Object.keys(projection.tables));
    if (dialectOf(dataSource) === 'postgres') {
      // Take every lock the swap needs first, in the order the live runner takes them, so
      // its batches wait instead of deadlocking.
      await manager.query(
        `LOCK TABLE ${tables.map((table) => `"${table}"`).join(', ')}, "${CHECKPOINTS}" IN ACCESS EXCLUSIVE MODE`,
      );
    }
    // The live checkpoint may have moved on meanwhile: take the shadow there too, then swap.
    const live = await liveCheckpoint(manager, projections[0], true);
    for (const projection of projections.slice(1)) {
      if ((await liveCheckpoint(manager, projection, true)) !== live) {
        throw new Error(
          `the live checkpoints of ${name} moved apart during the rebuild: run it again`,
        );
      }
    }
    await runner.handleUntil(live, undefined, manager);
    const queryRunner = manager.queryRunner!;
    for (const table of tables) {
      await queryRunner.dropTable(table);
      await queryRunner.renameTable(`${table}${SHADOW}`, table);
    }
    for (const projection of projections) {
      await saveCheckpoint(manager, projection.name, live);
      await manager.query(deleteCheckpoint(dataSource), [`${projection.name}${SHADOW}`]);
    }
  });
}

async function liveCheckpoint(
  source: DataSource | EntityManager,
  projection: Projection,
  lock = false,
): Promise<bigint> {
  const postgres =
    ('connection' in source ? source.connection : source).options.type === 'postgres';
  const rows: { position: string }[] = await source.query(
    `SELECT "position" FROM "${CHECKPOINTS}" WHERE "projection" = ${postgres ? '$1' : '?'}${lock && postgres ? ' FOR UPDATE' : ''}`,
    [projection.name],
  );
  return rows.length === 0 ? 0n : BigInt(rows[0].position);
}

const deleteCheckpoint = (dataSource: DataSource) =>
  `DELETE FROM "${CHECKPOINTS}" WHERE "projection" = ${dialectOf(dataSource) === 'postgres' ? '$1' : '?'}`;

/** Empty copies of the projection's tables (columns, keys, indexes), and no shadow checkpoint. */
async function createShadowTables(dataSource: DataSource, projection: Projection) {
  const queryRunner = dataSource.createQueryRunner();
  try {
    for (const name of Object.keys(projection.tables)) {
      const shadow = `${name}${SHADOW}`;
      await queryRunner.dropTable(shadow, true);
      const live = await queryRunner.getTable(name);
      if (!live) throw new Error(`table ${name} is missing: run the migrations first`);
      await queryRunner.createTable(
        new Table({
          name: shadow,
          columns: live.columns.map((column) => column.clone()),
          // Index names are unique per schema: give the copies new ones.
          indices: live.indices.map(
            (index) =>
              new TableIndex({
                name: `${index.name!.replace(/_r\d+$/, '')}_r${Date.now()}`,
                columnNames: index.columnNames,
                isUnique: index.isUnique,
              }),
          ),
        }),
      );
    }
    await queryRunner.query(deleteCheckpoint(dataSource), [`${projection.name}${SHADOW}`]);
  } finally {
    await queryRunner.release();
  }
}

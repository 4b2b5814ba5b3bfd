import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * EventStoreDB positions are two 64-bit numbers kept in one (up to 39 decimal digits); the
 * first read models allowed 20. SQLite does not enforce varchar lengths, so only PostgreSQL
 * needs the change.
 */
export class WidePositions1764400000000 implements MigrationInterface {
  name = 'WidePositions1764400000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    if (queryRunner.connection.options.type !== 'postgres') return;
    for (const table of ['projection_checkpoints', 'balance_grants']) {
      await queryRunner.query(`ALTER TABLE "${table}" ALTER COLUMN "position" TYPE varchar(40)`);
    }
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    if (queryRunner.connection.options.type !== 'postgres') return;
    for (const table of ['projection_checkpoints', 'balance_grants']) {
      await queryRunner.query(`ALTER TABLE "${table}" ALTER COLUMN "position" TYPE varchar(20)`);
    }
  }
}

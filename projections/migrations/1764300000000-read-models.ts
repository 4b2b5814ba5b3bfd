import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

const id = (name: string) => ({ name, type: 'varchar', length: '64' });
const text = (name: string, length: number, isNullable = false) => ({
  name,
  type: 'varchar',
  length: String(length),
  isNullable,
});
const credits = (name: string) => ({ name, type: 'bigint', default: 0 });

/** The first read models: balance, usage, membership, active organization, checkpoints. */
export class ReadModels1764300000000 implements MigrationInterface {
  name = 'ReadModels1764300000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const tables = [
      new Table({
        name: 'projection_checkpoints',
        columns: [{ ...text('projection', 64), isPrimary: true }, text('position', 20)],
      }),
      new Table({
        name: 'balance_grants',
        columns: [
          { ...id('organization_id'), isPrimary: true },
          { ...id('grant_id'), isPrimary: true },
          text('source', 16),
          { name: 'priority', type: 'integer' },
          text('expires_at', 32, true),
          credits('amount'),
          credits('remaining'),
          credits('held'),
          text('granted_at', 32),
          text('position', 20),
        ],
      }),
      new Table({
        name: 'usage_daily',
        columns: [
          { ...id('organization_id'), isPrimary: true },
          { ...text('day', 10), isPrimary: true },
          { ...id('charm_id'), isPrimary: true },
          { ...id('user_id'), isPrimary: true },
          credits('runs'),
          credits('credits'),
          credits('refunded'),
        ],
      }),
      new Table({
        name: 'usage_runs',
        columns: [
          { ...id('organization_id'), isPrimary: true },
          { ...id('run_id'), isPrimary: true },
          id('charm_id'),
          id('user_id'),
          text('charged_at', 32),
          text('day', 10),
          credits('credits'),
          credits('refunded'),
        ],
      }),
      new Table({
        name: 'organizations',
        columns: [
          { ...id('organization_id'), isPrimary: true },
          text('name', 200),
          text('kind', 16),
          id('owner_user_id'),
          text('created_at', 32),
          { name: 'low_balance_threshold', type: 'bigint', default: 0 },
        ],
      }),
      new Table({
        name: 'memberships',
        columns: [
          { ...id('organization_id'), isPrimary: true },
          { ...id('user_id'), isPrimary: true },
          text('role', 16),
        ],
      }),
      new Table({
        name: 'active_organizations',
        columns: [
          { ...id('user_id'), isPrimary: true },
          id('personal_organization_id'),
          id('organization_id'),
        ],
      }),
    ];
    for (const table of tables) await queryRunner.createTable(table, true);
    // A user's organizations are read by user.
    await queryRunner.createIndex(
      'memberships',
      new TableIndex({ name: 'memberships_by_user', columnNames: ['user_id'] }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of [
      'active_organizations',
      'memberships',
      'organizations',
      'usage_runs',
      'usage_daily',
      'balance_grants',
      'projection_checkpoints',
    ]) {
      await queryRunner.dropTable(table, true);
    }
  }
}

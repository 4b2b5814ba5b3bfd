import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * The read models' tables. Credits are bigint columns (PostgreSQL hands them back as
 * strings; readers convert). Positions are decimal strings, exact on every database.
 */

@Entity('projection_checkpoints')
export class ProjectionCheckpoint {
  @PrimaryColumn('varchar', { length: 64 })
  projection!: string;

  @Column('varchar', { length: 40 })
  position!: string;
}

@Entity('balance_grants')
export class BalanceGrant {
  @PrimaryColumn('varchar', { name: 'organization_id', length: 64 })
  organizationId!: string;

  @PrimaryColumn('varchar', { name: 'grant_id', length: 64 })
  grantId!: string;

  @Column('varchar', { length: 16 })
  source!: string;

  @Column('integer')
  priority!: number;

  @Column('varchar', { name: 'expires_at', length: 32, nullable: true })
  expiresAt!: string | null;

  @Column('bigint')
  amount!: string | number;

  @Column('bigint')
  remaining!: string | number;

  @Column('bigint')
  held!: string | number;

  @Column('varchar', { name: 'granted_at', length: 32 })
  grantedAt!: string;

  @Column('varchar', { length: 40 })
  position!: string;
}

@Entity('usage_daily')
export class UsageDaily {
  @PrimaryColumn('varchar', { name: 'organization_id', length: 64 })
  organizationId!: string;

  @PrimaryColumn('varchar', { length: 10 })
  day!: string;

  @PrimaryColumn('varchar', { name: 'charm_id', length: 64 })
  charmId!: string;

  @PrimaryColumn('varchar', { name: 'user_id', length: 64 })
  userId!: string;

  @Column('bigint')
  runs!: string | number;

  @Column('bigint')
  credits!: string | number;

  @Column('bigint')
  refunded!: string | number;
}

@Entity('usage_runs')
export class UsageRun {
  @PrimaryColumn('varchar', { name: 'organization_id', length: 64 })
  organizationId!: string;

  @PrimaryColumn('varchar', { name: 'run_id', length: 64 })
  runId!: string;

  @Column('varchar', { name: 'charm_id', length: 64 })
  charmId!: string;

  @Column('varchar', { name: 'user_id', length: 64 })
  userId!: string;

  @Column('varchar', { name: 'charged_at', length: 32 })
  chargedAt!: string;

  @Column('varchar', { length: 10 })
  day!: string;

  @Column('bigint')
  credits!: string | number;

  @Column('bigint')
  refunded!: string | number;
}

@Entity('organizations')
export class OrganizationRow {
  @PrimaryColumn('varchar', { name: 'organization_id', length: 64 })
  organizationId!: string;

  @Column('varchar', { length: 200 })
  name!: string;

  @Column('varchar', { length: 16 })
  kind!: string;

  @Column('varchar', { name: 'owner_user_id', length: 64 })
  ownerUserId!: string;

  @Column('varchar', { name: 'created_at', length: 32 })
  createdAt!: string;

  @Column('bigint', { name: 'low_balance_threshold', default: 0 })
  lowBalanceThreshold!: string | number;
}

@Entity('memberships')
export class Membership {
  @PrimaryColumn('varchar', { name: 'organization_id', length: 64 })
  organizationId!: string;

  @PrimaryColumn('varchar', { name: 'user_id', length: 64 })
  userId!: string;

  @Column('varchar', { length: 16 })
  role!: string;
}

@Entity('active_organizations')
export class ActiveOrganization {
  @PrimaryColumn('varchar', { name: 'user_id', length: 64 })
  userId!: string;

  @Column('varchar', { name: 'personal_organization_id', length: 64 })
  personalOrganizationId!: string;

  @Column('varchar', { name: 'organization_id', length: 64 })
  organizationId!: string;
}

export const READ_MODEL_ENTITIES = [
  ProjectionCheckpoint,
  BalanceGrant,
  UsageDaily,
  UsageRun,
  OrganizationRow,
  Membership,
  ActiveOrganization,
];

import { Inject, Injectable, Logger, type BeforeApplicationShutdown } from '@nestjs/common';
import { LEDGER_CONFIG, type LedgerConfig } from '../config/config';
import {
  EVENT_STORE,
  SNAPSHOT_STORE,
  type EventStore,
  type SnapshotStore,
} from '../event-store/event-store';
import { organizationStreamId, userStreamId } from '../ledger/identifiers';
import type { OrganizationCommand } from '../ledger/organization/commands';
import { decide } from '../ledger/organization/decide';
import type { OrganizationEvent } from '../ledger/organization/events';
import { evolve } from '../ledger/organization/evolve';
import {
  deserializeOrganization,
  ORGANIZATION_SNAPSHOT_VERSION,
  ORGANIZATION_SNAPSHOT_VERSIONS_READ,
  serializeOrganizationInSlices,
} from '../ledger/organization/snapshot';
import { initialOrganizationState, type OrganizationState } from '../ledger/organization/state';
import type { UserCommand } from '../ledger/user/commands';
import { decideUser } from '../ledger/user/decide';
import type { UserEvent } from '../ledger/user/events';
import { evolveUser } from '../ledger/user/evolve';
import { initialUserState, type UserState } from '../ledger/user/state';
import type { AggregateType } from './aggregate';
import { LedgerMetrics } from '../metrics/metrics';
import { AggregateWriter, type WriterObserver } from './aggregate-writer';
import { Clock } from './clock';
import { CrashPoints } from './crash-points';

export const organizationAggregate: AggregateType<
  OrganizationState,
  OrganizationCommand,
  OrganizationEvent
> = {
  name: 'organization',
  streamId: organizationStreamId,
  initialState: initialOrganizationState,
  decide,
  evolve,
  snapshots: {
    schemaVersion: ORGANIZATION_SNAPSHOT_VERSION,
    serialize: serializeOrganizationInSlices,
    deserialize: deserializeOrganization,
    alsoReads: ORGANIZATION_SNAPSHOT_VERSIONS_READ,
    // What each snapshot writes again: settled runs are parts, written once.
    size: (state) => state.runs.recent.size + state.grants.size + state.members.size,
  },
};

export const userAggregate: AggregateType<UserState, UserCommand, UserEvent> = {
  name: 'user',
  streamId: userStreamId,
  initialState: initialUserState,
  decide: decideUser,
  evolve: evolveUser,
};

/** The write side of organizations: one queue per organization, group commit. */
@Injectable()
export class OrganizationWriter
  extends AggregateWriter<OrganizationState, OrganizationCommand, OrganizationEvent>
  implements BeforeApplicationShutdown
{
  constructor(
    @Inject(EVENT_STORE) store: EventStore,
    @Inject(SNAPSHOT_STORE) snapshots: SnapshotStore,
    clock: Clock,
    @Inject(LEDGER_CONFIG) config: LedgerConfig,
    metrics: LedgerMetrics,
    crashPoints: CrashPoints,
  ) {
    const logger = new Logger(OrganizationWriter.name);
    super(organizationAggregate, store, snapshots, clock, {
      cacheSize: config.cacheSize,
      snapshotEvery: config.snapshotEvery,
      onBackgroundError: (error) => logger.warn(`snapshot not saved: ${String(error)}`),
      observer: observe(metrics, 'organization'),
      afterGroupAppend: () => crashPoints.reach('group-commit:after-append'),
    });
  }

  /** A snapshot half written when asked to stop is finished before the store closes. */
  async beforeApplicationShutdown() {
    await this.snapshotsWritten();
  }
}

@Injectable()
export class UserWriter extends AggregateWriter<UserState, UserCommand, UserEvent> {
  constructor(
    @Inject(EVENT_STORE) store: EventStore,
    clock: Clock,
    @Inject(LEDGER_CONFIG) config: LedgerConfig,
    metrics: LedgerMetrics,
  ) {
    super(userAggregate, store, undefined, clock, {
      cacheSize: config.cacheSize,
      snapshotEvery: config.snapshotEvery,
      observer: observe(metrics, 'user'),
    });
  }
}

function observe(metrics: LedgerMetrics, aggregate: string): WriterObserver {
  return {
    decided: (outcome, count) => metrics.commands.inc({ aggregate, outcome }, count),
    appended: (commands, seconds) => {
      metrics.batchSize.observe({ aggregate }, commands);
      metrics.appendSeconds.observe({ aggregate }, seconds);
    },
    conflicted: () => metrics.conflicts.inc({ aggregate }),
    loaded: (from, seconds) => metrics.loadSeconds.observe({ aggregate, from }, seconds),
  };
}

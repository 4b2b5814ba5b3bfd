import { Inject } from '@nestjs/common';
import { Query, QueryHandler, type IQueryHandler } from '@nestjs/cqrs';
import { Access } from '../auth/access';
import type { Caller } from '../auth/caller';
import { EVENT_STORE, type EventStore, type RecordedEvent } from '../event-store/event-store';
import { notFound } from '../ledger/errors';
import { organizationStreamId } from '../ledger/identifiers';
import { balanceAt, type Balance } from '../ledger/organization/balance';
import type { OrganizationEvent } from '../ledger/organization/events';
import { evolve } from '../ledger/organization/evolve';
import { initialOrganizationState, type OrganizationState } from '../ledger/organization/state';
import { toMillis } from '../ledger/time';
import { fromRecorded } from '../write/aggregate-writer';

/** An organization's events in order, read straight from its stream. */
export class GetHistory extends Query<{
  organizationId: string;
  events: RecordedEvent[];
  /** The revision to ask for next, or null at the end. */
  nextRevision: number | null;
  stateAt?: StateAt;
}> {
  constructor(
    readonly caller: Caller,
    readonly organizationId: string,
    readonly fromRevision: number,
    readonly limit: number,
    readonly at?: string,
  ) {
    super();
  }
}

/** The balance as it was at `at`: the stream folded up to then. */
export class GetBalanceAt extends Query<Balance & { organizationId: string; position: bigint }> {
  constructor(
    readonly caller: Caller,
    readonly organizationId: string,
    readonly at: string,
  ) {
    super();
  }
}

export interface StateAt extends Balance {
  at: string;
  revision: number | null;
  position: bigint;
  name: string;
  members: { userId: string; role: string }[];
  lowBalanceThreshold: number;
}

const PAGE = 1000;

/** Folds the organization's stream up to `at` (inclusive). */
async function foldUntil(store: EventStore, organizationId: string, at: number) {
  const streamId = organizationStreamId(organizationId);
  let state: OrganizationState = initialOrganizationState();
  let revision: bigint | null = null;
  let position = 0n;
  for (let from = 0n; ; from += BigInt(PAGE)) {
    const page = await store.readStream(streamId, { fromRevision: from, maxCount: PAGE });
    for (const recorded of page) {
      if (toMillis(recorded.metadata.occurredAt) > at) return { state, revision, position };
      state = evolve(state, fromRecorded<OrganizationEvent>(recorded));
      revision = recorded.revision;
      position = recorded.position;
    }
    if (page.length < PAGE) return { state, revision, position };
  }
}

@QueryHandler(GetBalanceAt)
export class GetBalanceAtHandler implements IQueryHandler<GetBalanceAt> {
  constructor(
    @Inject(EVENT_STORE) private readonly store: EventStore,
    private readonly access: Access,
  ) {}

  async execute({ caller, organizationId, at }: GetBalanceAt) {
    await this.access.require(caller, 'readBalance', organizationId);
    const folded = await foldUntil(this.store, organizationId, toMillis(at));
    if (folded.revision === null) {
      throw notFound(`organization ${organizationId} did not exist at ${at}`);
    }
    return { organizationId, ...balanceAt(folded.state, toMillis(at)), position: folded.position };
  }
}

@QueryHandler(GetHistory)
export class GetHistoryHandler implements IQueryHandler<GetHistory> {
  constructor(
    @Inject(EVENT_STORE) private readonly store: EventStore,
    private readonly access: Access,
  ) {}

  async execute({ caller, organizationId, fromRevision, limit, at }: GetHistory) {
    await this.access.require(caller, 'readHistory', organizationId);
    const streamId = organizationStreamId(organizationId);
    const [first] = await this.store.readStream(streamId, { maxCount: 1 });
    if (!first) throw notFound(`organization ${organizationId} not found`);
    const page = await this.store.readStream(streamId, {
      fromRevision: BigInt(fromRevision),
      maxCount: limit + 1,
    });
    const until = at === undefined ? undefined : toMillis(at);
    const inTime = page.filter(
      (event) => until === undefined || toMillis(event.metadata.occurredAt) <= until,
    );
    const events = inTime.slice(0, limit);
    const more = inTime.length > limit;
    const nextRevision = more ? Number(events[events.length - 1].revision) + 1 : null;
    if (until === undefined) return { organizationId, events, nextRevision };
    const folded = await foldUntil(this.store, organizationId, until);
    const stateAt: StateAt = {
      at: new Date(until).toISOString(),
      revision: folded.revision === null ? null : Number(folded.revision),
      position: folded.position,
      name: folded.state.name,
      members: [...folded.state.members].map(([userId, role]) => ({ userId, role })),
      lowBalanceThreshold: folded.state.lowBalanceThreshold,
      ...balanceAt(folded.state, until),
    };
    return { organizationId, events, nextRevision, stateAt };
  }
}

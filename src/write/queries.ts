import { Query, QueryHandler, type IQueryHandler } from '@nestjs/cqrs';
import { Access } from '../auth/access';
import type { Caller } from '../auth/caller';
import { notFound } from '../ledger/errors';
import { balanceAt, type Balance } from '../ledger/organization/balance';
import type { OrganizationKind, Role } from '../ledger/organization/events';
import { Clock } from './clock';
import { OrganizationWriter } from './writers';

/** The balance now, from the write side: strongly consistent with every acknowledged write. */
export class GetBalance extends Query<Balance & { organizationId: string; position: bigint }> {
  constructor(
    readonly caller: Caller,
    readonly organizationId: string,
  ) {
    super();
  }
}

export class GetOrganization extends Query<{
  organizationId: string;
  name: string;
  kind: OrganizationKind;
  ownerUserId: string;
  memberCount: number;
  lowBalanceThreshold: number;
  position: bigint;
}> {
  constructor(
    readonly caller: Caller,
    readonly organizationId: string,
  ) {
    super();
  }
}

export class ListMembers extends Query<{
  organizationId: string;
  members: { userId: string; role: Role }[];
  position: bigint;
}> {
  constructor(
    readonly caller: Caller,
    readonly organizationId: string,
  ) {
    super();
  }
}

async function existing(organizations: OrganizationWriter, organizationId: string) {
  const loaded = await organizations.read(organizationId);
  if (!loaded.state.exists) throw notFound(`organization ${organizationId} not found`);
  return loaded;
}

@QueryHandler(GetBalance)
export class GetBalanceHandler implements IQueryHandler<GetBalance> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly clock: Clock,
    private readonly access: Access,
  ) {}

  async execute({ caller, organizationId }: GetBalance) {
    await this.access.require(caller, 'readBalance', organizationId);
    const { state, position } = await existing(this.organizations, organizationId);
    return { organizationId, ...balanceAt(state, this.clock.now()), position };
  }
}

@QueryHandler(GetOrganization)
export class GetOrganizationHandler implements IQueryHandler<GetOrganization> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly access: Access,
  ) {}

  async execute({ caller, organizationId }: GetOrganization) {
    await this.access.require(caller, 'readOrganization', organizationId);
    const { state, position } = await existing(this.organizations, organizationId);
    return {
      organizationId,
      name: state.name,
      kind: state.kind,
      ownerUserId: state.ownerUserId,
      memberCount: state.members.size,
      lowBalanceThreshold: state.lowBalanceThreshold,
      position,
    };
  }
}

@QueryHandler(ListMembers)
export class ListMembersHandler implements IQueryHandler<ListMembers> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly access: Access,
  ) {}

  async execute({ caller, organizationId }: ListMembers) {
    await this.access.require(caller, 'readMembers', organizationId);
    const { state, position } = await existing(this.organizations, organizationId);
    const members = [...state.members]
      .map(([userId, role]) => ({ userId, role }))
      .sort((a, b) => a.userId.localeCompare(b.userId));
    return { organizationId, members, position };
  }
}

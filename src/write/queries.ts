import { Query, QueryHandler, type IQueryHandler } from '@nestjs/cqrs';
import { Access } from '../auth/access';
import type { Caller } from '../auth/caller';
import { notFound } from '../ledger/errors';
import { balanceAt, type Balance } from '../ledger/organization/balance';
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

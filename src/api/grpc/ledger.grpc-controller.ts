import type { Metadata } from '@grpc/grpc-js';
import { Controller, UseFilters } from '@nestjs/common';
import { QueryBus } from '@nestjs/cqrs';
import { GrpcMethod } from '@nestjs/microservices';
import { TokenVerifier } from '../../auth/token-verifier';
import { ValidationFailed } from '../../ledger/errors';
import { isAmount, isIdentifier, MAX_AMOUNT } from '../../ledger/identifiers';
import { GetBalance } from '../../write/queries';
import { GrpcErrorFilter } from './grpc-errors';

interface GetBalanceRequest {
  organizationId: string;
}
interface CheckCreditsRequest {
  organizationId: string;
  amount: number;
}

/** charmiq.ledger.v1.LedgerService: balances for other services, with the same access rules. */
@Controller()
@UseFilters(GrpcErrorFilter)
export class LedgerGrpcController {
  constructor(
    private readonly queries: QueryBus,
    private readonly verifier: TokenVerifier,
  ) {}

  @GrpcMethod('LedgerService', 'GetBalance')
  async getBalance(request: GetBalanceRequest, metadata: Metadata) {
    const balance = await this.balance(request.organizationId, metadata);
    return {
      organizationId: balance.organizationId,
      available: balance.available,
      reserved: balance.reserved,
      position: balance.position.toString(),
    };
  }

  @GrpcMethod('LedgerService', 'CheckCredits')
  async checkCredits(request: CheckCreditsRequest, metadata: Metadata) {
    if (!isAmount(request.amount)) {
      throw new ValidationFailed([
        { field: 'amount', message: `must be a whole number from 1 to ${MAX_AMOUNT}` },
      ]);
    }
    const { available } = await this.balance(request.organizationId, metadata);
    return { sufficient: available >= request.amount, available };
  }

  private async balance(organizationId: string, metadata: Metadata) {
    const [authorization] = metadata.get('authorization');
    const caller = await this.verifier.verifyAuthorization(
      typeof authorization === 'string' ? authorization : undefined,
    );
    if (!isIdentifier(organizationId)) {
      throw new ValidationFailed([
        { field: 'organization_id', message: 'must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' },
      ]);
    }
    return this.queries.execute(new GetBalance(caller, organizationId));
  }
}

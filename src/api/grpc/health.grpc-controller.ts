import { Controller } from '@nestjs/common';
import { GrpcMethod, RpcException } from '@nestjs/microservices';
import { status } from '@grpc/grpc-js';
import { concat, NEVER, of, type Observable } from 'rxjs';
import { HealthChecks } from '../http/health.controller';

type ServingStatus = 'SERVING' | 'NOT_SERVING';

/** grpc.health.v1.Health: the same checks as /health, for "" and the ledger's service. */
@Controller()
export class HealthGrpcController {
  private static readonly SERVICES = new Set(['', 'charmiq.ledger.v1.LedgerService']);

  constructor(private readonly checks: HealthChecks) {}

  @GrpcMethod('Health', 'Check')
  async check(request: { service: string }): Promise<{ status: ServingStatus }> {
    if (!HealthGrpcController.SERVICES.has(request.service)) {
      throw new RpcException({
        code: status.NOT_FOUND,
        message: `unknown service ${request.service}`,
      });
    }
    return { status: await this.status() };
  }

  /** Sends the status now and keeps the stream open, as the protocol asks. */
  @GrpcMethod('Health', 'Watch')
  watch(request: { service: string }): Observable<{ status: ServingStatus | 'SERVICE_UNKNOWN' }> {
    if (!HealthGrpcController.SERVICES.has(request.service)) {
      return concat(of({ status: 'SERVICE_UNKNOWN' as const }), NEVER);
    }
    return concat(
      this.status().then((current) => ({ status: current })),
      NEVER,
    );
  }

  private async status(): Promise<ServingStatus> {
    return (await this.checks.run()).healthy ? 'SERVING' : 'NOT_SERVING';
  }
}

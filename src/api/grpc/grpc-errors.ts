import { status } from '@grpc/grpc-js';
import { Catch, Logger, type RpcExceptionFilter } from '@nestjs/common';
import { RpcException } from '@nestjs/microservices';
import { throwError, type Observable } from 'rxjs';
import { LedgerError, type LedgerErrorCode } from '../../ledger/errors';
import { isDependencyUnavailable } from '../dependency-errors';

const STATUS_OF: Record<LedgerErrorCode, status> = {
  VALIDATION_FAILED: status.INVALID_ARGUMENT,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  FORBIDDEN: status.PERMISSION_DENIED,
  NOT_FOUND: status.NOT_FOUND,
  CONFLICT: status.ALREADY_EXISTS,
  INSUFFICIENT_CREDITS: status.FAILED_PRECONDITION,
  UNAVAILABLE: status.UNAVAILABLE,
};

/** Domain errors as gRPC status codes; anything else is a bug, answered INTERNAL. */
@Catch()
export class GrpcErrorFilter implements RpcExceptionFilter<unknown> {
  private readonly logger = new Logger(GrpcErrorFilter.name);

  catch(exception: unknown): Observable<never> {
    if (exception instanceof RpcException) return throwError(() => exception.getError());
    if (exception instanceof LedgerError) {
      return throwError(() => ({ code: STATUS_OF[exception.code], message: exception.message }));
    }
    if (isDependencyUnavailable(exception)) {
      return throwError(() => ({
        code: status.UNAVAILABLE,
        message: 'a dependency is unreachable',
      }));
    }
    this.logger.error(
      exception instanceof Error ? (exception.stack ?? exception.message) : String(exception),
    );
    return throwError(() => ({ code: status.INTERNAL, message: 'internal error' }));
  }
}

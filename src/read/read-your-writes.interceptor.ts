import {
  Injectable,
  UseInterceptors,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { from, switchMap, type Observable } from 'rxjs';
import { ReadModels } from './read-models';

/**
 * `?minPosition=` on any read: wait (up to 5 s) until the read models have reached it, so a
 * caller reads its own writes. The query DTOs validate the value; here only digits count.
 */
@Injectable()
export class ReadYourWritesInterceptor implements NestInterceptor {
  constructor(private readonly readModels: ReadModels) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const request = context
      .switchToHttp()
      .getRequest<FastifyRequest<{ Querystring: { minPosition?: unknown } }>>();
    const value = request.method === 'GET' ? request.query.minPosition : undefined;
    if (typeof value !== 'string' || !/^\d{1,20}$/.test(value)) return next.handle();
    return from(this.readModels.reach(BigInt(value))).pipe(switchMap(() => next.handle()));
  }
}

/**
 * On the reads (every GET of the API) rather than on every route: an interceptor puts Nest's
 * rxjs pipeline around its handler, which was a tenth of the request thread's time on
 * `POST /v1/charm-runs` (`npm run bench -- --only http --profile`).
 */
export const ReadsYourWrites = () => UseInterceptors(ReadYourWritesInterceptor);

import {
  createParamDecorator,
  Injectable,
  SetMetadata,
  type CanActivate,
  type ExecutionContext,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { actorOf, type Caller } from '../../auth/caller';
import { TokenVerifier } from '../../auth/token-verifier';
import type { RequestContext } from '../../write/commands';

/** A caller-chosen correlation id is kept if it is short and printable; otherwise we make one. */
const CORRELATION_ID = /^[\x21-\x7e]{1,128}$/;

type AuthenticatedRequest = FastifyRequest & { caller?: Caller };

const PUBLIC = 'ledger:public';
/** Routes anyone may call without a token (/health, /metrics). */
export const Public = () => SetMetadata(PUBLIC, true);

/** Every HTTP route needs a valid bearer token, unless marked @Public(). */
@Injectable()
export class AuthenticationGuard implements CanActivate {
  constructor(
    private readonly verifier: TokenVerifier,
    private readonly reflector: Reflector,
  ) {}

  async canActivate(execution: ExecutionContext): Promise<boolean> {
    if (execution.getType() !== 'http') return true;
    const isPublic = this.reflector.getAllAndOverride<boolean>(PUBLIC, [
      execution.getHandler(),
      execution.getClass(),
    ]);
    if (isPublic) return true;
    const request = execution.switchToHttp().getRequest<AuthenticatedRequest>();
    request.caller = await this.verifier.verifyAuthorization(request.headers.authorization);
    return true;
  }
}

/** Who is calling and which request this is: checked by the handlers, stamped on events. */
export const LedgerContext = createParamDecorator(
  (_: unknown, execution: ExecutionContext): RequestContext => {
    const request = execution.switchToHttp().getRequest<AuthenticatedRequest>();
    const caller = request.caller;
    if (!caller) throw new Error('LedgerContext used on a route without authentication');
    const header = request.headers['x-correlation-id'];
    const correlationId =
      typeof header === 'string' && CORRELATION_ID.test(header) ? header : randomUUID();
    return { caller, actor: actorOf(caller), correlationId };
  },
);

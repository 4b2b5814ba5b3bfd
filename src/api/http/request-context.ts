import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { Request } from 'express';
import type { CommandContext } from '../../write/aggregate-writer';

/** A caller-chosen correlation id is kept if it is short and printable; otherwise we make one. */
const CORRELATION_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * Who is calling and which request this is, for the events' metadata. Until tokens are
 * checked (the access issue), every HTTP caller acts as the `http` service.
 */
export const LedgerContext = createParamDecorator(
  (_: unknown, execution: ExecutionContext): CommandContext => {
    const request = execution.switchToHttp().getRequest<Request>();
    const header = request.headers['x-correlation-id'];
    const correlationId =
      typeof header === 'string' && CORRELATION_ID.test(header) ? header : randomUUID();
    return { actor: { kind: 'service', id: 'http' }, correlationId };
  },
);

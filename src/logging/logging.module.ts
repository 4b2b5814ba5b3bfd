import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RequestMethod, type DynamicModule } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import type { DestinationStream } from 'pino';
import type { Options } from 'pino-http';
import type { LedgerConfig } from '../config/config';

export const REQUEST_ID_HEADER = 'x-request-id';

/** A caller's request id is kept only if it is short and harmless in a log line. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Structured JSON logs (pino) for the whole process; every line logged while serving a
 * request carries its id, which is echoed in the `x-request-id` response header. Credentials
 * never reach the log.
 */
export function loggerModule(
  config: Pick<LedgerConfig, 'logLevel'>,
  destination?: DestinationStream,
): DynamicModule {
  const options = requestLogOptions(config);
  return LoggerModule.forRoot({
    pinoHttp: destination ? [options, destination] : options,
    // Every path: nestjs-pino's default pattern (`{/*splat}`) matches no request under Fastify.
    forRoutes: [{ path: '{*path}', method: RequestMethod.ALL }],
  });
}

/** The caller's `x-request-id` if it is safe to log, else a new one. */
export function requestIdOf(request: IncomingMessage): string {
  const incoming = request.headers[REQUEST_ID_HEADER];
  return typeof incoming === 'string' && SAFE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

/** How requests are logged (pino-http). */
export function requestLogOptions(config: Pick<LedgerConfig, 'logLevel'>): Options {
  return {
    level: config.logLevel,
    // Under the service, Fastify names each request first (ledgerHttpAdapter, by the same
    // rule) and pino-http keeps that id; this serves pino-http used on its own.
    genReqId: (request: IncomingMessage, response: ServerResponse) => {
      const id = requestIdOf(request);
      response.setHeader(REQUEST_ID_HEADER, id);
      return id;
    },
    // What identifies a request, and nothing else: no header, so no credential, ever reaches
    // the log. pino serializes a request's logger when the request arrives, whatever the
    // level; with every header (and redacting some) that was a tenth of the HTTP path.
    wrapSerializers: false,
    serializers: {
      req: (request: IncomingMessage & { id?: unknown; originalUrl?: string }) => ({
        id: request.id,
        method: request.method,
        url: request.originalUrl ?? request.url,
      }),
      res: (response: ServerResponse) => ({ statusCode: response.statusCode }),
    },
    // 4xx answers are the caller's mistake, 5xx ours.
    customLogLevel: (_request, response, error) =>
      error || response.statusCode >= 500 ? 'error' : response.statusCode >= 400 ? 'warn' : 'info',
  };
}

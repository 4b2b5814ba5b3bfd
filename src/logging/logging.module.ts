import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { DynamicModule } from '@nestjs/common';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LoggerModule, PinoLogger } from 'nestjs-pino';
import type { DestinationStream, Logger } from 'pino';
import type { Options } from 'pino-http';
import type { LedgerConfig } from '../config/config';

export const REQUEST_ID_HEADER = 'x-request-id';

/** A caller's request id is kept only if it is short and harmless in a log line. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Structured JSON logs (pino) for the whole process, through nestjs-pino's Logger. Requests
 * are logged by a Fastify hook (logRequests), not by nestjs-pino's middleware: that one ran
 * every request through Express-style middleware and an AsyncLocalStorage, whose promise
 * hooks then taxed every promise of the request thread. HTTP bench, 3 rounds alternated:
 * request thread 0.154/0.157/0.159 -> 0.138/0.140/0.116 ms a charge. Lines logged while
 * serving a request name it themselves (`req`, as the filter does).
 */
export function loggerModule(
  config: Pick<LedgerConfig, 'logLevel'>,
  destination?: DestinationStream,
): DynamicModule {
  const options = logOptions(config);
  return LoggerModule.forRoot({
    // pino-http is only nestjs-pino's way of building the root logger here (no request uses it).
    pinoHttp: destination ? [options, destination] : options,
    forRoutes: [],
  });
}

/** The caller's `x-request-id` if it is safe to log, else a new one (Fastify's genReqId). */
export function requestIdOf(request: IncomingMessage): string {
  const incoming = request.headers[REQUEST_ID_HEADER];
  return typeof incoming === 'string' && SAFE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

/** What identifies a request in a log line, and nothing else: no header, so no credential. */
export function requestFields(request: {
  id?: unknown;
  method?: string;
  url?: string;
  originalUrl?: string;
}) {
  return { id: request.id, method: request.method, url: request.originalUrl ?? request.url };
}

/** The pino options of the process. */
export function logOptions(config: Pick<LedgerConfig, 'logLevel'>): Options {
  return {
    level: config.logLevel,
    // pino-http would otherwise copy every request (headers included) before serializing it.
    wrapSerializers: false,
    serializers: {
      req: requestFields,
      res: (response: { statusCode: number }) => ({ statusCode: response.statusCode }),
    },
  };
}

/**
 * One line per answered request, once the answer is sent, under the id echoed in
 * `x-request-id`. It covers 404s too; the router's refusals, which no hook sees, call
 * logAnswer themselves.
 */
export function logRequests(fastify: FastifyInstance): void {
  fastify.addHook('onResponse', (request, reply, done) => {
    logAnswer(request, reply);
    done();
  });
}

/** The request's line: 4xx answers are the caller's mistake (warn), 5xx ours (error). */
export function logAnswer(request: FastifyRequest, reply: FastifyReply): void {
  // Unset when the application has no LoggerModule (tests that collect Nest's log lines).
  const logger = PinoLogger.root as Logger | undefined;
  const status = reply.statusCode;
  const level = status >= 500 ? 'error' : status >= 400 ? 'warn' : 'info';
  if (logger?.isLevelEnabled(level)) {
    logger[level](
      { req: request, res: reply, responseTime: reply.elapsedTime },
      'request completed',
    );
  }
}

import {
  ArgumentsHost,
  Catch,
  ExceptionFilter,
  HttpException,
  HttpStatus,
  Logger,
  LoggerService,
} from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { throwError } from 'rxjs';
import { FieldError, LedgerError, LedgerErrorCode, ValidationFailed } from '../../ledger/errors';
import { logAnswer, REQUEST_ID_HEADER, requestFields } from '../../logging/logging.module';
import { isDependencyUnavailable } from '../dependency-errors';

/** The API's error codes, plus INTERNAL for what is always a bug of ours. */
export type ProblemCode = LedgerErrorCode | 'INTERNAL';

/** An RFC 9457 problem as the API sends it (API.md), with extension members. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
  errors?: FieldError[];
  [extension: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Seconds a client should wait before retrying an UNAVAILABLE answer. */
export const RETRY_AFTER_SECONDS = 1;

interface ProblemKind {
  status: number;
  title: string;
  slug: string;
}

export const PROBLEM_KINDS: Record<ProblemCode, ProblemKind> = {
  VALIDATION_FAILED: { status: 400, title: 'Validation failed', slug: 'validation-failed' },
  UNAUTHENTICATED: { status: 401, title: 'Unauthenticated', slug: 'unauthenticated' },
  INSUFFICIENT_CREDITS: {
    status: 402,
    title: 'Insufficient credits',
    slug: 'insufficient-credits',
  },
  FORBIDDEN: { status: 403, title: 'Forbidden', slug: 'forbidden' },
  NOT_FOUND: { status: 404, title: 'Not found', slug: 'not-found' },
  CONFLICT: { status: 409, title: 'Conflict', slug: 'conflict' },
  UNAVAILABLE: { status: 503, title: 'Service unavailable', slug: 'unavailable' },
  INTERNAL: { status: 500, title: 'Internal error', slug: 'internal' },
};

/** What the filter reads of Fastify's request; `id` is the one the request log shows. */
type Request = Pick<FastifyRequest, 'method' | 'url' | 'id'>;

/** The stable `type` URI of a code, e.g. https://charmiq.dev/problems/insufficient-credits. */
export const problemType = (code: ProblemCode): string =>
  `https://charmiq.dev/problems/${PROBLEM_KINDS[code].slug}`;

const RESERVED_MEMBERS = new Set(['type', 'title', 'status', 'detail', 'code', 'errors']);

export function problem(
  code: ProblemCode,
  detail: string,
  extensions: Record<string, unknown> = {},
): ProblemDetails {
  const { status, title } = PROBLEM_KINDS[code];
  const members = Object.fromEntries(
    Object.entries(extensions).filter(([name]) => !RESERVED_MEMBERS.has(name)),
  );
  // VALIDATION_FAILED always names at least one field (API.md: `errors`, one per field).
  const errors = Array.isArray(extensions.errors)
    ? (extensions.errors as FieldError[])
    : [{ field: 'request', message: detail }];
  return {
    type: problemType(code),
    title,
    status,
    detail,
    code,
    ...(code === 'VALIDATION_FAILED' ? { errors } : {}),
    ...members,
  };
}

export const validationProblem = (errors: FieldError[]): ProblemDetails =>
  problem('VALIDATION_FAILED', errors.map((e) => `${e.field}: ${e.message}`).join('; '), {
    errors,
  });

/**
 * The one mapping from whatever a request threw to problem+json. Domain errors keep their
 * code; Nest's and Fastify's HTTP errors are put into the API's codes; anything else is a
 * bug: logged with its stack, answered 500 INTERNAL with nothing of it in the body.
 */
@Catch()
export class ProblemDetailsFilter implements ExceptionFilter {
  constructor(private readonly logger: LoggerService = new Logger(ProblemDetailsFilter.name)) {}

  catch(exception: unknown, host: ArgumentsHost) {
    if (host.getType() !== 'http') {
      // Other transports (NATS, gRPC) have their own error shapes and mappings.
      return throwError(() => exception);
    }
    const http = host.switchToHttp();
    const request = http.getRequest<Request>();
    const response = http.getResponse<FastifyReply>();

    const body = this.toProblem(exception, request);
    if (response.sent || response.raw.headersSent) {
      // Too late for a problem (e.g. a CSV stream failed halfway): cut the response short so
      // the client sees it incomplete rather than finished.
      if (body.code !== 'INTERNAL') {
        this.logger.warn(
          { req: requestFields(request) },
          `${body.code} after the response started: ${body.detail}`,
        );
      }
      response.raw.destroy();
      return;
    }
    sendProblem(response, body);
  }

  toProblem(exception: unknown, request: Request): ProblemDetails {
    if (exception instanceof ValidationFailed) return validationProblem(exception.errors);
    if (exception instanceof LedgerError) {
      return problem(exception.code, exception.message, jsonSafe(exception.details));
    }
    if (exception instanceof HttpException) {
      const mapped = fromHttpException(exception, request);
      if (mapped) return mapped;
    }
    if (isDependencyUnavailable(exception)) {
      this.logger.warn(
        { req: requestFields(request) },
        `${request.method} ${request.url}: a dependency is unreachable: ${String(exception)}`,
      );
      return problem('UNAVAILABLE', 'A database this request needs cannot be reached; retry.');
    }
    this.logUnexpected(exception, request);
    // The request id (named by Fastify, in the error's and the request's log lines) ties the
    // answer to the log.
    return problem('INTERNAL', 'An unexpected error occurred; it has been logged.', {
      requestId: request.id,
    });
  }

  private logUnexpected(exception: unknown, request: Request): void {
    const error = exception instanceof Error ? exception : new Error(String(exception));
    // The request named in the line: no request context is carried across awaits for the log.
    this.logger.error(
      { req: requestFields(request), err: error },
      `Unhandled ${error.name} on ${request.method} ${request.url}: ${error.message}`,
    );
  }
}

function bodyProblem(message: string): ProblemDetails {
  return validationProblem([{ field: 'body', message }]);
}

/** Answers with a problem, and the headers its code calls for. */
export function sendProblem(reply: FastifyReply, body: ProblemDetails): void {
  if (body.code === 'UNAVAILABLE') reply.header('Retry-After', String(RETRY_AFTER_SECONDS));
  if (body.code === 'UNAUTHENTICATED') reply.header('WWW-Authenticate', 'Bearer');
  void reply.status(body.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(body));
}

/** What Fastify's router and body reading reject, by the code of the error (Nest's `cause`). */
const FASTIFY_REJECTIONS: Record<string, () => ProblemDetails> = {
  FST_ERR_CTP_BODY_TOO_LARGE: () => bodyProblem('is too large'),
  FST_ERR_CTP_INVALID_MEDIA_TYPE: () =>
    bodyProblem('must be JSON (Content-Type: application/json)'),
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: () => bodyProblem('was not received completely'),
  FST_ERR_CTP_EMPTY_JSON_BODY: () => bodyProblem('must be valid JSON (an object)'),
  FST_ERR_BAD_URL: () => validationProblem([{ field: 'path', message: 'is not a valid URI' }]),
  FST_ERR_MAX_PARAM_LENGTH: () => validationProblem([{ field: 'path', message: 'is too long' }]),
};

const fastifyRejection = (code: unknown): ProblemDetails | undefined =>
  typeof code === 'string' && Object.hasOwn(FASTIFY_REJECTIONS, code)
    ? FASTIFY_REJECTIONS[code]()
    : undefined;

/**
 * What Fastify's router refuses before any route, hook or Nest filter runs (a malformed
 * percent-encoding, an over-long path segment): answered as the filter would.
 */
export function answerRouterRejection(
  error: { code?: string; message: string },
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  void reply.header(REQUEST_ID_HEADER, request.id);
  sendProblem(
    reply,
    fastifyRejection(error.code) ??
      validationProblem([{ field: 'request', message: error.message }]),
  );
  logAnswer(request, reply);
}

/** Nest and Fastify HTTP errors in the API's codes; undefined for server faults (bugs). */
function fromHttpException(exception: HttpException, request: Request): ProblemDetails | undefined {
  const status = exception.getStatus();
  const rejection = fastifyRejection((exception.cause as { code?: unknown } | undefined)?.code);
  if (rejection) return rejection;
  switch (status) {
    case HttpStatus.NOT_FOUND:
    case HttpStatus.GONE:
    case HttpStatus.METHOD_NOT_ALLOWED:
      return problem('NOT_FOUND', `There is no ${request.method} ${request.url.split('?')[0]}`);
    case HttpStatus.UNAUTHORIZED:
      return problem('UNAUTHENTICATED', exception.message);
    case HttpStatus.FORBIDDEN:
      return problem('FORBIDDEN', exception.message);
    case HttpStatus.CONFLICT:
    case HttpStatus.PRECONDITION_FAILED:
      return problem('CONFLICT', exception.message);
    case HttpStatus.PAYMENT_REQUIRED:
      return problem('INSUFFICIENT_CREDITS', exception.message);
    case HttpStatus.PAYLOAD_TOO_LARGE:
      return bodyProblem('is too large');
    case HttpStatus.UNSUPPORTED_MEDIA_TYPE:
      return bodyProblem('must be JSON (Content-Type: application/json)');
    case HttpStatus.NOT_ACCEPTABLE:
      return validationProblem([{ field: 'accept', message: 'asks for a type we cannot send' }]);
    case HttpStatus.REQUEST_TIMEOUT:
    case HttpStatus.TOO_MANY_REQUESTS:
    case HttpStatus.BAD_GATEWAY:
    case HttpStatus.SERVICE_UNAVAILABLE:
    case HttpStatus.GATEWAY_TIMEOUT:
      return problem('UNAVAILABLE', exception.message);
    default:
      if (status >= 400 && status < 500) {
        return validationProblem([{ field: 'request', message: exception.message }]);
      }
      return undefined;
  }
}

/**
 * Details as JSON can carry them: bigint (positions, revisions) as decimal strings; what
 * cannot be serialized is left out rather than turning the answer into a 500.
 */
function jsonSafe(details: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!details) return {};
  try {
    return JSON.parse(
      JSON.stringify(details, (_key, value: unknown) =>
        typeof value === 'bigint' ? value.toString() : value,
      ),
    ) as Record<string, unknown>;
  } catch {
    return {};
  }
}

import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { FastifyBodyParser, FastifyReply, FastifyRequest } from 'fastify';
import { ValidationFailed } from '../../ledger/errors';
import { logRequests, REQUEST_ID_HEADER, requestIdOf } from '../../logging/logging.module';
import { serveConsole } from './console';
import { answerRouterRejection, ProblemDetailsFilter } from './problem-details.filter';
import { LedgerValidationPipe } from './validation.pipe';

/**
 * Well above the largest valid request, so that an oversized field is reported by
 * validation with its name rather than as an anonymous 413; a larger body is still a 400.
 */
export const JSON_BODY_LIMIT_BYTES = 2 * 1024 * 1024;

/** How much of a body too large to take the service reads and discards, to answer it. */
const UNREAD_BODY_LIMIT_BYTES = 16 * 1024 * 1024;

export const DOCS_PATH = 'docs';

/** application/*+json (merge-patch, problem...), read as JSON like application/json. */
const JSON_SUFFIX_MEDIA_TYPE = /^application\/[^/;\s]+\+json$/;

/**
 * The HTTP server under Nest: Fastify, whose routing and body handling cost a fraction of
 * Express's per request (measured in the bench's HTTP row). main.ts and the tests use it alike.
 */
export function ledgerHttpAdapter(): FastifyAdapter {
  return new FastifyAdapter({
    bodyLimit: JSON_BODY_LIMIT_BYTES,
    // An id of any length reaches validation, which names the field (Fastify alone would
    // answer 414 beyond 100 characters).
    routerOptions: { maxParamLength: 4096 },
    frameworkErrors: answerRouterRejection,
    // The id the request log and an INTERNAL problem show, echoed in `x-request-id`.
    genReqId: requestIdOf,
  });
}

/**
 * Everything HTTP-specific around the controllers, shared by main.ts and the e2e tests so that
 * both see the same edge. Call it after creating the application and before init()/listen().
 * Routes keep their own `/v1` prefix; /health, /docs and /console have none.
 */
export function configureHttp(app: NestFastifyApplication): void {
  const fastify = app.getHttpAdapter().getInstance();
  fastify.addHook('onRequest', (request, reply, done) => {
    void reply.header(REQUEST_ID_HEADER, request.id);
    done();
  });
  logRequests(fastify);
  // Before any parser: a body that is not JSON is refused.
  fastify.addHook('preParsing', requireJsonBody);
  // application/json and any application/*+json; Nest then adds no JSON parser of its own.
  const parseJson = jsonDocumentParser(app);
  app.useBodyParser('application/json', { bodyLimit: JSON_BODY_LIMIT_BYTES }, parseJson);
  app.useBodyParser(JSON_SUFFIX_MEDIA_TYPE, { bodyLimit: JSON_BODY_LIMIT_BYTES }, parseJson);
  serveConsole(app);
  app.useGlobalFilters(new ProblemDetailsFilter());
  app.useGlobalPipes(new LedgerValidationPipe());
  app.enableShutdownHooks();

  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('CharmIQ credit ledger')
      .setDescription(
        'Credits per organization, event-sourced. Errors are application/problem+json (RFC 9457).',
      )
      .setVersion('1')
      .addBearerAuth()
      .build(),
  );
  SwaggerModule.setup(DOCS_PATH, app, document, { jsonDocumentUrl: `${DOCS_PATH}-json` });
}

/** init() and Fastify's ready(): after it, the server answers requests (supertest, inject). */
export async function startHttp(app: NestFastifyApplication): Promise<void> {
  await app.init();
  await app.getHttpAdapter().getInstance().ready();
}

/**
 * Fastify's JSON parser (which refuses `__proto__` and `constructor.prototype` keys), kept to
 * what body-parser's strict mode allowed: an object or an array. Any failure is the caller's.
 */
function jsonDocumentParser(app: NestFastifyApplication): FastifyBodyParser<Buffer> {
  const parseJson = app.getHttpAdapter().getInstance().getDefaultJsonParser('error', 'error');
  return (request, body, done) =>
    parseJson(request, body.toString('utf8'), (error, parsed) => {
      if (error || typeof parsed !== 'object' || parsed === null) {
        done(new ValidationFailed([{ field: 'body', message: 'must be valid JSON (an object)' }]));
        return;
      }
      done(null, parsed);
    });
}

/**
 * The API speaks JSON only: a body of any other type (a form, text) is refused before a
 * parser could turn it into something that looks like a valid DTO.
 */
function requireJsonBody(
  request: FastifyRequest,
  reply: FastifyReply,
  _payload: unknown,
  done: (error?: Error | null) => void,
): void {
  const contentLength = request.headers['content-length'];
  const hasBody =
    request.headers['transfer-encoding'] !== undefined ||
    (contentLength !== undefined && contentLength !== '0');
  if (!hasBody) {
    done();
    return;
  }
  if (Number(contentLength) > JSON_BODY_LIMIT_BYTES) {
    // Refused here, before a parser reads it: Fastify closes the connection after a parser's
    // error, and a client still sending the body then got EPIPE instead of the answer (found
    // by the fault suite). From a hook, Node reads the rest and throws it away, keeping the
    // connection; past UNREAD_BODY_LIMIT_BYTES it closes instead, rather than read it all.
    if (Number(contentLength) > UNREAD_BODY_LIMIT_BYTES) void reply.header('connection', 'close');
    done(new ValidationFailed([{ field: 'body', message: 'is too large' }]));
    return;
  }
  if (!isJsonMediaType(request.headers['content-type'])) {
    done(
      new ValidationFailed([
        { field: 'body', message: 'must be JSON (Content-Type: application/json)' },
      ]),
    );
    return;
  }
  // JSON is UTF-8 (RFC 8259). Another declared charset let a body decode to nothing, which the
  // parser took as `{}`: a refund with garbage for a body went through (found by the fault suite).
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(request.headers['content-type'] ?? '');
  if (charset && charset[1].toLowerCase() !== 'utf-8' && charset[1].toLowerCase() !== 'utf8') {
    done(new ValidationFailed([{ field: 'body', message: 'must be UTF-8 JSON' }]));
    return;
  }
  done();
}

function isJsonMediaType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const mediaType = contentType.split(';')[0].trim().toLowerCase();
  return mediaType === 'application/json' || JSON_SUFFIX_MEDIA_TYPE.test(mediaType);
}

import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ValidationFailed } from '../../ledger/errors';
import { serveConsole } from './console';
import { ProblemDetailsFilter } from './problem-details.filter';
import { LedgerValidationPipe } from './validation.pipe';

/**
 * Well above the largest valid request, so that an oversized field is reported by
 * validation with its name rather than as an anonymous 413; a larger body is still a 400.
 */
export const JSON_BODY_LIMIT = '2mb';

export const DOCS_PATH = 'docs';

/**
 * Everything HTTP-specific around the controllers, shared by main.ts and the e2e tests so that
 * both see the same edge. Call it after creating the application and before init()/listen().
 * Routes keep their own `/v1` prefix; /health, /docs and /console have none.
 */
export function configureHttp(app: NestExpressApplication): void {
  app.disable('x-powered-by');
  serveConsole(app);
  // Registered before Nest's own parsers (added at init), so these run first and Nest's
  // default JSON parser (1 MB limit) is not added at all.
  app.use(requireJsonBody);
  app.useBodyParser('json', {
    limit: JSON_BODY_LIMIT,
    strict: true,
    type: ['application/json', 'application/*+json'],
  });
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

/**
 * The API speaks JSON only: a body of any other type (a form, text) is refused before a
 * parser could turn it into something that looks like a valid DTO.
 */
function requireJsonBody(
  request: IncomingMessage,
  _response: ServerResponse,
  next: (error?: unknown) => void,
): void {
  const contentLength = request.headers['content-length'];
  const hasBody =
    request.headers['transfer-encoding'] !== undefined ||
    (contentLength !== undefined && contentLength !== '0');
  if (!hasBody) {
    next();
    return;
  }
  if (!isJsonMediaType(request.headers['content-type'])) {
    next(
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
    next(new ValidationFailed([{ field: 'body', message: 'must be UTF-8 JSON' }]));
    return;
  }
  next();
}

function isJsonMediaType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const mediaType = contentType.split(';')[0].trim().toLowerCase();
  return mediaType === 'application/json' || /^application\/[^/]+\+json$/.test(mediaType);
}

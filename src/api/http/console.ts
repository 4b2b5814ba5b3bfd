import { existsSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { problem, PROBLEM_CONTENT_TYPE } from './problem-details.filter';

export const CONSOLE_PATH = '/console';

/**
 * The console's scripts and styles come from this origin only, and it talks to no one but
 * the API beside it. Chart.js sets canvas sizes through the CSSOM, which style-src allows.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * dist/console, built by `npm run build`. This file runs from dist/src/api/http in the
 * service and from src/api/http under Jest; both are three levels below dist/ or the root.
 */
export function consoleDirectory(): string {
  const root = join(__dirname, '..', '..', '..');
  return basename(root) === 'dist' ? join(root, 'console') : join(root, 'dist', 'console');
}

/**
 * Serves the console's static files at /console, ahead of Nest's routes and guard: the page
 * itself needs no token; it calls the API with the one the person pastes.
 */
export function serveConsole(app: NestExpressApplication, directory = consoleDirectory()): void {
  app.use(CONSOLE_PATH, consoleHeaders);
  app.useStaticAssets(directory, {
    prefix: CONSOLE_PATH,
    index: 'index.html',
    redirect: true,
    fallthrough: true,
  });
  app.use(CONSOLE_PATH, (request: IncomingMessage, response: ServerResponse, next: () => void) => {
    // Only the page itself gets this note; a missing asset is an ordinary 404 from Nest.
    const path = (request.url ?? '/').split('?')[0];
    if ((path !== '/' && path !== '') || existsSync(join(directory, 'index.html'))) {
      next();
      return;
    }
    response.statusCode = 404;
    response.setHeader('content-type', PROBLEM_CONTENT_TYPE);
    response.end(
      JSON.stringify(
        problem('NOT_FOUND', 'the console is not built here: run npm run build', {
          instance: CONSOLE_PATH,
        }),
      ),
    );
  });
}

function consoleHeaders(_request: IncomingMessage, response: ServerResponse, next: () => void) {
  response.setHeader('content-security-policy', CONSOLE_CSP);
  response.setHeader('x-content-type-options', 'nosniff');
  response.setHeader('referrer-policy', 'no-referrer');
  // A new build must reach the browser at once: revalidate every time (ETags keep it cheap).
  response.setHeader('cache-control', 'no-cache');
  next();
}

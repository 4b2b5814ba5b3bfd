import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { problem, sendProblem } from './problem-details.filter';

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
export function serveConsole(app: NestFastifyApplication, directory = consoleDirectory()): void {
  if (!existsSync(join(directory, 'index.html'))) {
    // Only the page itself gets this note; a missing asset is an ordinary 404 from Nest.
    const notBuilt = (_request: FastifyRequest, reply: FastifyReply) =>
      sendProblem(
        reply,
        problem('NOT_FOUND', 'the console is not built here: run npm run build', {
          instance: CONSOLE_PATH,
        }),
      );
    const fastify = app.getHttpAdapter().getInstance();
    fastify.get(CONSOLE_PATH, notBuilt);
    fastify.get(`${CONSOLE_PATH}/`, notBuilt);
    return;
  }
  app.useStaticAssets({
    root: directory,
    prefix: CONSOLE_PATH,
    index: 'index.html',
    // `/console` answers 301 to `/console/`, so the page's relative links resolve.
    redirect: true,
    // @fastify/static 10 passes the reply here; Nest's type still names a raw response.
    setHeaders: (reply: unknown) => consoleHeaders(reply as FastifyReply),
  });
}

function consoleHeaders(reply: FastifyReply) {
  void reply
    .header('content-security-policy', CONSOLE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    // A new build must reach the browser at once: revalidate every time (ETags keep it cheap).
    .header('cache-control', 'no-cache');
}

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { eventStoreEnvFor } from './postgres';
import { serviceToken, TEST_SECRET } from './tokens';

/** The project's folder, also when this file runs compiled from dist/ (the bench). */
function projectRoot(from = __dirname): string {
  let dir = from;
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

export const MAIN = join(projectRoot(), 'dist', 'src', 'main.js');

/** The Node.js flags `npm start` runs the service with (heap cap, V8 pool), so tests run it alike. */
export const SERVICE_NODE_FLAGS: string[] = (() => {
  const { scripts } = JSON.parse(readFileSync(join(projectRoot(), 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const flags = / node ((?:--\S+ )*)dist\/src\/main\.js/.exec(scripts.start)?.[1] ?? '';
  return flags.split(' ').filter(Boolean);
})();

/** A free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface ServiceProcess {
  url: string;
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** The built service (`npm run build`) as a child process, ready once /health answers. */
export async function startService(
  env: Record<string, string>,
  options: { nodeArgs?: string[] } = {},
): Promise<ServiceProcess> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build first`);
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [...SERVICE_NODE_FLAGS, ...(options.nodeArgs ?? []), MAIN],
    {
      env: {
        PATH: process.env.PATH,
        LOG_LEVEL: 'warn',
        LEDGER_JWT_SECRET: TEST_SECRET,
        LEDGER_NATS_REQUESTS: 'off',
        ...(env.LEDGER_DATA_DIR && !env.LEDGER_EVENT_STORE
          ? await eventStoreEnvFor(env.LEDGER_DATA_DIR)
          : {}),
        ...env,
        PORT: String(port),
        GRPC_PORT: String(await freePort()),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`service exited early:\n${output}`);
    try {
      const response = await fetch(`${url}/health`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`service did not become healthy:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    child,
    output: () => output,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A POST with a service token, as the ledger's own services call it. */
export async function postJson(url: string, body: unknown) {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${await serviceToken()}`,
    },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** A GET with a service token. */
export async function getWithToken(
  url: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, { headers: { authorization: `Bearer ${await serviceToken()}`, ...headers } });
}

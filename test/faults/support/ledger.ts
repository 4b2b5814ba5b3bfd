import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort, MAIN } from '../../support/service-process';
import { serviceToken, TEST_SECRET } from '../../support/tokens';

export interface LedgerOptions {
  dataDir: string;
  natsUrl: string;
  /** Read models on PostgreSQL (the event store stays the embedded SQLite file). */
  databaseUrl?: string;
  natsRequests?: boolean;
  crashAt?: string;
  /** Runs the service under `ulimit -f` (512-byte blocks): writes past it fail with EFBIG. */
  fileSizeLimitBlocks?: number;
  /** Kept across restarts, so clients keep their address. */
  port?: number;
  grpcPort?: number;
}

/** The built service (dist/src/main.js) as a child process that a scenario kills and restarts. */
export class LedgerProcess {
  private log = '';
  readonly exited: Promise<number | null>;

  constructor(
    readonly child: ChildProcess,
    readonly port: number,
    readonly grpcPort: number,
  ) {
    child.stdout!.on('data', (chunk) => (this.log += chunk));
    child.stderr!.on('data', (chunk) => (this.log += chunk));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.log;
  }

  /** SIGKILL, as a power cut: nothing of the process runs after it. */
  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (this.running) this.child.kill('SIGTERM');
    await this.exited;
  }
}

/** Spawns the service and returns at once (it may exit at start: see `launchLedger`). */
export async function spawnLedger(options: LedgerOptions): Promise<LedgerProcess> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build first`);
  const port = options.port ?? (await freePort());
  const grpcPort = options.grpcPort ?? (await freePort());
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    // 4xx answers log at warn: tens of thousands of hostile requests would drown the output.
    LOG_LEVEL: 'error',
    LEDGER_JWT_SECRET: TEST_SECRET,
    LEDGER_DATA_DIR: options.dataDir,
    NATS_URL: options.natsUrl,
    LEDGER_NATS_REQUESTS: options.natsRequests ? 'on' : 'off',
    PORT: String(port),
    GRPC_PORT: String(grpcPort),
    ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {}),
    ...(options.crashAt ? { LEDGER_CRASH_AT: options.crashAt } : {}),
  };
  const child =
    options.fileSizeLimitBlocks === undefined
      ? spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(
          'sh',
          [
            '-c',
            `ulimit -f ${options.fileSizeLimitBlocks} && exec "$0" "$1"`,
            process.execPath,
            MAIN,
          ],
          { env, stdio: ['ignore', 'pipe', 'pipe'] },
        );
  return new LedgerProcess(child, port, grpcPort);
}

/** Spawns the service and waits until /health answers 200 (every required dependency up). */
export async function launchLedger(options: LedgerOptions): Promise<LedgerProcess> {
  const ledger = await spawnLedger(options);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (!ledger.running) throw new Error(`the ledger exited at start:\n${ledger.output()}`);
    const healthy = await fetch(`${ledger.url}/health`)
      .then((response) => response.ok)
      .catch(() => false);
    if (healthy) return ledger;
    if (Date.now() > deadline) {
      await ledger.kill();
      throw new Error(`the ledger did not become healthy:\n${ledger.output()}`);
    }
    await sleep(50);
  }
}

/** Waits until the service answers its NATS subjects (it connects in the background). */
export async function waitForNatsService(nats: NatsConnection, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ping = await nats.request('$SRV.PING.ledger', '', { timeout: 500 }).catch(() => null);
    if (ping) return;
    await sleep(50);
  }
  throw new Error('the ledger does not answer on NATS');
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `promise`'s value, or `fallback` after `ms`; the timer never outlives the race. */
export async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface HttpReply {
  status: number;
  headers: Headers;
  /** Parsed JSON when the body is JSON, else the text. */
  body: unknown;
  text: string;
}

/** Plain fetch (keep-alive) with a service token unless the caller sets `authorization`. */
export class Http {
  private token?: string;

  constructor(public baseUrl: string) {}

  async request(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<HttpReply> {
    this.token ??= await serviceToken();
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, headers: response.headers, body: parsed, text };
  }

  post = (path: string, body?: unknown) => this.request('POST', path, body ?? {});
  get = (path: string) => this.request('GET', path);
}

export interface StoredEvent {
  position: number;
  eventId: string;
  streamId: string;
  revision: number;
  type: string;
  data: Record<string, unknown>;
}

/**
 * Every event of the embedded store, read straight from its file (read-only, beside a
 * running service or after it): the record the scenarios check their own records against.
 */
export function readStore(dataDir: string): StoredEvent[] {
  const db = new Database(join(dataDir, 'events.sqlite'), { readonly: true, fileMustExist: true });
  try {
    const rows = db
      .prepare(
        'SELECT position, event_id, stream_id, revision, type, data FROM events ORDER BY position',
      )
      .all() as {
      position: number;
      event_id: string;
      stream_id: string;
      revision: number;
      type: string;
      data: string;
    }[];
    return rows.map((row) => ({
      position: row.position,
      eventId: row.event_id,
      streamId: row.stream_id,
      revision: row.revision,
      type: row.type,
      data: JSON.parse(row.data) as Record<string, unknown>,
    }));
  } finally {
    db.close();
  }
}

/** runId -> how many CharmRunCharged events carry it, and the charged amount, per organization. */
export function chargesIn(events: StoredEvent[]) {
  const charges = new Map<string, { count: number; amount: number; organizationId: string }>();
  for (const event of events) {
    if (event.type !== 'CharmRunCharged') continue;
    const runId = event.data.runId as string;
    const organizationId = event.streamId.replace(/^organization-/, '');
    const key = `${organizationId}/${runId}`;
    const seen = charges.get(key);
    charges.set(key, {
      count: (seen?.count ?? 0) + 1,
      amount: event.data.amount as number,
      organizationId,
    });
  }
  return charges;
}

/** The message ids JetStream holds in LEDGER_EVENTS, in stream order (waits for `atLeast`). */
export async function readJetStream(natsUrl: string, atLeast: number, timeoutMs = 60_000) {
  const nats = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nats);
    const deadline = Date.now() + timeoutMs;
    let messages = 0;
    for (;;) {
      messages = await jsm.streams
        .info('LEDGER_EVENTS')
        .then((info) => info.state.messages)
        .catch(() => 0);
      if (messages >= atLeast || Date.now() > deadline) break;
      await sleep(200);
    }
    const eventIds: string[] = [];
    if (messages === 0) return eventIds;
    const consumer = await jetstream(nats).consumers.get('LEDGER_EVENTS');
    const iterator = await consumer.consume();
    for await (const message of iterator) {
      eventIds.push(message.json<{ eventId: string }>().eventId);
      if (message.info.pending === 0) break;
    }
    await iterator.close();
    return eventIds;
  } finally {
    await nats.close();
  }
}

/** Compares JetStream with the store: events missing from JetStream, and ids held twice. */
export function compareJetStream(stored: StoredEvent[], published: string[]) {
  const counts = new Map<string, number>();
  for (const id of published) counts.set(id, (counts.get(id) ?? 0) + 1);
  const missing = stored.filter((event) => !counts.has(event.eventId)).length;
  const repeated = [...counts.values()].filter((n) => n > 1).length;
  const storedIds = new Set(stored.map((event) => event.eventId));
  const unknown = [...counts.keys()].filter((id) => !storedIds.has(id));
  return { missing, repeated, unknown: unknown.length };
}

/**
 * Waits until the read models have reached the store's head (`?minPosition=` answers 200),
 * then runs audit verify for each organization. Returns the organizations that differ.
 */
export async function verifyReadModels(
  http: Http,
  organizations: string[],
  head: number,
  timeoutMs = 120_000,
): Promise<{ inconsistent: string[]; convergedMs: number }> {
  const started = Date.now();
  for (;;) {
    const reply = await http.get(
      `/v1/organizations/${organizations[0]}/members?minPosition=${head}`,
    );
    if (reply.status === 200) break;
    if (Date.now() - started > timeoutMs) {
      throw new Error(`read models did not reach ${head}: ${reply.status} ${reply.text}`);
    }
  }
  const convergedMs = Date.now() - started;
  const inconsistent: string[] = [];
  for (const organizationId of organizations) {
    const report = await http.post(`/v1/organizations/${organizationId}/audit/verify`);
    const body = report.body as { consistent?: boolean; differences?: unknown[] };
    // The first differences name what went wrong, should it ever be anything.
    if (report.status !== 200 || body.consistent !== true)
      inconsistent.push(
        `${organizationId}: ${report.status} ${JSON.stringify(body.differences?.slice(0, 5) ?? report.text)}`,
      );
  }
  return { inconsistent, convergedMs };
}

/** The well-formed RFC 9457 problem the API promises for every error (API.md). */
export const PROBLEM_STATUS: Record<string, number> = {
  VALIDATION_FAILED: 400,
  UNAUTHENTICATED: 401,
  INSUFFICIENT_CREDITS: 402,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  UNAVAILABLE: 503,
};

/** Why a reply is not a well-formed problem+json, or undefined when it is one. */
export function problemDefect(reply: HttpReply): string | undefined {
  if (!(reply.headers.get('content-type') ?? '').startsWith('application/problem+json'))
    return `content-type ${reply.headers.get('content-type')}`;
  const body = reply.body as Record<string, unknown>;
  if (typeof body !== 'object' || body === null) return 'body is not a JSON object';
  for (const member of ['type', 'title', 'detail', 'code'])
    if (typeof body[member] !== 'string') return `${member} is not a string`;
  if (body.status !== reply.status) return `status ${String(body.status)} != ${reply.status}`;
  if (PROBLEM_STATUS[body.code as string] !== reply.status)
    return `code ${String(body.code)} with status ${reply.status}`;
  if (body.code === 'VALIDATION_FAILED' && !(Array.isArray(body.errors) && body.errors.length > 0))
    return 'VALIDATION_FAILED without errors';
  if (reply.status === 503 && !reply.headers.get('retry-after')) return '503 without Retry-After';
  return undefined;
}

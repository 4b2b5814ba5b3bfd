import { z } from 'zod';

/**
 * Every setting the service reads, validated before anything is opened. This is the only
 * place that reads process.env.
 */

/** A whole number written in digits, from `min` to `max`; `message` names the range. */
const wholeNumber = (fallback: number, min: number, max: number, message: string) =>
  z
    .string()
    .default(String(fallback))
    .refine((v) => /^\d+$/.test(v) && Number(v) >= min && Number(v) <= max, { message })
    .transform(Number);

const port = (fallback: number) =>
  wholeNumber(fallback, 0, 65535, 'must be a port number from 0 to 65535');

const positiveInt = (fallback: number) =>
  wholeNumber(fallback, 1, Infinity, 'must be a positive integer');

/** A nice increment: 0 (as the request thread) to 19 (only what is left over). */
const niceIncrement = (fallback: number) =>
  wholeNumber(fallback, 0, 19, 'must be an integer from 0 to 19');

const schema = z.object({
  PORT: port(3000),
  GRPC_PORT: port(50051),
  LEDGER_DATA_DIR: z.string().min(1).default('./data'),
  LEDGER_EVENT_STORE: z.enum(['sqlite', 'postgres', 'eventstoredb']).default('sqlite'),
  EVENTSTORE_URL: z.string().min(1).default('esdb://127.0.0.1:2113?tls=false'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// connection string')
    .optional(),
  NATS_URL: z.string().min(1).default('nats://127.0.0.1:4222'),
  LEDGER_JWT_SECRET: z
    .string()
    .min(32, 'must be at least 32 characters (HS256 needs a 256-bit secret)')
    .optional(),
  LEDGER_JWKS_URL: z.string().min(1).optional(),
  LEDGER_JWT_ISSUER: z.string().min(1).optional(),
  LEDGER_JWT_AUDIENCE: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Write a snapshot after this many events since the last one. */
  LEDGER_SNAPSHOT_EVERY: positiveInt(500),
  /** How many aggregates (organizations and users) the write side keeps in memory. */
  LEDGER_CACHE_SIZE: positiveInt(10_000),
  /** Whether this process answers the NATS request subjects (`off` for a process that must not). */
  LEDGER_NATS_REQUESTS: z.enum(['on', 'off']).default('on'),
  /** JetStream replicas of LEDGER_EVENTS (3 in a cluster). */
  LEDGER_JETSTREAM_REPLICAS: positiveInt(1),
  /**
   * Where the projections and the JetStream publisher run: a thread of their own (the default,
   * so that they never hold a request up), or the request thread (`inline`).
   */
  LEDGER_READ_SIDE: z.enum(['thread', 'inline']).default('thread'),
  /**
   * How much lower than the request thread's the read side thread's CPU priority is (Linux
   * nice): when the cores are short, answering charges comes first and the read models and
   * JetStream catch up in the gaps. 0 keeps them equal.
   */
  LEDGER_READ_SIDE_NICE: niceIncrement(10),
  /** Fault injection for the crash tests: the named crash point kills the process. */
  LEDGER_CRASH_AT: z.string().min(1).optional(),
});

export interface LedgerConfig {
  port: number;
  grpcPort: number;
  dataDir: string;
  eventStore: 'sqlite' | 'postgres' | 'eventstoredb';
  eventStoreUrl: string;
  databaseUrl?: string;
  natsServers: string[];
  jwtSecret?: string;
  jwksUrl?: string;
  jwtIssuer?: string;
  jwtAudience?: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  snapshotEvery: number;
  cacheSize: number;
  crashAt?: string;
  jetStreamReplicas: number;
  natsRequests: boolean;
  readSide: 'thread' | 'inline';
  readSideNice: number;
}

/** A wrong setting: its message is the one line printed before the process exits. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): LedgerConfig {
  // Empty variables count as unset, as a shell `FOO= npm start` means.
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value !== ''),
  );
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue.path[0]);
    throw new ConfigError(
      `Invalid setting ${name}=${JSON.stringify(env[name] ?? '')}: ${issue.message}`,
    );
  }
  const s = parsed.data;
  // Secure by default: the service never runs without checking tokens.
  if (s.LEDGER_JWT_SECRET && s.LEDGER_JWKS_URL) {
    throw new ConfigError(
      'Invalid setting LEDGER_JWKS_URL: set LEDGER_JWT_SECRET or LEDGER_JWKS_URL, not both',
    );
  }
  if (s.LEDGER_JWKS_URL && !(s.LEDGER_JWT_ISSUER && s.LEDGER_JWT_AUDIENCE)) {
    const missing = s.LEDGER_JWT_ISSUER ? 'LEDGER_JWT_AUDIENCE' : 'LEDGER_JWT_ISSUER';
    throw new ConfigError(`Missing setting ${missing}: required with LEDGER_JWKS_URL`);
  }
  if (s.LEDGER_EVENT_STORE === 'postgres' && !s.DATABASE_URL) {
    throw new ConfigError(
      'Missing setting DATABASE_URL: required with LEDGER_EVENT_STORE=postgres (the events live there)',
    );
  }
  if (!s.LEDGER_JWT_SECRET && !s.LEDGER_JWKS_URL && s.LEDGER_EVENT_STORE !== 'sqlite') {
    throw new ConfigError(
      `Missing setting LEDGER_JWT_SECRET: set it or LEDGER_JWKS_URL (only the embedded default makes a dev secret)`,
    );
  }
  return {
    port: s.PORT,
    grpcPort: s.GRPC_PORT,
    dataDir: s.LEDGER_DATA_DIR,
    eventStore: s.LEDGER_EVENT_STORE,
    eventStoreUrl: s.EVENTSTORE_URL,
    databaseUrl: s.DATABASE_URL,
    natsServers: s.NATS_URL.split(',').map((url) => url.trim()),
    jwtSecret: s.LEDGER_JWT_SECRET,
    jwksUrl: s.LEDGER_JWKS_URL,
    jwtIssuer: s.LEDGER_JWT_ISSUER,
    jwtAudience: s.LEDGER_JWT_AUDIENCE,
    logLevel: s.LOG_LEVEL,
    snapshotEvery: s.LEDGER_SNAPSHOT_EVERY,
    cacheSize: s.LEDGER_CACHE_SIZE,
    crashAt: s.LEDGER_CRASH_AT,
    jetStreamReplicas: s.LEDGER_JETSTREAM_REPLICAS,
    natsRequests: s.LEDGER_NATS_REQUESTS === 'on',
    readSide: s.LEDGER_READ_SIDE,
    readSideNice: s.LEDGER_READ_SIDE_NICE,
  };
}

export const LEDGER_CONFIG = Symbol('LEDGER_CONFIG');

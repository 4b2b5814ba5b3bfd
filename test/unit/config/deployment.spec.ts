import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadConfig } from '../../../src/config/config';
import { SERVICE_NODE_FLAGS } from '../../support/service-process';

/**
 * docker-compose.yml cannot be started here (no Docker engine): these checks keep it honest
 * against the ledger itself, so that `docker compose up` does not fail on a setting.
 */
const ROOT = join(__dirname, '..', '..', '..');
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

interface Service {
  image?: string;
  build?: string;
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
}
const compose = parse(read('docker-compose.yml')) as {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
};

describe('docker-compose.yml', () => {
  const ledger = compose.services.ledger;
  // Compose substitutes ${LEDGER_JWT_SECRET:?...} from the caller's environment.
  const environment = Object.fromEntries(
    Object.entries(ledger.environment ?? {}).map(([key, value]) => [
      key,
      value.startsWith('${LEDGER_JWT_SECRET') ? 's'.repeat(40) : value,
    ]),
  );

  it('runs EventStoreDB, NATS, PostgreSQL and the ledger, each with a health check', () => {
    expect(Object.keys(compose.services).sort()).toEqual([
      'eventstoredb',
      'ledger',
      'nats',
      'postgres',
    ]);
    for (const [name, service] of Object.entries(compose.services)) {
      if (name === 'ledger') continue; // its image has a HEALTHCHECK (Dockerfile)
      expect(service.healthcheck?.test.length).toBeGreaterThan(0);
    }
    expect(read('Dockerfile')).toMatch(/HEALTHCHECK[\s\S]*\/health/);
  });

  it('gives the ledger settings its own config accepts, pointing at the compose services', () => {
    const config = loadConfig(environment);
    expect(config.eventStore).toBe('eventstoredb');
    expect(new URL(config.eventStoreUrl).hostname).toBe('eventstoredb');
    expect(new URL(config.databaseUrl!).hostname).toBe('postgres');
    expect(config.natsServers.map((server) => new URL(server).hostname)).toEqual(['nats']);
    // The secret has no default: without it compose refuses to start.
    expect(ledger.environment?.LEDGER_JWT_SECRET).toMatch(/^\$\{LEDGER_JWT_SECRET:\?/);
  });

  it('starts the ledger only once its stores are healthy, and keeps every store on a volume', () => {
    expect(ledger.depends_on).toEqual({
      eventstoredb: { condition: 'service_healthy' },
      nats: { condition: 'service_healthy' },
      postgres: { condition: 'service_healthy' },
    });
    for (const name of ['eventstoredb', 'nats', 'postgres']) {
      const named = (compose.services[name].volumes ?? [])
        .map((volume) => volume.split(':')[0])
        .filter((source) => source in compose.volumes);
      expect(named.length).toBeGreaterThan(0);
    }
  });

  it('runs EventStoreDB as one insecure node without projections, and JetStream with fsync', () => {
    const eventStore = compose.services.eventstoredb.environment ?? {};
    expect(eventStore).toMatchObject({
      KURRENTDB_CLUSTER_SIZE: '1',
      KURRENTDB_INSECURE: 'true',
      KURRENTDB_RUN_PROJECTIONS: 'None',
    });
    expect(read('deploy/nats-server.conf')).toMatch(/sync_interval:\s*always/);
  });

  it('builds the ledger in two stages and starts the file the build makes', () => {
    const dockerfile = read('Dockerfile');
    expect(dockerfile.match(/^FROM /gm)).toHaveLength(2);
    const command = /^CMD (\[.*\])$/m.exec(dockerfile);
    const argv = JSON.parse(command![1]) as string[];
    // The same flags as `npm start` (and the tests' and the bench's services): the heap cap,
    // V8's helper threads sized for two cores, fewer full collections, and a charge's objects
    // kept in the young generation. Collections on the collected thread alone
    // (--single-threaded-gc) raised the latency row's p99 by about a third (README).
    expect(SERVICE_NODE_FLAGS).toContain('--max-old-space-size=256');
    expect(SERVICE_NODE_FLAGS).toContain('--v8-pool-size=1');
    expect(SERVICE_NODE_FLAGS).not.toContain('--single-threaded-gc');
    expect(SERVICE_NODE_FLAGS).toContain('--heap-growing-percent=100');
    expect(SERVICE_NODE_FLAGS).toContain('--no-allocation-site-pretenuring');
    expect(argv).toEqual(['node', ...SERVICE_NODE_FLAGS, 'dist/src/main.js']);
    // npm test builds before Jest runs.
    expect(existsSync(join(ROOT, argv[argv.length - 1]))).toBe(true);
  });
});

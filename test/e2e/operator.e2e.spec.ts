import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { newDataDir, removeDataDir } from '../support/ledger-app';
import {
  getWithToken,
  postJson,
  startService,
  type ServiceProcess,
} from '../support/service-process';
import { eventStoreEnvFor } from '../support/postgres';
import { TEST_SECRET } from '../support/tokens';

const LEDGER_CLI = join(__dirname, '..', '..', 'dist', 'src', 'cli', 'ledger.js');
const run = promisify(execFile);

/** The operator CLI on the stores of a running service, and projections killed mid-batch. */
describe('operator commands and projection crashes', () => {
  let dataDir: string;
  let service: ServiceProcess | undefined;

  beforeEach(() => {
    dataDir = newDataDir();
  });
  afterEach(async () => {
    await service?.stop();
    service = undefined;
    removeDataDir(dataDir);
  });

  const cli = async (...args: string[]) =>
    run(process.execPath, [LEDGER_CLI, ...args], {
      env: {
        PATH: process.env.PATH,
        LEDGER_DATA_DIR: dataDir,
        LEDGER_JWT_SECRET: TEST_SECRET,
        ...(await eventStoreEnvFor(dataDir)),
      },
    });

  async function seed(url: string) {
    let position = '0';
    const post = async (path: string, body: object) => {
      const response = await postJson(`${url}${path}`, body);
      expect([200, 201]).toContain(response.status);
      position = String(response.body.position);
    };
    await post('/v1/organizations', { organizationId: 'acme', name: 'Acme', ownerUserId: 'ann' });
    await post('/v1/organizations/acme/grants', { grantId: 'g', amount: 500, source: 'purchase' });
    for (let i = 0; i < 12; i++) {
      await post('/v1/charm-runs', {
        runId: `r${i}`,
        charmId: i % 2 ? 'odd' : 'even',
        userId: 'ann',
        amount: i + 1,
        organizationId: 'acme',
      });
    }
    await post('/v1/organizations/acme/charm-runs/r3/refund', { amount: 2 });
    return position;
  }

  const usageCsv = async (url: string, position: string) => {
    const response = await getWithToken(
      `${url}/v1/organizations/acme/usage?from=2026-01-01&to=2030-12-31&groupBy=charm&minPosition=${position}`,
      { accept: 'text/csv' },
    );
    expect(response.status).toBe(200);
    return response.text();
  };

  it('verifies, replays, exports usage and rebuilds while the service runs', async () => {
    service = await startService({ LEDGER_DATA_DIR: dataDir });
    const position = await seed(service.url);
    const apiCsv = await usageCsv(service.url, position);
    expect(apiCsv).toBe('key,runs,credits,refunded\r\neven,6,36,0\r\nodd,6,42,2\r\n');

    const verified = await cli('verify', '--org', 'acme');
    expect(JSON.parse(verified.stdout)).toMatchObject({
      organizationId: 'acme',
      consistent: true,
      eventsReplayed: 15,
    });

    const exported = await cli(
      'export-usage',
      '--org',
      'acme',
      '--from',
      '2026-01-01',
      '--to',
      '2030-12-31',
      '--group-by',
      'charm',
    );
    expect(exported.stdout).toBe(apiCsv);

    const replayed = await cli('replay', '--org', 'acme');
    const lines = replayed.stdout.trim().split('\n');
    expect(lines).toHaveLength(15);
    expect(lines[14]).toMatch(/CharmRunRefunded .* -> available 424, reserved 0$/);

    const rebuilt = await cli('rebuild', 'all');
    expect(rebuilt.stdout).toContain('rebuilt: balance, usage, membership, active-organization');
    expect(rebuilt.stderr).toMatch(/events\/s/);
    // The service keeps working on the rebuilt tables.
    const more = await postJson(`${service.url}/v1/charm-runs`, {
      runId: 'after',
      charmId: 'odd',
      userId: 'ann',
      amount: 5,
      organizationId: 'acme',
    });
    expect(more.status).toBe(201);
    expect(await usageCsv(service.url, String(more.body.position))).toBe(
      'key,runs,credits,refunded\r\neven,6,36,0\r\nodd,7,47,2\r\n',
    );
    const all = await cli('verify', '--all');
    expect(JSON.parse(all.stdout.trim().split('\n')[0])).toMatchObject({ consistent: true });
  });

  it('counts nothing twice or never when the runner dies between a batch and its checkpoint', async () => {
    service = await startService({ LEDGER_DATA_DIR: dataDir });
    const position = await seed(service.url);
    await usageCsv(service.url, position);
    await service.stop();

    // This process dies in its first projection batch, after the batch's writes.
    service = await startService({
      LEDGER_DATA_DIR: dataDir,
      LEDGER_CRASH_AT: 'projection:before-checkpoint',
    });
    await postJson(`${service.url}/v1/charm-runs`, {
      runId: 'maybe-lost',
      charmId: 'odd',
      userId: 'ann',
      amount: 7,
      organizationId: 'acme',
    }).catch(() => undefined);
    await service.exited;
    expect(service.child.signalCode).toBe('SIGKILL');

    service = await startService({ LEDGER_DATA_DIR: dataDir });
    const head = await postJson(`${service.url}/v1/charm-runs`, {
      runId: 'next',
      charmId: 'even',
      userId: 'ann',
      amount: 1,
      organizationId: 'acme',
    });
    expect(await usageCsv(service.url, String(head.body.position))).toBe(
      'key,runs,credits,refunded\r\neven,7,37,0\r\nodd,7,49,2\r\n',
    );
    const verified = await cli('verify', '--org', 'acme');
    expect(JSON.parse(verified.stdout)).toMatchObject({ consistent: true });
  });
});

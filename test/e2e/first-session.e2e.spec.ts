import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { newDataDir, removeDataDir } from '../support/ledger-app';
import { startService, type ServiceProcess } from '../support/service-process';

const TOKEN_CLI = join(__dirname, '..', '..', 'dist', 'src', 'cli', 'token.js');

/**
 * The README's first session on the built service with no secret configured: it makes a
 * dev secret, the token CLI signs with it, and the calls go through.
 */
describe('a first session with the token CLI', () => {
  let dataDir: string;
  let service: ServiceProcess;

  beforeAll(async () => {
    dataDir = newDataDir();
    // The README's first session is the embedded default, whatever store the suite runs on.
    service = await startService({
      LEDGER_DATA_DIR: dataDir,
      LEDGER_JWT_SECRET: '',
      LEDGER_EVENT_STORE: 'sqlite',
    });
  });
  afterAll(async () => {
    await service?.stop();
    removeDataDir(dataDir);
  });

  const mint = (...args: string[]) =>
    execFileSync(process.execPath, [TOKEN_CLI, ...args], {
      env: { PATH: process.env.PATH, LEDGER_DATA_DIR: dataDir },
      encoding: 'utf8',
    }).trim();

  const call = async (method: string, path: string, token: string, body?: unknown) => {
    const response = await fetch(`${service.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  it('signs up, grants, charges and reads the balance with minted tokens', async () => {
    const ops = mint('--sub', 'ops', '--scope', 'ledger:service');
    expect(ops).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect((await call('POST', '/v1/users', ops, { userId: 'alice' })).status).toBe(201);
    const grant = await call('POST', '/v1/organizations/personal-alice/grants', ops, {
      grantId: 'welcome',
      amount: 100,
      source: 'promotion',
    });
    expect(grant.status).toBe(201);

    const alice = mint('--sub', 'alice');
    const charge = await call('POST', '/v1/charm-runs', alice, {
      runId: 'run-1',
      charmId: 'summarize',
      userId: 'alice',
      amount: 25,
    });
    expect(charge).toMatchObject({ status: 201, body: { organizationId: 'personal-alice' } });
    const balance = await call('GET', '/v1/organizations/personal-alice/balance', alice);
    expect(balance.body).toMatchObject({ available: 75, reserved: 0 });

    // Alice's integration for her personal organization works there, and only there.
    const integration = mint('--sub', 'alice', '--org', 'personal-alice');
    expect(
      (await call('GET', '/v1/organizations/personal-alice/balance', integration)).status,
    ).toBe(200);
    expect((await call('GET', '/v1/organizations/personal-bob/balance', integration)).status).toBe(
      403,
    );
  });

  it('refuses tokens signed with anything but the dev secret', async () => {
    const foreign = execFileSync(
      process.execPath,
      [TOKEN_CLI, '--sub', 'ops', '--scope', 'ledger:service'],
      {
        env: { PATH: process.env.PATH, LEDGER_DATA_DIR: newDataDir() },
        encoding: 'utf8',
      },
    ).trim();
    expect((await call('POST', '/v1/users', foreign, { userId: 'mallory' })).status).toBe(401);
  });
});

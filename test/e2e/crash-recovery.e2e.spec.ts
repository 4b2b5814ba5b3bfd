import { spawnSync } from 'node:child_process';
import { newDataDir, removeDataDir } from '../support/ledger-app';
import {
  getWithToken,
  MAIN,
  postJson,
  startService,
  type ServiceProcess,
} from '../support/service-process';

/**
 * The built service as a child process, killed (SIGKILL, as a power cut) at the worst
 * moments, then started again on the same data folder.
 */
describe('crash recovery', () => {
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

  const history = async (url: string, organizationId: string) => {
    const response = await getWithToken(
      `${url}/v1/organizations/${organizationId}/history?limit=1000`,
    );
    const body = (await response.json()) as {
      events: { type: string; data: Record<string, unknown> }[];
    };
    return body.events;
  };

  async function eventually<T>(probe: () => Promise<T>, ok: (value: T) => boolean): Promise<T> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const value = await probe();
      if (ok(value) || Date.now() > deadline) return value;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  it('finishes a transfer cut between its two writes, exactly once', async () => {
    service = await startService({
      LEDGER_DATA_DIR: dataDir,
      LEDGER_CRASH_AT: 'transfer:after-out',
    });
    const { url } = service;
    expect(
      (
        await postJson(`${url}/v1/organizations`, {
          organizationId: 'from',
          name: 'From',
          ownerUserId: 'u',
        })
      ).status,
    ).toBe(201);
    expect(
      (
        await postJson(`${url}/v1/organizations`, {
          organizationId: 'to',
          name: 'To',
          ownerUserId: 'u',
        })
      ).status,
    ).toBe(201);
    expect(
      (
        await postJson(`${url}/v1/organizations/from/grants`, {
          grantId: 'g',
          amount: 100,
          source: 'purchase',
        })
      ).status,
    ).toBe(201);

    const transfer = { transferId: 't-1', toOrganizationId: 'to', amount: 30 };
    await expect(postJson(`${url}/v1/organizations/from/transfers`, transfer)).rejects.toThrow();
    await service.exited;
    expect(service.child.signalCode).toBe('SIGKILL');

    service = await startService({ LEDGER_DATA_DIR: dataDir });
    const sent = await history(service.url, 'from');
    expect(sent.filter((event) => event.type === 'CreditsTransferredOut')).toHaveLength(1);

    // Nobody retries: the service finishes the transfer by itself.
    const received = await eventually(
      () => history(service!.url, 'to'),
      (events) => events.some((event) => event.type === 'CreditsTransferredIn'),
    );
    const arrivals = received.filter((event) => event.type === 'CreditsTransferredIn');
    expect(arrivals).toHaveLength(1);
    expect(arrivals[0].data).toMatchObject({
      transferId: 't-1',
      fromOrganizationId: 'from',
      amount: 30,
    });

    // The caller's retry is a replay and still arrives once.
    const retry = await postJson(`${service.url}/v1/organizations/from/transfers`, transfer);
    expect(retry.status).toBe(200);
    expect(retry.body.replayed).toBe(true);
    const balance = (await (
      await getWithToken(`${service.url}/v1/organizations/to/balance`)
    ).json()) as {
      available: number;
    };
    expect(balance.available).toBe(30);
    const after = await history(service.url, 'to');
    expect(after.filter((event) => event.type === 'CreditsTransferredIn')).toHaveLength(1);
  });

  it('makes the personal organization of a sign-up cut after its first write', async () => {
    service = await startService({
      LEDGER_DATA_DIR: dataDir,
      LEDGER_CRASH_AT: 'sign-up:after-user',
    });
    await expect(postJson(`${service.url}/v1/users`, { userId: 'dora' })).rejects.toThrow();
    await service.exited;

    service = await startService({ LEDGER_DATA_DIR: dataDir });
    const organization = await eventually(
      () => getWithToken(`${service!.url}/v1/organizations/personal-dora`),
      (response) => response.status === 200,
    );
    expect(await organization.json()).toMatchObject({ kind: 'personal', ownerUserId: 'dora' });
  });

  it('keeps every acknowledged charge when killed under load', async () => {
    service = await startService({ LEDGER_DATA_DIR: dataDir });
    const { url } = service;
    await postJson(`${url}/v1/organizations`, {
      organizationId: 'busy',
      name: 'Busy',
      ownerUserId: 'u',
    });
    await postJson(`${url}/v1/organizations/busy/grants`, {
      grantId: 'g',
      amount: 1_000_000,
      source: 'plan',
    });
    const acknowledged: string[] = [];
    const load = Array.from({ length: 400 }, (_, i) =>
      postJson(`${url}/v1/charm-runs`, {
        runId: `r-${i}`,
        charmId: 'c',
        userId: 'u',
        amount: 1,
        organizationId: 'busy',
      })
        .then((response) => {
          if (response.status === 201) acknowledged.push(`r-${i}`);
        })
        .catch(() => undefined),
    );
    // Kill it mid-load: once some charges are acknowledged, while others are in flight.
    while (acknowledged.length < 20) await new Promise((resolve) => setTimeout(resolve, 5));
    service.child.kill('SIGKILL');
    await Promise.all(load);
    await service.exited;

    service = await startService({ LEDGER_DATA_DIR: dataDir });
    const charged = (await history(service.url, 'busy'))
      .filter((event) => event.type === 'CharmRunCharged')
      .map((event) => event.data.runId);
    expect(acknowledged.length).toBeGreaterThanOrEqual(20);
    expect(new Set(charged).size).toBe(charged.length);
    for (const runId of acknowledged) expect(charged).toContain(runId);
  });

  it.each([
    [{ PORT: 'abc' }, 'PORT'],
    [{ LEDGER_EVENT_STORE: 'mongo' }, 'LEDGER_EVENT_STORE'],
    [{ LEDGER_SNAPSHOT_EVERY: '0' }, 'LEDGER_SNAPSHOT_EVERY'],
  ])('stops at start with one line naming a wrong setting %j', (env, name) => {
    const result = spawnSync(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH, LEDGER_DATA_DIR: dataDir, ...env },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(result.status).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(name);
    expect(result.stdout).toBe('');
  });
});

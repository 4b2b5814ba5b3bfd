import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { consumeLedgerEvents, type LedgerEventMessage } from '../../src/client';
import { newDataDir, removeDataDir } from '../support/ledger-app';
import {
  getWithToken,
  postJson,
  startService,
  type ServiceProcess,
} from '../support/service-process';

/** The ledger killed while it publishes: after a restart JetStream holds every event. */
describe('publishing across a crash', () => {
  let dataDir: string;
  let service: ServiceProcess | undefined;
  let nats: NatsConnection;
  const org = `k${randomBytes(5).toString('hex')}`;

  beforeAll(async () => {
    dataDir = newDataDir();
    nats = await connect({ servers: 'nats://127.0.0.1:4222' });
  });
  afterAll(async () => {
    await service?.stop();
    await nats.close();
    removeDataDir(dataDir);
  });

  it('loses nothing and repeats nothing that dedupe does not remove', async () => {
    service = await startService({ LEDGER_DATA_DIR: dataDir });
    await postJson(`${service.url}/v1/organizations`, {
      organizationId: org,
      name: 'K',
      ownerUserId: 'u',
    });
    await postJson(`${service.url}/v1/organizations/${org}/grants`, {
      grantId: 'g',
      amount: 100_000,
      source: 'plan',
    });
    let acknowledged = 0;
    const load = Array.from({ length: 300 }, (_, i) =>
      postJson(`${service!.url}/v1/charm-runs`, {
        runId: `r${i}`,
        charmId: 'c',
        userId: 'u',
        amount: 1,
        organizationId: org,
      })
        .then((response) => {
          if (response.status === 201) acknowledged++;
        })
        .catch(() => undefined),
    );
    while (acknowledged < 50) await new Promise((r) => setTimeout(r, 5));
    service.child.kill('SIGKILL');
    await Promise.all(load);
    await service.exited;

    service = await startService({ LEDGER_DATA_DIR: dataDir });
    const history = (await (
      await getWithToken(`${service.url}/v1/organizations/${org}/history?limit=1000`)
    ).json()) as {
      events: { eventId: string }[];
    };
    const expected = history.events.map((event) => event.eventId);
    expect(expected.length).toBeGreaterThanOrEqual(52);

    const seen: LedgerEventMessage[] = [];
    const controller = new AbortController();
    const consuming = consumeLedgerEvents(nats, (event) => void seen.push(event), {
      filterSubject: `ledger.events.organization.${org}.>`,
      signal: controller.signal,
      // Remember only the last id: a repeat further back would show here.
      remember: 1,
    });
    const deadline = Date.now() + 15_000;
    while (seen.length < expected.length && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 300));
    controller.abort();
    await consuming;
    // Every event, in the organization's order, and none twice (all within the dedupe window).
    expect(seen.map((event) => event.eventId)).toEqual(expected);
  });
});

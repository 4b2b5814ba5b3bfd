import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { consumeLedgerEvents, type LedgerEventMessage } from '../../src/client';
import { EVENT_STORE, type EventStore } from '../../src/event-store/event-store';
import { newDataDir, removeDataDir, startLedger, type RunningLedger } from '../support/ledger-app';
import { freePort } from '../support/service-process';

const NATS_SERVER = '/usr/sbin/nats-server';
const OUTAGE_MS = 30_000;

/**
 * NATS (a server this test owns, never the machine's) stopped for 30 s in the middle of HTTP
 * traffic, then started again: every event of that time reaches JetStream, in order.
 */
describe('NATS away for 30 seconds', () => {
  let dataDir: string;
  let natsDir: string;
  let port: number;
  let server: ChildProcess | undefined;
  let ledger: RunningLedger;

  const startNats = async () => {
    server = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', natsDir], {
      stdio: 'ignore',
    });
    for (let i = 0; i < 100; i++) {
      const probe = await connect({ servers: `nats://127.0.0.1:${port}`, reconnect: false }).catch(
        () => undefined,
      );
      if (probe) return probe.close();
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('nats-server did not start');
  };
  const stopNats = async () => {
    const exited = new Promise((resolve) => server!.once('exit', resolve));
    server!.kill('SIGTERM');
    await exited;
  };

  beforeAll(async () => {
    dataDir = newDataDir();
    natsDir = mkdtempSync(join(tmpdir(), 'ledger-nats-'));
    port = await freePort();
    await startNats();
    ledger = await startLedger(dataDir, { env: { NATS_URL: `nats://127.0.0.1:${port}` } });
  });
  afterAll(async () => {
    await ledger.close();
    if (server && server.exitCode === null) await stopNats();
    removeDataDir(dataDir);
    rmSync(natsDir, { recursive: true, force: true });
  });

  it('serves through the outage, then publishes everything it owes, in order', async () => {
    await ledger.http
      .post('/v1/organizations')
      .send({ organizationId: 'away', name: 'A', ownerUserId: 'u' })
      .expect(201);
    await ledger.http
      .post('/v1/organizations/away/grants')
      .send({ grantId: 'g', amount: 1_000_000, source: 'plan' })
      .expect(201);
    let run = 0;
    const charge = () =>
      ledger.http
        .post('/v1/charm-runs')
        .send({ runId: `r${run++}`, charmId: 'c', userId: 'u', amount: 1, organizationId: 'away' })
        .expect(201);
    for (let i = 0; i < 20; i++) await charge();

    await stopNats();
    const until = Date.now() + OUTAGE_MS;
    while (Date.now() < until) {
      await charge();
      await new Promise((r) => setTimeout(r, 100));
    }
    const health = await ledger.http.get('/health').expect(200);
    expect(health.body.checks.nats.status).toBe('down');
    await startNats();
    for (let i = 0; i < 20; i++) await charge();

    const events = await ledger.app.get<EventStore>(EVENT_STORE).readStream('organization-away');
    expect(events.length).toBeGreaterThan(200);
    const nats = await connect({ servers: `nats://127.0.0.1:${port}` });
    const published: LedgerEventMessage[] = [];
    const controller = new AbortController();
    const consuming = consumeLedgerEvents(nats, (event) => void published.push(event), {
      filterSubject: 'ledger.events.organization.away.>',
      signal: controller.signal,
    });
    const deadline = Date.now() + 20_000;
    while (published.length < events.length && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    await consuming;
    await nats.close();
    expect(published.map((event) => event.eventId)).toEqual(events.map((event) => event.eventId));
    // The request connection reconnects on its own schedule, apart from the publisher's: on a
    // busy machine it may come back a few seconds after the events went out.
    const reconnectBy = Date.now() + 30_000;
    let after = await ledger.http.get('/health').expect(200);
    while (after.body.checks.nats.status !== 'up' && Date.now() < reconnectBy) {
      await new Promise((r) => setTimeout(r, 200));
      after = await ledger.http.get('/health').expect(200);
    }
    expect(after.body.checks.nats.status).toBe('up');
  }, 120_000);
});

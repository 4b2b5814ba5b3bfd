import { randomBytes } from 'node:crypto';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { LEDGER_EVENTS_STREAM } from '../../src/nats/jetstream-publisher';
import { newDataDir, removeDataDir, startLedger, type RunningLedger } from '../support/ledger-app';

/** Every event reaches JetStream; the service runs on without NATS. */
describe('events on NATS JetStream', () => {
  let dataDir: string;
  let ledger: RunningLedger;
  let nats: NatsConnection;
  const organization = `n${randomBytes(5).toString('hex')}`;

  beforeAll(async () => {
    dataDir = newDataDir();
    ledger = await startLedger(dataDir);
    nats = await connect({ servers: 'nats://127.0.0.1:4222' });
  });
  afterAll(async () => {
    await nats.close();
    await ledger.close();
    removeDataDir(dataDir);
  });

  it('publishes each event of an organization to ledger.events.organization.{id}.{type}', async () => {
    await ledger.http
      .post('/v1/organizations')
      .send({ organizationId: organization, name: 'N', ownerUserId: 'u' })
      .expect(201);
    await ledger.http
      .post(`/v1/organizations/${organization}/grants`)
      .send({ grantId: 'g', amount: 10, source: 'plan' })
      .expect(201);
    const charged = await ledger.http
      .post('/v1/charm-runs')
      .send({ runId: 'r1', charmId: 'c', userId: 'u', amount: 3, organizationId: organization })
      .expect(201);

    const jsm = await jetstreamManager(nats);
    const subjects: string[] = [];
    const deadline = Date.now() + 10_000;
    while (subjects.length < 3 && Date.now() < deadline) {
      subjects.length = 0;
      const consumer = await jsm.consumers.add(LEDGER_EVENTS_STREAM, {
        filter_subject: `ledger.events.organization.${organization}.>`,
        ack_policy: AckPolicy.None,
        inactive_threshold: 5_000_000_000,
      });
      const messages = await (
        await jetstream(nats).consumers.get(LEDGER_EVENTS_STREAM, consumer.name)
      ).fetch({
        max_messages: 10,
        expires: 1000,
      });
      for await (const message of messages) {
        subjects.push(message.subject);
        if (message.subject.endsWith('CharmRunCharged')) {
          expect(message.json()).toMatchObject({
            type: 'CharmRunCharged',
            position: charged.body.position,
            data: { runId: 'r1', amount: 3 },
          });
        }
        if (message.info.pending === 0) break;
      }
    }
    expect(subjects).toEqual([
      `ledger.events.organization.${organization}.OrganizationCreated`,
      `ledger.events.organization.${organization}.CreditsGranted`,
      `ledger.events.organization.${organization}.CharmRunCharged`,
    ]);
    const health = await ledger.http.get('/health').expect(200);
    expect(health.body.checks.nats).toEqual({ status: 'up', required: false });
  });

  it('sends a LowBalance notice when available credits first fall below the threshold', async () => {
    const notices: unknown[] = [];
    const subscription = nats.subscribe(`ledger.alerts.${organization}.low-balance`, {
      callback: (_, message) => {
        notices.push(message.json());
      },
    });
    await nats.flush();
    await ledger.http
      .put(`/v1/organizations/${organization}/low-balance-threshold`)
      .send({ threshold: 5 })
      .expect(200);
    await ledger.http
      .post('/v1/charm-runs')
      .send({ runId: 'r2', charmId: 'c', userId: 'u', amount: 3, organizationId: organization })
      .expect(201);
    await ledger.http
      .post('/v1/charm-runs')
      .send({ runId: 'r3', charmId: 'c', userId: 'u', amount: 1, organizationId: organization })
      .expect(201);
    const deadline = Date.now() + 5000;
    while (notices.length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 300));
    subscription.unsubscribe();
    expect(notices).toEqual([
      expect.objectContaining({ organizationId: organization, threshold: 5, available: 4 }),
    ]);
  });

  it('starts and serves without NATS, reporting it in /health', async () => {
    const elsewhere = newDataDir();
    const offline = await startLedger(elsewhere, { env: { NATS_URL: 'nats://127.0.0.1:1' } });
    try {
      await offline.http
        .post('/v1/organizations')
        .send({ organizationId: 'solo', name: 'S', ownerUserId: 'u' })
        .expect(201);
      const health = await offline.http.get('/health').expect(200);
      expect(health.body.checks.nats).toEqual({ status: 'down', required: false });
    } finally {
      await offline.close();
      removeDataDir(elsewhere);
    }
  });
});

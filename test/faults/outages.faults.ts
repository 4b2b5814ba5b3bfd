import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { LedgerClient, LedgerClientError } from '../../src/client';
import { createTestDatabase } from '../support/postgres';
import { recordFigures } from './support/figures';
import {
  chargesIn,
  compareJetStream,
  Http,
  launchLedger,
  problemDefect,
  readJetStream,
  readStore,
  sleep,
  verifyReadModels,
  waitForNatsService,
  type HttpReply,
  type LedgerProcess,
} from './support/ledger';
import { TestNatsServer } from './support/nats-server';
import { TcpProxy } from './support/tcp-proxy';

const NATS_OUTAGE_MS = 30_000;
const POSTGRES_OUTAGE_MS = 10_000;

interface Charge {
  runId: string;
  organizationId: string;
  outcome: 'unknown' | 'acknowledged' | 'refused';
}

/** Tallies what a load loop sent and what came back. */
class Tally {
  sent = 0;
  acknowledged = 0;
  rejected = 0;
  readonly charges: Charge[] = [];
  readonly defects: string[] = [];

  note(defect: string) {
    if (this.defects.length < 20) this.defects.push(defect);
  }
}

const natsCharge = (charge: Charge) => ({
  runId: charge.runId,
  organizationId: charge.organizationId,
  charmId: 'c',
  userId: 'u',
  amount: 1,
});

describe('outages', () => {
  let nats: TestNatsServer;
  const dirs: string[] = [];
  const ledgers: LedgerProcess[] = [];
  const connections: NatsConnection[] = [];
  const databases: { drop: () => Promise<void> }[] = [];

  beforeAll(async () => {
    nats = await TestNatsServer.start();
  });

  afterAll(async () => {
    for (const connection of connections) await connection.close().catch(() => undefined);
    for (const ledger of ledgers) await ledger.stop();
    await nats?.dispose();
    for (const database of databases) await database.drop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const newDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'ledger-faults-outage-'));
    dirs.push(dir);
    return dir;
  };

  async function organization(http: Http, organizationId: string) {
    expect(
      (await http.post('/v1/organizations', { organizationId, name: 'O', ownerUserId: 'u' }))
        .status,
    ).toBe(201);
    expect(
      (
        await http.post(`/v1/organizations/${organizationId}/grants`, {
          grantId: 'g',
          amount: 100_000_000,
          source: 'plan',
        })
      ).status,
    ).toBe(201);
  }

  /** HTTP charges in a loop until `stop()`: every answer is recorded, none may be a 500. */
  function httpCharges(http: Http, organizationId: string, tally: Tally, workers: number) {
    let running = true;
    const loop = async () => {
      while (running) {
        const charge: Charge = {
          runId: `h-${tally.charges.length}`,
          organizationId,
          outcome: 'unknown',
        };
        tally.charges.push(charge);
        await sendCharge(http, charge, tally);
      }
    };
    const loops = Array.from({ length: workers }, loop);
    return async () => {
      running = false;
      await Promise.all(loops);
    };
  }

  async function sendCharge(http: Http, charge: Charge, tally: Tally) {
    tally.sent++;
    const reply = await http
      .post('/v1/charm-runs', {
        runId: charge.runId,
        charmId: 'c',
        userId: 'u',
        amount: 1,
        organizationId: charge.organizationId,
      })
      .catch((error: unknown) => String(error));
    if (typeof reply === 'string') return tally.note(`charge ${charge.runId}: ${reply}`);
    if (reply.status === 201 || reply.status === 200) {
      charge.outcome = 'acknowledged';
      tally.acknowledged++;
      return;
    }
    tally.rejected++;
    charge.outcome = 'refused';
    tally.note(`charge ${charge.runId}: ${reply.status} ${reply.text.slice(0, 200)}`);
  }

  /** Every acknowledged charge once in the stream; refused ones nowhere. */
  function checkCharges(dataDir: string, tally: Tally) {
    const charged = chargesIn(readStore(dataDir));
    let lost = 0;
    let doubled = 0;
    let phantom = 0;
    for (const charge of tally.charges) {
      const count = charged.get(`${charge.organizationId}/${charge.runId}`)?.count ?? 0;
      if (charge.outcome === 'acknowledged' && count === 0) lost++;
      if (charge.outcome === 'refused' && count > 0) phantom++;
      if (count > 1) doubled++;
    }
    return { lost, doubled, phantom };
  }

  it('NATS stopped for 30 s under load: HTTP serves on, NATS requests recover without a restart, JetStream gets everything', async () => {
    const dataDir = newDir();
    const database = await createTestDatabase();
    databases.push(database);
    const ledger = await launchLedger({
      dataDir,
      natsUrl: nats.url,
      databaseUrl: database.url,
      natsRequests: true,
    });
    ledgers.push(ledger);
    const http = new Http(ledger.url);
    await organization(http, 'away');
    // The client keeps trying for as long as the outage lasts (the default gives up sooner).
    const connection = await connect({
      servers: nats.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 200,
    });
    connections.push(connection);
    await waitForNatsService(connection);
    const client = new LedgerClient(connection, { timeoutMs: 2000 });

    const tally = new Tally();
    const natsCharges: Charge[] = [];
    let natsUp = true;
    let natsRecoveredAt: number | undefined;
    let natsRunning = true;
    const natsLoop = async () => {
      while (natsRunning) {
        const charge: Charge = {
          runId: `n-${natsCharges.length}`,
          organizationId: 'away',
          outcome: 'unknown',
        };
        natsCharges.push(charge);
        tally.charges.push(charge);
        tally.sent++;
        try {
          await client.charge(natsCharge(charge));
          charge.outcome = 'acknowledged';
          tally.acknowledged++;
          if (natsUp) natsRecoveredAt ??= Date.now();
        } catch (error) {
          if (error instanceof LedgerClientError) {
            charge.outcome = 'refused';
            tally.rejected++;
            tally.note(`NATS charge: ${error.code}`);
          } else await sleep(100); // no server: nothing reached the ledger
        }
      }
    };
    const stopHttp = httpCharges(http, 'away', tally, 8);
    const natsLoops = Array.from({ length: 8 }, natsLoop);

    await sleep(3000);
    await nats.stop();
    natsUp = false;
    const outageStarted = Date.now();
    await sleep(NATS_OUTAGE_MS / 2);
    const health = await http.get('/health');
    await sleep(NATS_OUTAGE_MS - (Date.now() - outageStarted));
    const restartedAt = Date.now();
    await nats.start();
    natsUp = true;
    natsRecoveredAt = undefined;
    const deadline = Date.now() + 30_000;
    while (natsRecoveredAt === undefined && Date.now() < deadline) await sleep(50);
    await sleep(2000);
    natsRunning = false;
    await Promise.all(natsLoops);
    await stopHttp();
    // What got no answer during the outage is sent again, as a client would.
    for (const charge of natsCharges.filter((c) => c.outcome === 'unknown')) {
      tally.sent++;
      await client.charge(natsCharge(charge));
      charge.outcome = 'acknowledged';
      tally.acknowledged++;
    }

    const events = readStore(dataDir);
    const published = await readJetStream(nats.url, events.length);
    const jetStreamLevelMs = Date.now() - restartedAt;
    const jetStream = compareJetStream(events, published);
    const { lost, doubled, phantom } = checkCharges(dataDir, tally);
    const { inconsistent } = await verifyReadModels(
      http,
      ['away'],
      events[events.length - 1].position,
    );
    const recoveryMs = (natsRecoveredAt ?? Infinity) - restartedAt;
    recordFigures({
      scenario: 'NATS away 30 s',
      sent: tally.sent,
      acknowledged: tally.acknowledged,
      rejected: tally.rejected,
      lost,
      doubled: doubled + jetStream.repeated,
      recoveryMs,
      recovery: `first NATS reply after the server is back; JetStream level ${jetStreamLevelMs} ms`,
    });

    expect(health.status).toBe(200);
    expect((health.body as { checks: { nats: { status: string } } }).checks.nats.status).toBe(
      'down',
    );
    expect(tally.defects).toEqual([]);
    expect(natsRecoveredAt).toBeDefined();
    expect(lost).toBe(0);
    expect(doubled).toBe(0);
    expect(phantom).toBe(0);
    expect(jetStream).toEqual({ missing: 0, repeated: 0, unknown: 0 });
    expect(inconsistent).toEqual([]);
    // HTTP kept answering through the outage.
    expect(tally.charges.filter((c) => c.runId.startsWith('h-')).length).toBeGreaterThan(1000);
    const after = await http.get('/health');
    expect((after.body as { checks: { nats: { status: string } } }).checks.nats.status).toBe('up');
    await ledger.stop();
  }, 180_000);

  it('PostgreSQL (read models) cut off: reads answer 503 UNAVAILABLE with Retry-After, writes go on, read models recover without a restart', async () => {
    const dataDir = newDir();
    const database = await createTestDatabase();
    databases.push(database);
    const target = new URL(database.url);
    const proxy = new TcpProxy(target.hostname, Number(target.port || 5432));
    await proxy.start();
    const proxied = new URL(database.url);
    proxied.host = `127.0.0.1:${proxy.port}`;
    const ledger = await launchLedger({
      dataDir,
      natsUrl: nats.url,
      databaseUrl: proxied.toString(),
    });
    ledgers.push(ledger);
    const http = new Http(ledger.url);
    await organization(http, 'cut');

    const tally = new Tally();
    const stopHttp = httpCharges(http, 'cut', tally, 8);
    // Reads that need the read models, and the answers they got while PostgreSQL was away.
    const readPaths = [
      '/v1/organizations/cut',
      '/v1/organizations/cut/members',
      '/v1/organizations/cut/usage?groupBy=charm',
      '/v1/users/u/organizations',
    ];
    let phase: 'before' | 'cut' | 'after' = 'before';
    const readAnswers: { phase: string; path: string; reply: HttpReply }[] = [];
    let reading = true;
    const readLoop = async () => {
      for (let i = 0; reading; i++) {
        const path = readPaths[i % readPaths.length];
        const at = phase;
        const reply = await http.get(path).catch((error: unknown) => String(error));
        if (typeof reply === 'string') tally.note(`read ${path}: ${reply}`);
        else readAnswers.push({ phase: at, path, reply });
        await sleep(20);
      }
    };
    const readLoops = Array.from({ length: 4 }, readLoop);
    await sleep(2000);

    proxy.cut();
    phase = 'cut';
    await sleep(POSTGRES_OUTAGE_MS / 2);
    const health = await http.get('/health');
    const verifyDuringCut = await http.post('/v1/organizations/cut/audit/verify');
    await sleep(POSTGRES_OUTAGE_MS / 2);
    const acknowledgedDuringCut = tally.acknowledged;
    proxy.restore();
    const restoredAt = Date.now();
    phase = 'after';

    // Recovered: reads of the read models answer 200 again and the read models have caught
    // up with everything written during the cut (the load goes on meanwhile).
    const headAtRestore = readStore(dataDir).at(-1)!.position;
    let recoveredMs: number | undefined;
    while (Date.now() - restoredAt < 60_000) {
      const reply = await http.get(`/v1/organizations/cut/members?minPosition=${headAtRestore}`);
      if (reply.status === 200) {
        recoveredMs = Date.now() - restoredAt;
        break;
      }
    }
    await sleep(1000);
    reading = false;
    await Promise.all(readLoops);
    await stopHttp();

    const events = readStore(dataDir);
    const { lost, doubled, phantom } = checkCharges(dataDir, tally);
    const { inconsistent } = await verifyReadModels(http, ['cut'], events.at(-1)!.position);
    const cutAnswers = readAnswers.filter((a) => a.phase === 'cut');
    const badCutAnswers = cutAnswers
      .filter(
        (a) =>
          // A read already past its query when the cut came may still answer 200.
          a.reply.status !== 200 &&
          (a.reply.status !== 503 ||
            (a.reply.body as { code?: string }).code !== 'UNAVAILABLE' ||
            problemDefect(a.reply) !== undefined),
      )
      .map((a) => `${a.path}: ${a.reply.status} ${a.reply.text.slice(0, 200)}`);
    const serverErrors = readAnswers
      .filter((a) => a.reply.status >= 500 && a.reply.status !== 503)
      .map((a) => `${a.phase} ${a.path}: ${a.reply.status} ${a.reply.text.slice(0, 200)}`);
    recordFigures({
      scenario: 'PostgreSQL cut 10 s',
      sent: tally.sent + readAnswers.length + 2,
      acknowledged: tally.acknowledged + readAnswers.filter((a) => a.reply.status === 200).length,
      rejected: tally.rejected + readAnswers.filter((a) => a.reply.status !== 200).length + 2,
      lost,
      doubled,
      recoveryMs: recoveredMs ?? null,
      recovery: 'read models answer and have caught up after the cut',
    });
    await proxy.close();

    expect(serverErrors.slice(0, 5)).toEqual([]);
    expect(badCutAnswers.slice(0, 5)).toEqual([]);
    expect(cutAnswers.filter((a) => a.reply.status === 503).length).toBeGreaterThan(10);
    expect(health.status).toBe(503);
    expect(problemDefect(health)).toBeUndefined();
    expect(verifyDuringCut.status).toBe(503);
    expect(problemDefect(verifyDuringCut)).toBeUndefined();
    // Writes do not need the read models: charging went on during the cut.
    expect(tally.defects).toEqual([]);
    expect(acknowledgedDuringCut).toBeGreaterThan(100);
    expect(recoveredMs).toBeDefined();
    expect(lost).toBe(0);
    expect(doubled).toBe(0);
    expect(phantom).toBe(0);
    expect(inconsistent).toEqual([]);
    expect(ledger.running).toBe(true);
    await ledger.stop();
  }, 120_000);
});

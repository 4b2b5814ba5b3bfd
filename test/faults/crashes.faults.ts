import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { LedgerClient, LedgerClientError } from '../../src/client';
import { freePort } from '../support/service-process';
import { createTestDatabase } from '../support/postgres';
import { recordFigures } from './support/figures';
import {
  chargesIn,
  compareJetStream,
  Http,
  launchLedger,
  readJetStream,
  readStore,
  sleep,
  verifyReadModels,
  within,
  type LedgerOptions,
  type LedgerProcess,
  type StoredEvent,
} from './support/ledger';
import { TestNatsServer } from './support/nats-server';
import { random } from './support/random';

const KILLS = 20;
/** Rounds where the process dies at a crash point instead of a SIGKILL from the test. */
const CRASH_POINTS: Record<number, string> = {
  4: 'group-commit:after-append',
  9: 'transfer:after-out',
  13: 'group-commit:after-append',
  17: 'transfer:after-out',
};
const WORKERS = 48;
const ORGANIZATIONS = ['hot', 'crash-1', 'crash-2', 'crash-3', 'crash-4'];

interface Operation {
  kind: 'charge' | 'transfer';
  organizationId: string;
  id: string;
  amount: number;
  toOrganizationId?: string;
  outcome: 'unknown' | 'acknowledged' | 'refused';
  /** The round of the latest attempt. */
  lastRound?: number;
}

/**
 * The service killed 20 times under load: 16 SIGKILLs at random moments, two at the crash
 * point after a group commit's write (durable, nobody answered yet) and two between the two
 * writes of a transfer. After each kill it is started again on the same files, and the clients
 * retry whatever got no answer, as real clients would.
 */
describe('crashes', () => {
  let nats: TestNatsServer;
  let database: { url: string; drop: () => Promise<void> };
  let dataDir: string;
  let options: LedgerOptions;
  let ledger: LedgerProcess | undefined;
  const connections: NatsConnection[] = [];

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    database = await createTestDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'ledger-faults-crashes-'));
    options = {
      dataDir,
      natsUrl: nats.url,
      databaseUrl: database.url,
      natsRequests: true,
      port: await freePort(),
      grpcPort: await freePort(),
    };
  });

  afterAll(async () => {
    for (const connection of connections) await connection.close();
    await ledger?.stop();
    await nats?.dispose();
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps every acknowledged charge and transfer exactly once across 20 kills', async () => {
    ledger = await launchLedger(options);
    const http = new Http(ledger.url);
    for (const organizationId of ORGANIZATIONS) {
      await http.post('/v1/organizations', { organizationId, name: 'C', ownerUserId: 'u' });
      await http.post(`/v1/organizations/${organizationId}/grants`, {
        grantId: 'g',
        amount: 100_000_000,
        source: 'plan',
      });
    }

    const clients: LedgerClient[] = [];
    for (let i = 0; i < 4; i++) {
      const connection = await connect({ servers: nats.url });
      connections.push(connection);
      clients.push(new LedgerClient(connection, { timeoutMs: 1500 }));
    }
    const next = random(20);
    const operations: Operation[] = [];
    const retries: Operation[] = [];
    let sent = 0;
    const unexpected: string[] = [];

    const newOperation = (transfers: boolean): Operation => {
      const roll = next();
      if (transfers && roll < 0.08) {
        const from = ORGANIZATIONS[1 + Math.floor(next() * 4)];
        const to = ORGANIZATIONS.filter((o) => o !== from)[Math.floor(next() * 4)];
        return {
          kind: 'transfer',
          organizationId: from,
          toOrganizationId: to,
          id: `t-${operations.length}`,
          amount: 1 + Math.floor(next() * 3),
          outcome: 'unknown',
        };
      }
      // Most charges go to one organization so that its batches are large.
      const organizationId = roll < 0.8 ? 'hot' : ORGANIZATIONS[1 + Math.floor(next() * 4)];
      return {
        kind: 'charge',
        organizationId,
        id: `r-${operations.length}`,
        amount: 1 + Math.floor(next() * 9),
        outcome: 'unknown',
      };
    };

    /** One attempt; an operation without an answer stays unknown and is retried later. */
    const attempt = async (operation: Operation, round: number) => {
      sent++;
      operation.lastRound = round;
      try {
        // The hot organization's charges come over NATS (several arrive in one read, so its
        // batches hold several commands); the rest over HTTP.
        if (operation.kind === 'charge' && operation.organizationId === 'hot') {
          const client = clients[sent % clients.length];
          try {
            await client.charge({
              runId: operation.id,
              charmId: 'c',
              userId: 'u',
              amount: operation.amount,
              organizationId: 'hot',
            });
            operation.outcome = 'acknowledged';
          } catch (error) {
            if (!(error instanceof LedgerClientError)) throw error;
            if (error.code === 'UNAVAILABLE') retries.push(operation);
            else {
              operation.outcome = 'refused';
              unexpected.push(`${operation.id}: ${error.code} ${error.message}`);
            }
          }
          return;
        }
        const reply =
          operation.kind === 'charge'
            ? await http.post('/v1/charm-runs', {
                runId: operation.id,
                charmId: 'c',
                userId: 'u',
                amount: operation.amount,
                organizationId: operation.organizationId,
              })
            : await http.post(`/v1/organizations/${operation.organizationId}/transfers`, {
                transferId: operation.id,
                toOrganizationId: operation.toOrganizationId,
                amount: operation.amount,
              });
        if (reply.status === 201 || reply.status === 200) operation.outcome = 'acknowledged';
        else if (reply.status === 503) retries.push(operation);
        else {
          operation.outcome = 'refused';
          unexpected.push(`${operation.id}: ${reply.status} ${reply.text.slice(0, 200)}`);
        }
      } catch {
        retries.push(operation);
      }
    };

    const restartMs: number[] = [];
    const stragglers: Promise<void>[] = [];
    const diedAfterDurable = new Map<number, Operation[]>();
    for (let round = 1; round <= KILLS; round++) {
      const crashAt = CRASH_POINTS[round];
      if (!ledger) {
        const started = Date.now();
        ledger = await launchLedger({ ...options, crashAt });
        restartMs.push(Date.now() - started);
      }
      const current: LedgerProcess = ledger;
      let over = false;
      void current.exited.then(() => (over = true));
      const worker = async () => {
        while (!over) {
          const retry = retries.shift();
          const operation = retry ?? newOperation(crashAt !== 'group-commit:after-append');
          if (!retry) operations.push(operation);
          await attempt(operation, round);
        }
      };
      const load = Array.from({ length: WORKERS }, worker);
      if (crashAt) {
        // The process kills itself at the crash point; it must get there.
        const reached = await within(
          current.exited.then(() => true),
          20_000,
          false,
        );
        if (!reached) over = true;
        expect({ round, crashAt, reached }).toEqual({ round, crashAt, reached: true });
      } else {
        await sleep(150 + Math.floor(next() * 1200));
        await current.kill();
      }
      await current.exited;
      expect(current.child.signalCode).toBe('SIGKILL');
      // Requests to the dead process end with their timeout; they are retried when they do,
      // and the next round need not wait for them.
      stragglers.push(...load);
      await Promise.race([Promise.all(load), sleep(200)]);
      if (crashAt === 'group-commit:after-append') {
        // Read the file as the crash left it: charges written that nobody was told about.
        const onDisk = chargesIn(readStore(dataDir));
        diedAfterDurable.set(
          round,
          operations.filter(
            (o) =>
              o.lastRound === round &&
              o.outcome === 'unknown' &&
              onDisk.has(`${o.organizationId}/${o.id}`),
          ),
        );
      }
      ledger = undefined;
    }

    // The last start: no kill. Clients retry until every operation has its answer.
    const started = Date.now();
    ledger = await launchLedger(options);
    restartMs.push(Date.now() - started);
    await Promise.all(stragglers);
    for (let pass = 0; retries.length > 0 && pass < 10; pass++) {
      await Promise.all(retries.splice(0).map((operation) => attempt(operation, KILLS + 1)));
    }
    const unanswered = operations.filter((o) => o.outcome === 'unknown');

    // Transfers cut between their two writes are finished by the service itself.
    let events: StoredEvent[] = [];
    const followUpStarted = Date.now();
    for (;;) {
      events = readStore(dataDir);
      const outs = events.filter((e) => e.type === 'CreditsTransferredOut').length;
      const ins = events.filter((e) => e.type === 'CreditsTransferredIn').length;
      if (outs === ins || Date.now() - followUpStarted > 30_000) break;
      await sleep(200);
    }
    const transferFinishedMs = Date.now() - followUpStarted;

    const charged = chargesIn(events);
    const transfersOut = new Map<string, number>();
    const transfersIn = new Map<string, number>();
    for (const event of events) {
      const key = `${String(event.data.transferId)}`;
      if (event.type === 'CreditsTransferredOut')
        transfersOut.set(key, (transfersOut.get(key) ?? 0) + 1);
      if (event.type === 'CreditsTransferredIn')
        transfersIn.set(key, (transfersIn.get(key) ?? 0) + 1);
    }
    let lost = 0;
    let doubled = 0;
    for (const operation of operations) {
      if (operation.outcome !== 'acknowledged') continue;
      const count =
        operation.kind === 'charge'
          ? (charged.get(`${operation.organizationId}/${operation.id}`)?.count ?? 0)
          : (transfersOut.get(operation.id) ?? 0);
      if (count === 0) lost++;
      if (count > 1) doubled++;
    }
    const transfersHalfDone = [...transfersOut.keys()].filter((id) => transfersIn.get(id) !== 1);
    doubled += [...transfersIn.values()].filter((n) => n > 1).length;
    // Kills after a group commit's write: charges that are in the stream although their
    // callers never got an answer (they got one on retry, as a replay).
    const durableUnanswered = [...diedAfterDurable.values()].flat();
    const durableAnsweredOnRetry = durableUnanswered.filter((o) => o.outcome === 'acknowledged');

    const head = events[events.length - 1].position;
    const { inconsistent, convergedMs } = await verifyReadModels(http, ORGANIZATIONS, head);
    const published = await readJetStream(nats.url, events.length);
    const jetStream = compareJetStream(events, published);

    const acknowledged = operations.filter((o) => o.outcome === 'acknowledged').length;
    recordFigures({
      scenario: `crashes (${KILLS} kills)`,
      sent,
      acknowledged,
      rejected: operations.filter((o) => o.outcome === 'refused').length,
      lost,
      doubled: doubled + jetStream.repeated,
      recoveryMs: Math.max(...restartMs, transferFinishedMs, convergedMs),
      recovery: `restart to healthy, worst of ${restartMs.length}; read models level`,
    });
    process.stdout.write(
      `crashes: ${operations.length} operations, restarts ${restartMs.join(' ')} ms, ` +
        `${durableUnanswered.length} charges durable but unanswered at a group-commit kill, ` +
        `read models level ${convergedMs} ms, transfers finished ${transferFinishedMs} ms\n`,
    );

    expect(unexpected).toEqual([]);
    expect(unanswered.map((o) => o.id)).toEqual([]);
    expect(lost).toBe(0);
    expect(doubled).toBe(0);
    expect(transfersHalfDone).toEqual([]);
    expect(transfersOut.size).toBeGreaterThan(0);
    expect(durableUnanswered.length).toBeGreaterThan(0);
    expect(durableAnsweredOnRetry).toEqual(durableUnanswered);
    expect(inconsistent).toEqual([]);
    expect(jetStream).toEqual({ missing: 0, repeated: 0, unknown: 0 });
  }, 400_000);
});

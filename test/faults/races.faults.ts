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
  readJetStream,
  readStore,
  verifyReadModels,
  waitForNatsService,
  type LedgerProcess,
} from './support/ledger';
import { TestNatsServer } from './support/nats-server';
import { random } from './support/random';

const CHARGES = 20_000;
const ORGANIZATIONS = 40;
/** Each organization can pay about half of what is asked of it: credits run out midway. */
const GRANT = 700;
const NATS_CONNECTIONS = 8;
const IN_FLIGHT = 200;

interface Run {
  organizationId: string;
  runId: string;
  amount: number;
  copies: number;
}

type Reply = 'created' | 'replayed' | 'refused' | `unexpected: ${string}`;

/**
 * 20,000 charges over NATS and HTTP from many connections; one charge in ten is sent two or
 * three times at once (same runId, different connections); every organization runs out of
 * credits halfway. Our own record of every reply is checked against the streams, the read
 * models and JetStream.
 */
describe('races and retries', () => {
  let nats: TestNatsServer;
  let database: { url: string; drop: () => Promise<void> };
  let dataDir: string;
  let ledger: LedgerProcess;
  const connections: NatsConnection[] = [];

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    database = await createTestDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'ledger-faults-races-'));
    ledger = await launchLedger({
      dataDir,
      natsUrl: nats.url,
      databaseUrl: database.url,
      natsRequests: true,
    });
    for (let i = 0; i < NATS_CONNECTIONS; i++)
      connections.push(await connect({ servers: nats.url }));
    await waitForNatsService(connections[0]);
  });

  afterAll(async () => {
    for (const connection of connections) await connection.close();
    await ledger?.stop();
    await nats?.dispose();
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('charges every acknowledged runId exactly once, refuses the rest, never below zero', async () => {
    const http = new Http(ledger.url);
    const organizations = Array.from({ length: ORGANIZATIONS }, (_, i) => `race-${i}`);
    for (const organizationId of organizations) {
      expect(
        (await http.post('/v1/organizations', { organizationId, name: 'R', ownerUserId: 'u' }))
          .status,
      ).toBe(201);
      expect(
        (
          await http.post(`/v1/organizations/${organizationId}/grants`, {
            grantId: 'g',
            amount: GRANT,
            source: 'plan',
          })
        ).status,
      ).toBe(201);
    }

    const next = random(8);
    const runs: Run[] = [];
    for (let sent = 0; sent < CHARGES;) {
      const copies = next() < 0.1 ? 2 + Math.floor(next() * 2) : 1;
      const take = Math.min(copies, CHARGES - sent);
      runs.push({
        organizationId: organizations[Math.floor(next() * ORGANIZATIONS)],
        runId: `run-${runs.length}`,
        amount: 1 + Math.floor(next() * 5),
        copies: take,
      });
      sent += take;
    }

    const clients = connections.map((c) => new LedgerClient(c, { timeoutMs: 60_000 }));
    // Channels 0..7 are NATS connections, 8 is HTTP: the copies of one run take different ones.
    const channels = NATS_CONNECTIONS + 1;
    const send = async (run: Run, channel: number): Promise<Reply> => {
      const body = {
        runId: run.runId,
        charmId: 'c',
        userId: 'u',
        amount: run.amount,
        organizationId: run.organizationId,
      };
      if (channel < NATS_CONNECTIONS) {
        try {
          const reply = await clients[channel].charge(body);
          if (reply.charged !== run.amount) return `unexpected: charged ${reply.charged}`;
          return reply.replayed ? 'replayed' : 'created';
        } catch (error) {
          if (error instanceof LedgerClientError && error.code === 'INSUFFICIENT_CREDITS')
            return 'refused';
          return `unexpected: ${String(error)}`;
        }
      }
      const reply = await http.post('/v1/charm-runs', body);
      if (reply.status === 201) return 'created';
      if (reply.status === 200 && (reply.body as { replayed?: boolean }).replayed)
        return 'replayed';
      if (reply.status === 402) return 'refused';
      return `unexpected: HTTP ${reply.status} ${reply.text.slice(0, 200)}`;
    };

    const replies = new Map<Run, Reply[]>();
    let cursor = 0;
    const worker = async () => {
      while (cursor < runs.length) {
        const index = cursor++;
        const run = runs[index];
        // All copies at once, each on its own connection.
        replies.set(
          run,
          await Promise.all(
            Array.from({ length: run.copies }, (_, copy) => send(run, (index + copy) % channels)),
          ),
        );
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));

    const events = readStore(dataDir);
    const charged = chargesIn(events);
    let acknowledged = 0;
    let rejected = 0;
    let lost = 0;
    let doubled = 0;
    const unexpected: string[] = [];
    const phantoms: string[] = [];
    const disagreements: string[] = [];
    for (const [run, answers] of replies) {
      const key = `${run.organizationId}/${run.runId}`;
      const inStream = charged.get(key);
      const created = answers.filter((a) => a === 'created').length;
      const acks = created + answers.filter((a) => a === 'replayed').length;
      const refusals = answers.filter((a) => a === 'refused').length;
      acknowledged += acks;
      rejected += refusals;
      unexpected.push(
        ...answers.filter((a) => a.startsWith('unexpected')).map((a) => `${key} ${a}`),
      );
      if (created > 1 || (inStream?.count ?? 0) > 1) doubled++;
      if (acks > 0 && !inStream) lost++;
      if (acks === 0 && inStream) phantoms.push(key);
      if (acks > 0 && refusals > 0) disagreements.push(key);
      if (inStream && inStream.amount !== run.amount) disagreements.push(`${key} amount`);
    }
    const planned = new Set(runs.map((run) => `${run.organizationId}/${run.runId}`));
    const strangers = [...charged.keys()].filter((key) => !planned.has(key));

    // The books of each organization, folded in stream order: never below zero.
    const belowZero: string[] = [];
    const spent = new Map<string, number>();
    for (const event of events) {
      if (event.type !== 'CharmRunCharged') continue;
      const organizationId = event.streamId.replace(/^organization-/, '');
      const total = (spent.get(organizationId) ?? 0) + (event.data.amount as number);
      spent.set(organizationId, total);
      if (total > GRANT) belowZero.push(`${organizationId} at revision ${event.revision}`);
    }
    const refusedSomewhere = new Set(
      [...replies].filter(([, a]) => a.includes('refused')).map(([run]) => run.organizationId),
    );
    const balances = await Promise.all(
      organizations.map(async (organizationId) => {
        const reply = await http.get(`/v1/organizations/${organizationId}/balance`);
        return { organizationId, available: (reply.body as { available: number }).available };
      }),
    );

    const head = events[events.length - 1].position;
    const { inconsistent, convergedMs } = await verifyReadModels(http, organizations, head);
    const published = await readJetStream(nats.url, events.length);
    const jetStream = compareJetStream(events, published);

    recordFigures({
      scenario: 'races and retries',
      sent: CHARGES,
      acknowledged,
      rejected,
      lost,
      doubled: doubled + jetStream.repeated,
      recoveryMs: convergedMs,
      recovery: 'read models level after the last reply',
    });

    expect(unexpected.slice(0, 5)).toEqual([]);
    expect(acknowledged + rejected).toBe(CHARGES);
    expect(lost).toBe(0);
    expect(doubled).toBe(0);
    expect(phantoms).toEqual([]);
    expect(disagreements).toEqual([]);
    expect(strangers).toEqual([]);
    expect(belowZero).toEqual([]);
    // Credits ran out midway everywhere: some charges were refused in every organization.
    expect(refusedSomewhere.size).toBe(ORGANIZATIONS);
    for (const { organizationId, available } of balances) {
      expect({ organizationId, available }).toEqual({
        organizationId,
        available: GRANT - (spent.get(organizationId) ?? 0),
      });
      expect(available).toBeGreaterThanOrEqual(0);
    }
    expect(inconsistent).toEqual([]);
    expect(jetStream).toEqual({ missing: 0, repeated: 0, unknown: 0 });
  }, 300_000);
});

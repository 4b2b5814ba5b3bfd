/**
 * The floor: the I/O that API.md makes every charge do, and nothing else. It answers
 * `ledger.charm-runs.charge` in queue group `ledger` once the charge's `CharmRunCharged` is
 * durable in the ledger's own SQLite event store (its writer thread, group commit, fsync),
 * and the ledger's own JetStream publisher sends every event to LEDGER_EVENTS from a thread
 * of its own. Left out: NestJS, validation, deciding and the organization's state (balance,
 * idempotency, grants), snapshots, read models, metrics.
 *
 * The bench drives it with the same load as the service: what the service costs above it is
 * the ledger's own work, and a throughput above the floor's CPU ceiling in a run is out of
 * reach there for the ledger too, which does more with the same store and publisher (the
 * floor's throughput is not such a bound: it waits on round trips too). With
 * `does: 'nats-only'` it answers at once and does nothing else. Prints `ready` once it takes
 * requests; on SIGTERM it waits until JetStream has every event, closes and exits.
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { connect, type Msg } from '@nats-io/transport-node';
import { v7 as timeOrderedUuid } from 'uuid';
import type { NewEvent } from '../../src/event-store/event-store';
import type { Actor } from '../../src/ledger/actor';
import { SqliteEventStore } from '../../src/event-store/sqlite/sqlite-event-store';
import { runMain } from '../support/stats';

export interface FloorOptions {
  natsUrl: string;
  dataDir: string;
  /**
   * `contract` (the default): the reply once the event is durable, and the event to
   * JetStream. `nats-only`: the reply at once, nothing stored or published; what the load,
   * NATS and the machine add by themselves.
   */
  does?: 'contract' | 'nats-only';
}

interface Charge {
  runId: string;
  charmId: string;
  userId: string;
  amount: number;
  organizationId: string;
}

const actor: Actor = { kind: 'service', id: 'nats' };

function chargedEvent(charge: Charge): NewEvent {
  const eventId = timeOrderedUuid();
  return {
    eventId,
    type: 'CharmRunCharged',
    data: {
      runId: charge.runId,
      charmId: charge.charmId,
      userId: charge.userId,
      amount: charge.amount,
      allocations: [{ grantId: 'bench', amount: charge.amount }],
    },
    metadata: {
      eventId,
      occurredAt: new Date().toISOString(),
      actor,
      correlationId: eventId,
      causationId: eventId,
    },
  };
}

function reply(charge: Charge, position: bigint): string {
  return JSON.stringify({
    ok: true,
    runId: charge.runId,
    organizationId: charge.organizationId,
    charged: charge.amount,
    balance: { available: 0 },
    position: position.toString(),
  });
}

async function answerAtOnce(natsUrl: string): Promise<void> {
  const nc = await connect({ servers: natsUrl });
  nc.subscribe('ledger.charm-runs.charge', {
    queue: 'ledger',
    callback: (error, message) => {
      if (!error) message.respond(reply(JSON.parse(message.string()) as Charge, 0n));
    },
  });
  await nc.flush();
  process.stdout.write('ready\n');
  await new Promise((resolve) => process.once('SIGTERM', resolve));
  await nc.drain();
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2]) as FloorOptions;
  if (options.does === 'nats-only') return answerAtOnce(options.natsUrl);
  // As the service opens it (open-event-store.ts).
  const store = new SqliteEventStore(join(options.dataDir, 'events.sqlite'), {
    walCheckpoints: 'background',
    writes: 'thread',
  });
  const publisher = new Worker(join(__dirname, 'publisher.worker.js'), { workerData: options });
  await new Promise((resolve, reject) => {
    publisher.once('message', resolve);
    publisher.once('error', reject);
  });
  const nc = await connect({ servers: options.natsUrl });

  // A turn's charges, by organization: one append each, all of them in one commit.
  let waiting = new Map<string, { message: Msg; charge: Charge }[]>();
  const appendWaiting = () => {
    const turn = waiting;
    waiting = new Map();
    for (const [organizationId, charges] of turn) {
      const events = charges.map(({ charge }) => chargedEvent(charge));
      store.appendToStream(`organization-${organizationId}`, events, 'any').then(
        ({ position }) => {
          for (const { message, charge } of charges) message.respond(reply(charge, position));
        },
        (error: unknown) => {
          const refusal = { ok: false, error: { code: 'UNAVAILABLE', message: String(error) } };
          for (const { message } of charges) message.respond(JSON.stringify(refusal));
        },
      );
    }
  };
  nc.subscribe('ledger.charm-runs.charge', {
    queue: 'ledger',
    callback: (error, message) => {
      if (error) return;
      const charge = JSON.parse(message.string()) as Charge;
      const charges = waiting.get(charge.organizationId);
      if (charges) charges.push({ message, charge });
      else {
        if (waiting.size === 0) setImmediate(appendWaiting);
        waiting.set(charge.organizationId, [{ message, charge }]);
      }
    },
  });
  await nc.flush();
  process.stdout.write('ready\n');

  await new Promise((resolve) => process.once('SIGTERM', resolve));
  await nc.drain();
  const head = await store.headPosition();
  publisher.postMessage(head.toString());
  await new Promise((resolve) => publisher.once('exit', resolve));
  await store.close();
}

runMain(main);

/**
 * The floor's publishing thread (see contract-io.ts): the ledger's JetStream publisher over a
 * reader of the store, as on the service's read side, without the projections. Its
 * checkpoint starts at 0 in memory: the floor's store is new every run. Told the store's
 * head, it stops once JetStream has acknowledged everything up to it.
 */
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { connect } from '@nats-io/transport-node';
import { SqliteEventStore } from '../../src/event-store/sqlite/sqlite-event-store';
import { loadConfig } from '../../src/config/config';
import { JetStreamPublisher } from '../../src/nats/jetstream-publisher';
import { nameThisThread, THREAD_NAMES } from '../../src/threads/thread-name';
import { lowerThisThreadsPriority } from '../../src/threads/thread-priority';
import type { FloorOptions } from './contract-io';

// Named as the service's read side, so that the bench shows its CPU time the same way, and
// behind the request thread as the service's is by default (LEDGER_READ_SIDE_NICE).
nameThisThread(THREAD_NAMES.readSide);
lowerThisThreadsPriority(loadConfig({}).readSideNice);
const port = parentPort!;
const options = workerData as FloorOptions;

async function publish() {
  const store = new SqliteEventStore(join(options.dataDir, 'events.sqlite'), {
    integrityCheck: false,
  });
  const nc = await connect({ servers: options.natsUrl });
  let saved = 0n;
  const publisher = new JetStreamPublisher(
    store,
    { load: async () => saved, save: async (position) => void (saved = position) },
    () => nc,
    { onError: (error) => process.stderr.write(`floor: publishing failed: ${String(error)}\n`) },
  );
  await publisher.start();
  port.once('message', (head: string) => {
    void (async () => {
      while (publisher.position < BigInt(head)) await delay(10);
      await publisher.stop();
      await nc.close();
      await store.close();
      process.exit(0);
    })();
  });
  port.postMessage('ready');
}

void publish();

import { parentPort, workerData } from 'node:worker_threads';
import type { NatsConnection } from '@nats-io/transport-node';
import { PROJECTIONS } from '../../projections';
import type { LedgerConfig } from '../config/config';
import { openEventStore } from '../event-store/open-event-store';
import { connectWhenReachable } from '../nats/connection';
import { ledgerPublisher } from '../nats/jetstream-publisher';
import { nameThisThread, THREAD_NAMES } from '../threads/thread-name';
import { lowerThisThreadsPriority } from '../threads/thread-priority';
import { crashAt } from '../write/crash-at';
import { raiseCheckpointValve, readModelDataSource } from './read-model-database';
import { ProjectionRunner } from './projection-runner';
import type { ReadSideOrder, ReadSideReport } from './read-side-thread';

/**
 * The read side's thread (see ReadSideThread): the projection runner and the JetStream
 * publisher, on connections of their own. Logs go to the service, which writes them.
 */
nameThisThread(THREAD_NAMES.readSide);
const port = parentPort!;
const { config } = workerData as { config: LedgerConfig };
// Behind the request thread when both want a core: hot bench, 5 rounds alternated, 10,454-
// 11,890 charges/s at the same priority against 11,317-12,380 at nice 10, with the read
// models at most 822 events behind (about 70 ms; 480 at the same priority); latency at
// 5,500/s unchanged.
lowerThisThreadsPriority(config.readSideNice);
const report = (message: ReadSideReport) => port.postMessage(message);
const log = (level: 'log' | 'warn' | 'error', message: string) =>
  report({ kind: 'log', level, message });

async function runReadSide() {
  const store = await openEventStore(config, { reader: true });
  const database = await readModelDataSource(config, { migrate: false }).initialize();
  // The service's checkpointer thread copies the log back: one such thread per process.
  await raiseCheckpointValve(database);
  let connection: NatsConnection | undefined;
  let stopping = false;
  const publisher = ledgerPublisher(
    store,
    database,
    () => connection,
    config,
    (error) => log('warn', `publishing to JetStream failed, will retry: ${String(error)}`),
  );
  const runner = new ProjectionRunner(store, database, PROJECTIONS, {
    beforeCheckpoint: () => crashAt(config, 'projection:before-checkpoint'),
    onError: (error) => log('error', `projection batch failed, will retry: ${String(error)}`),
    // The events the projections read are the publisher's next ones: read once, for both.
    onRead: (after, events) => publisher.offer(after, events),
  });
  runner.progress.onAdvance((position) =>
    report({ kind: 'progress', position: position.toString() }),
  );
  await runner.start();
  await publisher.start();
  const connecting = connectWhenReachable(
    config,
    'ledger-read-side',
    () => stopping,
    (message) => log('warn', message),
  ).then((connected) => (connection = connected));
  report({ kind: 'ready', position: runner.position.toString() });

  port.on('message', (order: ReadSideOrder) => {
    if (order.kind === 'wake') runner.lookNow();
    if (order.kind === 'stop' && !stopping) {
      stopping = true;
      void (async () => {
        await runner.stop();
        await publisher.stop();
        await connecting;
        await connection?.close();
        await database.destroy();
        await store.close();
        process.exit(0);
      })();
    }
  });
}

// A failure to start is unhandled here on purpose: the service sees it as the thread's error.
void runReadSide();

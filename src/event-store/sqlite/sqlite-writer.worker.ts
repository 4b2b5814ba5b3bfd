import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { nameThisThread, THREAD_NAMES } from '../../threads/thread-name';
import {
  prepareWriteConnection,
  SqliteWriter,
  type WriteConnectionOptions,
  type WriterOrder,
} from './sqlite-writer';

/** The event store's writer thread (see SqliteWriterThread). */
nameThisThread(THREAD_NAMES.eventStoreWriter);
const options = workerData as WriteConnectionOptions & { filename: string };
const db = new Database(options.filename);
prepareWriteConnection(db, options);
const writer = new SqliteWriter(db, options.durable);
const port = parentPort!;

port.on('message', (order: WriterOrder) => {
  if ('close' in order) {
    db.close();
    port.close();
    return;
  }
  port.postMessage(writer.write(order.batch));
});

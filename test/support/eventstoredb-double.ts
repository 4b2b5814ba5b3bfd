// Starts the in-memory EventStoreDB double (./eventstoredb-double/) in a child process.
// A forked process cannot use Jest's TypeScript transform, so its sources are compiled with swc
// into a temporary folder that links the project's node_modules.
import { fork, type ChildProcess } from 'node:child_process';
import { compileForChild } from './compile-for-child';

export interface EventStoreDbDouble {
  /** e.g. `esdb://127.0.0.1:PORT?tls=false` for EventStoreDBClient.connectionString */
  connectionString: string;
  /** Ends every live subscription call as a dropped connection would; resolves with how many. */
  dropSubscriptions(): Promise<number>;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 15_000;

interface Reply {
  ready?: boolean;
  port?: number;
  dropped?: number;
  id?: number;
}

// Children still running when the test process exits are killed with it.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startEventStoreDbDouble(): Promise<EventStoreDbDouble> {
  const compiled = await compileForChild(['test/support/eventstoredb-double']);
  const child = fork(compiled.pathOf('test/support/eventstoredb-double/main.ts'), ['0'], {
    execArgv: [],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  running.add(child);
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => running.delete(child));

  const cleanUp = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(kill);
    await compiled.remove();
  };

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`EventStoreDB double did not start:\n${output}`)),
        START_TIMEOUT_MS,
      );
      child.on('message', (reply: Reply) => {
        if (reply.ready && reply.port) {
          clearTimeout(timer);
          resolve(reply.port);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`EventStoreDB double exited with ${code}:\n${output}`));
      });
    });
  } catch (error) {
    await cleanUp();
    throw error;
  }

  let nextId = 0;
  const pending = new Map<number, (dropped: number) => void>();
  child.on('message', (reply: Reply) => {
    if (reply.dropped === undefined || reply.id === undefined) return;
    pending.get(reply.id)?.(reply.dropped);
    pending.delete(reply.id);
  });

  return {
    connectionString: `esdb://127.0.0.1:${port}?tls=false`,
    dropSubscriptions: () =>
      new Promise<number>((resolve, reject) => {
        if (!child.connected) return reject(new Error('EventStoreDB double is not running'));
        const id = (nextId += 1);
        pending.set(id, resolve);
        child.send({ drop: true, id });
      }),
    stop: cleanUp,
  };
}

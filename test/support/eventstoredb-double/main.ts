// Runs the EventStoreDB double in its own process, driven by its parent over IPC:
// it sends {ready, port}; {drop: true, id?} answers {dropped, id?}; {stop: true} exits.
// It exits when the parent goes away, so a crashed test run cannot leave it behind.
import { startDoubleServer } from './server';

interface Command {
  drop?: boolean;
  stop?: boolean;
  id?: number;
}

async function main() {
  const port = Number(process.argv[2] ?? process.env.ESDB_DOUBLE_PORT ?? 0);
  const server = await startDoubleServer(port);
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    void server.stop().finally(() => process.exit(0));
  };
  process.on('message', (command: Command) => {
    if (command.drop) process.send?.({ dropped: server.dropSubscriptions(), id: command.id });
    if (command.stop) shutdown();
  });
  process.on('disconnect', shutdown);
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  if (process.send) process.send({ ready: true, port: server.port });
  else console.log(`EventStoreDB double listening on 127.0.0.1:${server.port}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

/**
 * The baseline: the usual SQL ledger, a row per balance updated under its row lock
 * (`UPDATE balance SET amount = amount - $1 WHERE org = $2 AND amount >= $1`), each charge
 * its own committed transaction, from `concurrency` clients through `pg`. Same output as
 * the NATS load process.
 */
import { Client } from 'pg';
import { Latencies, printReport, runMain } from '../support/stats';

interface Options {
  databaseUrl: string;
  organizations: number;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2]) as Options;
  const setup = new Client({ connectionString: options.databaseUrl });
  await setup.connect();
  await setup.query('DROP TABLE IF EXISTS balance');
  await setup.query('CREATE TABLE balance (org text PRIMARY KEY, amount bigint NOT NULL)');
  await setup.query(
    `INSERT INTO balance SELECT 'org-' || i, 1000000000000 FROM generate_series(0, $1 - 1) AS i`,
    [options.organizations],
  );
  await setup.end();

  const clients = await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      const client = new Client({ connectionString: options.databaseUrl });
      await client.connect();
      return client;
    }),
  );
  const latencies = new Latencies();
  const started = performance.now();
  const measureFrom = started + options.warmupMs;
  const stopAt = measureFrom + options.durationMs;
  const counts = { completed: 0, ok: 0, rejected: 0, failed: 0 };
  let sequence = 0;
  let charged = 0;
  await Promise.all(
    clients.map(async (client) => {
      while (performance.now() < stopAt) {
        const org = `org-${sequence++ % options.organizations}`;
        const sent = performance.now();
        const result = await client.query(
          'UPDATE balance SET amount = amount - $1 WHERE org = $2 AND amount >= $1',
          [1, org],
        );
        const done = performance.now();
        if (result.rowCount === 1) charged += 1;
        if (sent >= measureFrom && done <= stopAt) {
          counts.completed += 1;
          counts[result.rowCount === 1 ? 'ok' : 'rejected'] += 1;
          latencies.add(done - sent);
        }
      }
    }),
  );
  await Promise.all(clients.map((client) => client.end()));
  const seconds = options.durationMs / 1000;
  printReport(counts, seconds, latencies, charged);
}

runMain(main);

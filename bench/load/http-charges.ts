/**
 * Load process: `POST /v1/charm-runs` from 64 connections with autocannon, a fresh runId per
 * request. Prints one JSON LoadReport line (charged: credits of the 201 answers).
 */
import autocannon from 'autocannon';
import { type LoadReport, ownCpuSeconds, runMain } from '../support/stats';

interface Options {
  url: string;
  token: string;
  organizationId: string;
  userId: string;
  connections: number;
  warmupMs: number;
  durationMs: number;
  runPrefix: string;
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2]) as Options;
  let sequence = 0;
  let created = 0;
  const run = (seconds: number) =>
    autocannon({
      url: options.url,
      connections: options.connections,
      duration: seconds,
      headers: { authorization: `Bearer ${options.token}`, 'content-type': 'application/json' },
      requests: [
        {
          method: 'POST',
          path: '/v1/charm-runs',
          setupRequest: (request) => ({
            ...request,
            body: JSON.stringify({
              runId: `${options.runPrefix}-${sequence++}`,
              charmId: 'charm-http',
              userId: options.userId,
              amount: 1,
              organizationId: options.organizationId,
            }),
          }),
          onResponse: (status) => {
            if (status === 201) created += 1;
          },
        },
      ],
    });
  await run(Math.max(1, Math.round(options.warmupMs / 1000)));
  const createdBefore = created;
  const result = await run(Math.max(1, Math.round(options.durationMs / 1000)));
  const ok = created - createdBefore;
  const report: LoadReport = {
    completed: result.requests.total,
    ok,
    rejected: result.non2xx,
    failed: result.errors + result.timeouts,
    seconds: result.duration,
    throughput: ok / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    charged: created,
    cpuSeconds: ownCpuSeconds(),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

runMain(main);

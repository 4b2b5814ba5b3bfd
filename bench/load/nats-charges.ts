/**
 * Load process: charges over NATS request/reply (`ledger.charm-runs.charge`). Closed loop
 * (`concurrency` requesters, each sends when its last reply came) or open loop (a fixed
 * `ratePerSecond`, so a late reply does not delay the next request and queueing shows).
 * Prints one JSON LoadReport line at the end.
 */
import { connect } from '@nats-io/transport-node';
import { InboxRequests } from '../../src/nats/inbox-requests';
import { Latencies, printReport, runMain } from '../support/stats';

interface Options {
  natsUrl: string;
  /** The organizations to charge, in turn; or `organizationCount` ids `${organizationPrefix}${i}`. */
  organizations?: string[];
  organizationPrefix?: string;
  organizationCount?: number;
  userId: string;
  concurrency: number;
  ratePerSecond?: number;
  warmupMs: number;
  durationMs: number;
  /** Stop sending after this many requests, even if time is left. */
  stopAfter?: number;
  runPrefix: string;
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2]) as Options;
  const count = options.organizations?.length ?? options.organizationCount ?? 0;
  const organization = (n: number) =>
    options.organizations?.[n % count] ?? `${options.organizationPrefix}${n % count}`;
  const nc = await connect({ servers: options.natsUrl, maxPingOut: 10 });
  // Replies on one inbox, as the service's JetStream publisher: nats-core's request() costs
  // this process a stack trace, a timer and a deferred per charge, and in a closed loop the
  // load's own time per reply is part of every round.
  const requests = new InboxRequests(nc, 10_000);
  const latencies = new Latencies();
  const started = performance.now();
  const measureFrom = started + options.warmupMs;
  const stopAt = measureFrom + options.durationMs;
  let sequence = 0;
  let charged = 0;
  const counts = { completed: 0, ok: 0, rejected: 0, failed: 0 };

  const chargeOnce = async () => {
    const n = sequence++;
    const organizationId = organization(n);
    const body = JSON.stringify({
      runId: `${options.runPrefix}-${n}`,
      charmId: `charm-${n % 7}`,
      userId: options.userId,
      amount: 1,
      organizationId,
    });
    const sent = performance.now();
    let outcome: 'ok' | 'rejected' | 'failed';
    try {
      const reply = (await requests.request('ledger.charm-runs.charge', body)).json<{
        ok: boolean;
        charged?: number;
      }>();
      outcome = reply.ok ? 'ok' : 'rejected';
      if (reply.ok) charged += reply.charged ?? 0;
    } catch {
      outcome = 'failed';
    }
    const done = performance.now();
    if (sent >= measureFrom && done <= stopAt) {
      counts.completed += 1;
      counts[outcome] += 1;
      latencies.add(done - sent);
    }
  };

  if (options.ratePerSecond === undefined) {
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (performance.now() < stopAt && sequence < (options.stopAfter ?? Infinity)) {
          await chargeOnce();
        }
      }),
    );
  } else {
    // Open loop: send on schedule whatever is outstanding.
    const interval = 1000 / options.ratePerSecond;
    const inFlight = new Set<Promise<void>>();
    let next = performance.now();
    while (next < stopAt) {
      const now = performance.now();
      while (next <= now) {
        const request = chargeOnce();
        inFlight.add(request);
        void request.finally(() => inFlight.delete(request));
        next += interval;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - performance.now())));
    }
    await Promise.all(inFlight);
  }
  // The measured window ends at its deadline, or earlier when stopAfter was reached.
  const seconds = Math.max(0.001, (Math.min(performance.now(), stopAt) - measureFrom) / 1000);
  requests.close();
  await nc.drain();
  printReport(counts, seconds, latencies, charged);
}

runMain(main);

/**
 * Preloaded into the measured service by `npm run bench -- --allocations` (node --require):
 * samples the request thread's allocations, those collected since included, so the profile
 * says where the garbage comes from, not what is still alive. Written when the bench stops
 * the service (SIGTERM): Nest re-raises the signal after its shutdown, so there is no exit.
 */
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

/** Bytes between samples: fine enough for shares of a few tenths of a percent. */
const SAMPLING_INTERVAL = 32 * 1024;

const file = process.env.LEDGER_BENCH_ALLOCATIONS_FILE;
if (isMainThread && file) {
  const session = new Session();
  session.connect();
  session.post('HeapProfiler.startSampling', {
    samplingInterval: SAMPLING_INTERVAL,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  // Registered before the service's own handler, so it runs first; the inspector answers
  // in the same turn.
  process.once('SIGTERM', () => {
    session.post('HeapProfiler.getSamplingProfile', (error, result) => {
      if (!error) writeFileSync(file, JSON.stringify(result.profile));
    });
  });
}

import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ThreadProfile {
  /** Which of the service's threads wrote it, told by the code it ran. */
  thread: string;
  /** Share of the profile's wall time spent running (not idle). */
  busy: number;
  /** The functions with the most self time, as shares of the running time. */
  top: { name: string; share: number }[];
}

/** The threads of the service, by a file only each one runs. */
const THREADS: [string, RegExp][] = [
  ['read side', /read-side\.worker/],
  ['event-store writer', /sqlite-writer\.worker/],
  ['main', /src\/main\.js/],
];

/**
 * Every thread's `.cpuprofile` in `dir` (`node --cpu-prof` writes one per thread): how busy
 * it was and where its time went (self time per function). Idle threads (the WAL
 * checkpointer's) are left out.
 */
export function threadProfiles(dir: string, count = 8): ThreadProfile[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.cpuprofile'))
    .map((file) =>
      summarize(JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile, count),
    )
    .filter((profile) => profile.busy > 0.01)
    .sort((a, b) => b.busy - a.busy);
}

function summarize(profile: CpuProfile, count: number): ThreadProfile {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const urls = profile.nodes.map((node) => node.callFrame.url).join('\n');
  const thread = THREADS.find(([, file]) => file.test(urls))?.[0] ?? 'other';
  const self = new Map<string, number>();
  let running = 0;
  profile.samples.forEach((id, index) => {
    const frame = byId.get(id)!.callFrame;
    const micros = profile.timeDeltas[index] ?? 0;
    if (frame.functionName === '(idle)') return;
    const where = frame.url
      ? `${relative(process.cwd(), frame.url.replace('file://', ''))}:${frame.lineNumber + 1}`
      : '';
    const name = `${frame.functionName || '(anonymous)'} ${where}`.trim();
    self.set(name, (self.get(name) ?? 0) + micros);
    running += micros;
  });
  const top = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, micros]) => ({ name, share: micros / running }));
  return { thread, busy: running / (profile.endTime - profile.startTime), top };
}

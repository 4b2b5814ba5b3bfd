import { readdirSync, readFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
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
  /**
   * The service's own functions (not Node's, not a package's) with the most total time:
   * theirs and that of everything they called. Self time spreads a costly step over the many
   * small functions it calls; this names the step (a snapshot taken in slices, say).
   */
  ownTotal: { name: string; share: number }[];
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
  // Named once per frame, not once per sample: a profile holds many thousands of samples.
  const names = new Map(profile.nodes.map((node) => [node.id, nameOf(node.callFrame)]));
  const callerOf = new Map<number, number>();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) callerOf.set(child, node.id);
  const urls = profile.nodes.map((node) => node.callFrame.url).join('\n');
  const thread = THREADS.find(([, file]) => file.test(urls))?.[0] ?? 'other';
  const self = new Map<string, number>();
  const ownTotal = new Map<string, number>();
  let running = 0;
  profile.samples.forEach((id, index) => {
    const frame = byId.get(id)!.callFrame;
    const micros = profile.timeDeltas[index] ?? 0;
    if (frame.functionName === '(idle)') return;
    const name = names.get(id)!;
    self.set(name, (self.get(name) ?? 0) + micros);
    running += micros;
    // Each of the service's functions on the stack once, however deep it recursed.
    const counted = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = callerOf.get(at)) {
      if (!isOwn(byId.get(at)!.callFrame.url)) continue;
      const callerName = names.get(at)!;
      if (counted.has(callerName)) continue;
      counted.add(callerName);
      ownTotal.set(callerName, (ownTotal.get(callerName) ?? 0) + micros);
    }
  });
  const top = (totals: Map<string, number>, places = count) =>
    [...totals.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, places)
      .map(([name, micros]) => ({ name, share: micros / running }));
  return {
    thread,
    busy: running / (profile.endTime - profile.startTime),
    top: top(self),
    // Twice as many: callers and callees share a stack, so a chain fills the first places.
    ownTotal: top(ownTotal, count * 2),
  };
}

/** A function by its name and where it starts, relative to the working directory. */
function nameOf(frame: ProfileNode['callFrame']): string {
  const where = frame.url
    ? `${relative(process.cwd(), frame.url.replace('file://', ''))}:${frame.lineNumber + 1}`
    : '';
  return `${frame.functionName || '(anonymous)'} ${where}`.trim();
}

/** The service's own code: a file of its own, not Node's and not a package's. */
function isOwn(url: string): boolean {
  return url.startsWith('file://') && !url.includes('/node_modules/');
}

interface SamplingHeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingHeapNode[];
}

export interface AllocationProfile {
  /** Bytes allocated over the run, as sampled. */
  bytes: number;
  /** The functions that allocated the most, as shares of all bytes. */
  functions: { name: string; share: number }[];
  /** The same by where the code is: a package, or a file of the service. */
  places: { name: string; share: number }[];
}

/** The allocation sampler's profile (allocation-sampler.ts), summed by function and place. */
export function allocationProfile(file: string, count = 12): AllocationProfile {
  const { head } = JSON.parse(readFileSync(file, 'utf8')) as { head: SamplingHeapNode };
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  const add = (totals: Map<string, number>, key: string, bytes: number) =>
    totals.set(key, (totals.get(key) ?? 0) + bytes);
  let bytes = 0;
  const pending = [head];
  for (let node = pending.pop(); node; node = pending.pop()) {
    pending.push(...node.children);
    if (node.selfSize === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const path = url.replace('file://', '');
    const place = placeOf(path);
    // In a package, its file too: `class-validator/MetadataStorage.js:69`.
    const where = path.includes('node_modules/') ? `${place}/${basename(path)}` : place;
    add(byFunction, `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`, node.selfSize);
    add(byPlace, place, node.selfSize);
    bytes += node.selfSize;
  }
  const top = (totals: Map<string, number>) =>
    [...totals.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([name, size]) => ({ name, share: size / bytes }));
  return { bytes, functions: top(byFunction), places: top(byPlace) };
}

/** A package by its name, the service's own code by its file, Node's own modules as `node`. */
function placeOf(path: string): string {
  const inPackage = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (inPackage) return inPackage[1];
  if (path === '') return '(native)';
  if (path.startsWith('node:') || !path.startsWith('/')) return 'node';
  return relative(process.cwd(), path);
}

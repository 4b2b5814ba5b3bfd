import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { threadsOf } from '../../test/support/threads';
import type { LoadReport } from './stats';

/** Runs a compiled load process (dist/bench/load/<name>.js) and returns its report. */
export function runLoad(name: string, options: object, timeoutMs = 120_000): Promise<LoadReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(__dirname, '..', 'load', `${name}.js`), JSON.stringify(options)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    let errors = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (errors += chunk));
    // Every run is bounded: a stuck load process is killed and the scenario fails.
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      const last = output.trim().split('\n').pop();
      if (code !== 0 || !last) {
        reject(new Error(`load process ${name} failed (exit ${code}):\n${errors}`));
        return;
      }
      resolve(JSON.parse(last) as LoadReport);
    });
  });
}

/** Peak resident set size of a process so far, in MB (Linux VmHWM). */
export function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /VmHWM:\s+(\d+) kB/.exec(status);
  return kb ? Number(kb[1]) / 1024 : NaN;
}

/** Current resident set size, in MB. */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status);
  return kb ? Number(kb[1]) / 1024 : NaN;
}

/** Linux's clock ticks a second for /proc times (USER_HZ, 100 on every mainstream kernel). */
const TICKS_PER_SECOND = 100;

/**
 * CPU time a process has used so far, all its threads, user and system, in seconds. Per
 * charge it is steadier than throughput on a shared machine: what the others run changes
 * how fast the service goes far more than how much work a charge is.
 */
export function cpuSeconds(pid: number): number {
  return cpuOfStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/**
 * CPU time of each thread of a process, in seconds, summed by the thread's name (the
 * service names its own, see `src/threads/thread-name.ts`); the main thread is `main`. A
 * thread that has exited is no longer listed, though the process's total still counts it.
 */
export function threadCpuSeconds(pid: number): Map<string, number> {
  return byThreadName(pid, (task) => cpuOfStat(readFileSync(`${task}/stat`, 'utf8')));
}

/**
 * Bytes a process has written to files on a disk so far, all its threads (`write_bytes` of
 * /proc/<pid>/io: counted as it dirties the page cache, whether or not it waits for the
 * disk). Rewriting a page that is still dirty counts once.
 */
export function writtenBytes(pid: number): number {
  return writeBytesOf(`/proc/${pid}`);
}

/** As `writtenBytes`, for each thread, summed by name as in `threadCpuSeconds`. */
export function threadWrittenBytes(pid: number): Map<string, number> {
  return byThreadName(pid, writeBytesOf);
}

/** `measure` of each thread's /proc/<pid>/task/<tid>, summed by thread name (`main` for the main thread). */
function byThreadName(pid: number, measure: (task: string) => number): Map<string, number> {
  const byName = new Map<string, number>();
  for (const { tid, name } of threadsOf(pid)) {
    try {
      const value = measure(`/proc/${pid}/task/${tid}`);
      const key = tid === pid ? 'main' : name;
      byName.set(key, (byName.get(key) ?? 0) + value);
    } catch {
      // The thread exited while we looked.
    }
  }
  return byName;
}

function writeBytesOf(proc: string): number {
  const written = /^write_bytes:\s+(\d+)$/m.exec(readFileSync(`${proc}/io`, 'utf8'));
  return written ? Number(written[1]) : NaN;
}

/** User and system time in a `/proc/.../stat` line, in seconds. */
function cpuOfStat(stat: string): number {
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** The machine's CPU time so far, all cores, in clock ticks: idle (with I/O wait) and all. */
export function machineTicks(): { idle: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  // cpu user nice system idle iowait irq softirq steal (guest time is inside user).
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return { idle: ticks[3] + ticks[4], total: ticks.reduce((sum, tick) => sum + tick, 0) };
}

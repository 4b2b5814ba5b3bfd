import { readdirSync, readFileSync } from 'node:fs';

/** A process's threads now, by id and name, as `top -H` shows them (Linux). */
export function threadsOf(pid: number): { tid: number; name: string }[] {
  const threads: { tid: number; name: string }[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      threads.push({
        tid: Number(tid),
        name: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(),
      });
    } catch {
      // It exited while we looked.
    }
  }
  return threads;
}

/** A thread's nice value now (field 19 of its stat; the name before it may hold spaces). */
export function niceOf(pid: number, tid: number): number {
  const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

/** The names of this process's threads now. */
export const threadNames = () => threadsOf(process.pid).map((thread) => thread.name);

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

/** The names of this process's threads now. */
export const threadNames = () => threadsOf(process.pid).map((thread) => thread.name);

import { getPriority, setPriority } from 'node:os';

/**
 * Lowers the calling thread's CPU priority by `increment` nice levels (at most to 19), so
 * that the kernel runs the process's other threads first when they want the same core.
 * Linux only: there a thread has a nice value of its own (setpriority on id 0 is the calling
 * thread); elsewhere it would lower the whole process, so nothing is done. Lowering one's own
 * priority needs no privilege; relative to the current value, so a service started with
 * `nice` keeps the difference. False when nothing was changed.
 */
export function lowerThisThreadsPriority(increment: number): boolean {
  if (process.platform !== 'linux' || increment <= 0) return false;
  try {
    const current = getPriority(0);
    const lowered = Math.min(19, current + increment);
    if (lowered === current) return false;
    setPriority(0, lowered);
    return true;
  } catch {
    // A sandbox that refuses it: the thread keeps the process's priority.
    return false;
  }
}

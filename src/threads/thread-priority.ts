import { getPriority, setPriority } from 'node:os';

/**
 * Lowers the calling thread's CPU priority by `increment` nice levels (at most to 19), so
 * that the kernel runs the process's other threads first when they want the same core.
 * Linux only: there a thread has a nice value of its own (setpriority on id 0 is the calling
 * thread); elsewhere it would lower the whole process, so nothing is done. Lowering one's own
 * priority needs no privilege; relative to the current value, so a service started with
 * `nice` keeps the difference. Threads it starts afterwards start at its new priority.
 */
export function lowerThisThreadsPriority(increment: number): void {
  if (process.platform !== 'linux' || increment <= 0) return;
  try {
    setPriority(0, Math.min(19, getPriority(0) + increment));
  } catch {
    // A sandbox that refuses it: the thread keeps the process's priority.
  }
}

/**
 * A position that only moves forward, and the readers waiting for it to reach theirs
 * (read-your-writes). The projection runner keeps one; so does the service's side of a read
 * side that runs in a thread of its own, from the positions the thread reports.
 */
export class Progress {
  private reached = 0n;
  private readonly waiters = new Set<{ position: bigint; resolve: (reached: boolean) => void }>();
  private readonly listeners: ((position: bigint) => void)[] = [];

  /** `onWait` is told when a reader starts waiting, so that whoever moves it looks at once. */
  constructor(private readonly onWait: () => void = () => undefined) {}

  get position(): bigint {
    return this.reached;
  }

  /** Told every time the position moves forward. */
  onAdvance(listener: (position: bigint) => void): void {
    this.listeners.push(listener);
  }

  advance(position: bigint): void {
    if (position <= this.reached) return;
    this.reached = position;
    for (const listener of this.listeners) listener(position);
    for (const waiter of this.waiters) {
      if (waiter.position > position) continue;
      this.waiters.delete(waiter);
      waiter.resolve(true);
    }
  }

  /** Resolves true once the position is at least `position`, false after `timeoutMs`. */
  waitFor(position: bigint, timeoutMs: number): Promise<boolean> {
    if (this.reached >= position) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        position,
        resolve: (reached: boolean) => {
          clearTimeout(timer);
          resolve(reached);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        resolve(false);
      }, timeoutMs);
      this.waiters.add(waiter);
      this.onWait();
    });
  }
}

import { fork } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { HandlerScope } from '../../../src/event-store/adapter-support';
import { compileForChild } from '../../support/compile-for-child';

describe('HandlerScope (how a subscription knows stop() comes from its own handler)', () => {
  const scope = new HandlerScope<string>();

  it('sees a handler as inside its owner across awaits, and nothing else as inside', async () => {
    const seen: boolean[] = [];
    await scope.run('a', async () => {
      seen.push(scope.isInside('a'), scope.isInside('b'));
      await delay(1);
      seen.push(scope.isInside('a'));
    });
    expect(seen).toEqual([true, false, true]);
    expect(scope.isInside('a')).toBe(false);
  });

  it('keeps each of two overlapping handlers inside its own owner until it returns', async () => {
    let releaseFirst!: () => void;
    const first = scope.run('a', () => new Promise<void>((resolve) => (releaseFirst = resolve)));
    const seen: boolean[] = [];
    await scope.run('b', async () => {
      await delay(1);
      releaseFirst();
      await first;
      await delay(1);
      seen.push(scope.isInside('b'), scope.isInside('a'));
    });
    expect(seen).toEqual([true, false]);
  });

  it('passes a failing handler’s error on', async () => {
    await expect(
      scope.run('a', () => {
        throw new Error('handler failed');
      }),
    ).rejects.toThrow('handler failed');
  });

  it('leaves no promise hook on the thread once no handler runs, even after a failure', async () => {
    const compiled = await compileForChild([
      'src/event-store/adapter-support.ts',
      'test/support/handler-scope-probe.ts',
    ]);
    try {
      const child = fork(compiled.pathOf('test/support/handler-scope-probe.ts'));
      const report = await new Promise((resolve, reject) => {
        child.once('message', resolve);
        child.once('error', reject);
        child.once('exit', (code) => reject(new Error(`probe exited with ${code}`)));
      });
      expect(report).toEqual({
        before: false,
        during: true,
        afterHandler: false,
        afterFailure: false,
      });
    } finally {
      await compiled.remove();
    }
  });
});

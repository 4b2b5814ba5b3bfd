/**
 * Run in a child process (Jest itself keeps promise hooks on): reports whether the thread's
 * promises are tracked before, during and after a HandlerScope's handlers, one of them failing.
 */
import { executionAsyncId } from 'node:async_hooks';
import { HandlerScope } from '../../src/event-store/adapter-support';

const promisesTracked = () => Promise.resolve().then(() => executionAsyncId() !== 0);

async function main() {
  const scope = new HandlerScope<string>();
  const before = await promisesTracked();
  let during = false;
  await scope.run('a', async () => {
    during = await promisesTracked();
  });
  const afterHandler = await promisesTracked();
  await scope
    .run('a', () => {
      throw new Error('handler failed');
    })
    .catch(() => undefined);
  const afterFailure = await promisesTracked();
  process.send!({ before, during, afterHandler, afterFailure }, () => process.disconnect());
}

void main();

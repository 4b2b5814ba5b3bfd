import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadWrittenBytes, writtenBytes } from '../../../bench/support/processes';

// Linux's /proc, as the bench; the temporary folder must be on a disk (not tmpfs).
describe('bytes written, as the bench counts them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ledger-written-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('counts what this process writes to a file on disk, and on the thread that wrote it', () => {
    const before = writtenBytes(process.pid);
    const mainBefore = threadWrittenBytes(process.pid).get('main')!;
    const file = openSync(join(dir, 'written.bin'), 'w');
    writeSync(file, Buffer.alloc(1024 * 1024, 1));
    fsyncSync(file);
    closeSync(file);
    // At least: Jest's own threads may write meanwhile.
    expect(writtenBytes(process.pid) - before).toBeGreaterThanOrEqual(1024 * 1024);
    const main = threadWrittenBytes(process.pid).get('main')! - mainBefore;
    expect(main).toBeGreaterThanOrEqual(1024 * 1024);
  });
});

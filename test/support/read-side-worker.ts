import { resolve } from 'node:path';
import type { ReadSideWorkerScript } from '../../src/read/read-side-thread';
import { SWC_OPTIONS } from './compile-for-child';

const WORKER = resolve(__dirname, '../../src/read/read-side.worker.ts');

/**
 * The read side's thread on the current TypeScript sources: Jest's transform does not reach
 * worker threads, so the thread compiles each source file with swc as it is required.
 * `before` is CommonJS the thread runs first (a test's sabotage).
 */
export const readSideWorkerFromSources = (before = ''): ReadSideWorkerScript => ({
  eval: true,
  filename: `${before}
const { readFileSync } = require('node:fs');
const { transformSync } = require(${JSON.stringify(require.resolve('@swc/core'))});
const options = ${JSON.stringify(SWC_OPTIONS)};
require.extensions['.ts'] = (module, filename) =>
  module._compile(transformSync(readFileSync(filename, 'utf8'), { ...options, filename }).code, filename);
require(${JSON.stringify(WORKER)});
`,
});

export const typeScriptReadSideWorker = readSideWorkerFromSources();

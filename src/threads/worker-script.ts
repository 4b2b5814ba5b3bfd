import { existsSync } from 'node:fs';

/** What `new Worker(filename, { eval })` runs. */
export interface WorkerScript {
  filename: string;
  eval?: boolean;
}

/** How the build compiles (.swcrc): TypeScript with decorator metadata, to CommonJS. */
export const SWC_OPTIONS = {
  jsc: {
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true },
    target: 'es2022',
  },
  module: { type: 'commonjs' },
} as const;

/**
 * The code a worker thread runs, given its module's path without the extension: the built
 * `.js` file when there is one (dist/). From the TypeScript sources, as Jest runs them (its
 * transform does not reach into threads), a loader that compiles each source file with swc
 * as the thread requires it; swc is a dev dependency, and only the sources need it.
 * `before` is CommonJS the thread runs first (tests sabotage threads with it).
 */
export function workerScript(modulePath: string, before = ''): WorkerScript {
  const built = `${modulePath}.js`;
  if (existsSync(built)) {
    return before === ''
      ? { filename: built }
      : { eval: true, filename: `${before}\nrequire(${JSON.stringify(built)});` };
  }
  return {
    eval: true,
    filename: `${before}
const { readFileSync } = require('node:fs');
const { transformSync } = require(${JSON.stringify(require.resolve('@swc/core'))});
const options = ${JSON.stringify(SWC_OPTIONS)};
require.extensions['.ts'] = (module, filename) =>
  module._compile(transformSync(readFileSync(filename, 'utf8'), { ...options, filename }).code, filename);
require(${JSON.stringify(`${modulePath}.ts`)});
`,
  };
}

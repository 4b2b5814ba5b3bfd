// Bundles the console (TypeScript and Chart.js, nothing from a CDN) into dist/console, which
// the service serves at /console. Run by `npm run build` after swc has recreated dist/.
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'dist', 'console');

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(here, 'src', 'main.ts')],
  outfile: join(out, 'main.js'),
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: true,
  // Chart.js's licence travels with the bundle in a file of its own.
  legalComments: 'linked',
  logLevel: 'warning',
});
await Promise.all(
  ['index.html', 'styles.css'].map((file) => copyFile(join(here, file), join(out, file))),
);

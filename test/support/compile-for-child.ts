import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { transformFileSync } from '@swc/core';
import { SWC_OPTIONS } from '../../src/threads/worker-script';

const ROOT = resolve(__dirname, '../..');

export interface CompiledTree {
  /** The compiled copy of a project file, e.g. `test/support/append-racer.ts` → its .js path. */
  pathOf(projectFile: string): string;
  remove(): Promise<void>;
}

/**
 * Child processes and worker threads cannot use Jest's TypeScript transform: compile the
 * given project folders (or files) with swc into a temporary tree of the same shape, with
 * node_modules linked in, so that `fork(tree.pathOf('...'))` runs the current sources.
 */
export async function compileForChild(paths: string[]): Promise<CompiledTree> {
  const out = await mkdtemp(join(tmpdir(), 'ledger-child-'));
  const files = (await Promise.all(paths.map((path) => typeScriptFiles(join(ROOT, path))))).flat();
  for (const file of files) {
    const { code } = transformFileSync(file, SWC_OPTIONS);
    const target = join(out, relative(ROOT, file).replace(/\.ts$/, '.js'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, code);
  }
  await symlink(join(ROOT, 'node_modules'), join(out, 'node_modules'), 'dir');
  return {
    pathOf: (projectFile) => join(out, projectFile.replace(/\.ts$/, '.js')),
    remove: () => rm(out, { recursive: true, force: true }),
  };
}

async function typeScriptFiles(path: string): Promise<string[]> {
  if (path.endsWith('.ts')) return [path];
  const entries = await readdir(path, { withFileTypes: true, recursive: true });
  return entries
    .filter(
      (entry) => entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.spec.ts'),
    )
    .map((entry) => join(entry.parentPath, entry.name));
}

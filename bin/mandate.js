#!/usr/bin/env node
// Entry point of the `mandate` command. An installed package holds only the compiled build (dist/),
// which runs as plain JavaScript. In a checkout (src/ present) the build runs when it is newer than
// every source file (`npm install` builds it, `npm run build` rebuilds it); otherwise the TypeScript
// sources run through tsx, a dev dependency, so a change is never run stale (only slower to start).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function newestSource() {
  let newest = 0;
  for (const dir of ['src', 'examples']) {
    const base = join(root, dir);
    if (!existsSync(base)) continue;
    for (const entry of readdirSync(base, { withFileTypes: true, recursive: true })) {
      if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
    }
  }
  return newest;
}

function builtAndCurrent() {
  const stamp = join(root, 'dist', '.build-stamp');
  return existsSync(stamp) && statSync(stamp).mtimeMs >= newestSource();
}

async function loadMain() {
  if (!existsSync(join(root, 'src')) || builtAndCurrent()) return import('../dist/src/cli/main.js');
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch (error) {
    if (error.code !== 'ERR_MODULE_NOT_FOUND') throw error;
    process.stderr.write('mandate: the build in dist/ is missing or older than src/, and tsx is not installed to run the sources: run `npm run build`\n');
    process.exit(1);
  }
  register();
  return import('../src/cli/main.ts');
}

const { main } = await loadMain();
process.exitCode = await main(process.argv.slice(2));

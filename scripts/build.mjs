// `npm run build`: compiles src/ and examples/ to dist/ (type-checked by tsc; JS, declarations and
// source maps that carry their sources), copies the example configurations beside them, and stamps
// the build so bin/mandate.js can tell it is current.
//
// It builds into dist.next/ and then swaps it for dist/, so a mandate command or test started
// during a build never finds dist/ half-written or gone. The stamp carries the time the build
// started: a source saved while tsc ran is newer than it, so that build counts as stale.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const next = join(root, 'dist.next');
const old = join(root, 'dist.old');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const started = new Date();

rmSync(next, { recursive: true, force: true });
const status = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', next], { stdio: 'inherit' }).status;
if (status !== 0) {
  rmSync(next, { recursive: true, force: true });
  process.exit(status ?? 1);
}
for (const entry of readdirSync(join(root, 'examples'), { withFileTypes: true, recursive: true })) {
  // Only the example configurations: dist/ is published, and a stray local file (an .env, an
  // override) under examples/ must not travel with it.
  if (!entry.isFile() || !/\.ya?ml$/.test(entry.name)) continue;
  const from = join(entry.parentPath, entry.name);
  const to = join(next, from.slice(root.length + 1));
  mkdirSync(dirname(to), { recursive: true });
  cpSync(from, to);
}
const stamp = join(next, '.build-stamp');
writeFileSync(stamp, `${started.toISOString()}\n`);
utimesSync(stamp, started, started);

rmSync(old, { recursive: true, force: true });
try {
  renameSync(dist, old);
} catch (error) {
  if (error.code !== 'ENOENT') throw error;
}
renameSync(next, dist);
rmSync(old, { recursive: true, force: true });

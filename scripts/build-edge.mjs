// `npm run edge:build`: bundles the gateway's Worker entry (src/gateway/workers/index.ts) into one
// ES module for Cloudflare Workers / workerd: dist-edge/gateway.js (outside dist/, which
// `npm run build` replaces whole). `--outfile <file>` writes elsewhere (the edge test does).
//
// esbuild's neutral platform with the conditions workerd resolves: a Node builtin reached from the
// entry is an error here (test/gateway/neutral.test.ts checks the same for the gateway's core).
import { builtinModules } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const at = args.indexOf('--outfile');
if ((at >= 0 && !args[at + 1]) || args.length !== (at >= 0 ? 2 : 0)) {
  console.error('usage: node scripts/build-edge.mjs [--outfile <file>]');
  process.exit(2);
}
const outfile = at >= 0 ? args[at + 1] : join(root, 'dist-edge', 'gateway.js');

const noNode = {
  name: 'no-node-builtins',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (a) => {
      if (a.path.startsWith('node:') || builtinModules.includes(a.path)) {
        return { errors: [{ text: `${a.path} is a Node builtin (imported by ${relative(root, a.importer)}): the Worker must run without Node` }] };
      }
      return undefined;
    });
  },
};

const started = Date.now();
const result = await build({
  absWorkingDir: root,
  entryPoints: [join(root, 'src/gateway/workers/index.ts')],
  outfile,
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  mainFields: ['module', 'main'],
  conditions: ['workerd', 'worker', 'browser'],
  minify: false,
  sourcemap: 'linked',
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
  plugins: [noNode],
});
const bytes = Object.values(result.metafile.outputs).find((output) => output.entryPoint)?.bytes ?? 0;
console.log(`edge: ${relative(process.cwd(), outfile)} (${Math.round(bytes / 1024)} KiB) in ${Date.now() - started} ms`);

// `npm run edge:build`: bundles the Worker entries into ES modules for Cloudflare Workers / workerd,
// in dist-edge/ (outside dist/, which `npm run build` replaces whole):
//   gateway   src/gateway/workers/index.ts  → dist-edge/gateway.js   (the MCP security gateway)
//   todo-mcp  examples/todo-mcp/worker.ts   → dist-edge/todo-mcp.js  (the demo's Todo MCP server)
// Both by default; `--entry <name>` builds one, and `--outfile <file>` writes it elsewhere (the
// edge tests do; without `--entry` it is the gateway's).
//
// esbuild's neutral platform with the conditions workerd resolves: a Node builtin reached from an
// entry is an error here (test/gateway/neutral.test.ts checks the same for the gateway's core).
import { builtinModules } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ENTRIES = {
  gateway: 'src/gateway/workers/index.ts',
  'todo-mcp': 'examples/todo-mcp/worker.ts',
};
const args = process.argv.slice(2);
const flags = {};
for (let i = 0; i < args.length; i += 2) {
  if (!['--outfile', '--entry'].includes(args[i]) || !args[i + 1]) usage();
  flags[args[i].slice(2)] = args[i + 1];
}
if (flags.entry !== undefined && !(flags.entry in ENTRIES)) usage();
const names = flags.entry ? [flags.entry] : flags.outfile ? ['gateway'] : Object.keys(ENTRIES);

function usage() {
  console.error(`usage: node scripts/build-edge.mjs [--entry ${Object.keys(ENTRIES).join('|')}] [--outfile <file>]`);
  process.exit(2);
}

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

for (const name of names) {
  const outfile = flags.outfile ?? join(root, 'dist-edge', `${name}.js`);
  const started = Date.now();
  const result = await build({
    absWorkingDir: root,
    entryPoints: [join(root, ENTRIES[name])],
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
}

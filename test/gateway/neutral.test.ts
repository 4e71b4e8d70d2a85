/**
 * The gateway's core (everything under src/gateway/ but node/) and src/core run on web-standard
 * APIs only (issue 16: the same code builds for Cloudflare Workers). Bundled for a runtime without
 * Node — esbuild's `neutral` platform, the conditions workerd resolves — no Node builtin and no
 * Node-only package may be reached. The lint rule in eslint.config.js says the same per file.
 */
import assert from 'node:assert/strict';
import { builtinModules } from 'node:module';
import { describe, it } from 'node:test';
import { build, type Plugin } from 'esbuild';

const NODE_ONLY_PACKAGES = ['rate-limiter-flexible', 'ioredis', 'pino', 'prom-client', 'undici', '@hono/node-server', 'kysely', 'libsql', '@libsql', 'pg'];

async function reached(entry: string): Promise<{ builtins: string[]; packages: string[] }> {
  const builtins: string[] = [];
  const recordBuiltins: Plugin = {
    name: 'node-builtins',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        const bare = args.path.replace(/^node:/, '');
        if (args.path.startsWith('node:') || builtinModules.includes(bare)) {
          builtins.push(`${args.path} <- ${args.importer.split('node_modules/').pop()}`);
          return { path: args.path, external: true };
        }
        return undefined;
      });
    },
  };
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    platform: 'neutral',
    format: 'esm',
    mainFields: ['module', 'main'],
    conditions: ['workerd', 'worker', 'browser'],
    metafile: true,
    logLevel: 'silent',
    plugins: [recordBuiltins],
  });
  const packages = [...new Set(Object.keys(result.metafile.inputs).flatMap((input) => (input.includes('node_modules/') ? [input.split('node_modules/').pop()!.split('/').slice(0, input.split('node_modules/').pop()!.startsWith('@') ? 2 : 1).join('/')] : [])))];
  return { builtins, packages };
}

describe('the runtime-neutral gateway and core', () => {
  for (const entry of ['src/gateway/index.ts', 'src/core/index.ts']) {
    it(`${entry} bundles for a runtime without Node: no Node builtin, no Node-only package`, async () => {
      const { builtins, packages } = await reached(entry);
      assert.deepEqual(builtins, []);
      assert.deepEqual(packages.filter((p) => NODE_ONLY_PACKAGES.some((n) => p === n || p.startsWith(`${n}/`))), []);
      if (entry.includes('gateway')) assert.ok(packages.includes('hono') && packages.includes('jose'), `the bundle holds the gateway's libraries: ${packages.join(', ')}`);
    });
  }

  it('the check can fail: the Node host does reach Node builtins', async () => {
    const { builtins, packages } = await reached('src/gateway/node/index.ts');
    assert.ok(builtins.length > 0);
    assert.ok(packages.includes('rate-limiter-flexible'));
  });
});

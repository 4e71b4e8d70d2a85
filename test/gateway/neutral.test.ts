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
import { generateKeyPair, exportJWK } from 'jose';
import { mcpRoute } from '../../src/config/gateway-schema.ts';
import { loadGatewayConfig } from '../../src/gateway/node/server.ts';
import { nodeRateLimits } from '../../src/gateway/node/rate-limits.ts';
import { compileRoute } from '../../src/gateway/route.ts';
import { RemoteJwks } from '../../src/gateway/jwks.ts';
import type { TokenClaims } from '../../src/gateway/token-validator.ts';

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
  for (const entry of ['src/gateway/index.ts', 'src/gateway/workers/index.ts', 'src/core/index.ts']) {
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

describe('nothing runs before the first request (a Worker allows no timer and no I/O at its global scope)', () => {
  /** Counts the intervals created while `body` runs. */
  async function countingTimers<T>(body: (count: () => number) => Promise<T>): Promise<T> {
    const original = globalThis.setInterval;
    let created = 0;
    globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => (created++, original(...args))) as typeof setInterval;
    try {
      return await body(() => created);
    } finally {
      globalThis.setInterval = original;
    }
  }
  const jwksServer = async () => {
    const { publicKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    const calls: string[] = [];
    const fetchSpy = (async (url: string | URL | Request) => {
      calls.push(String(url));
      return new Response(JSON.stringify(String(url).includes('revocations') ? { next_since: 1 } : { keys: [jwk] }), { headers: { 'content-type': 'application/json' } });
    }) as typeof fetch;
    return { calls, fetchSpy };
  };

  it('compiling the demo route starts no timer and sends no request; the first check polls the revocation list (on use: never a timer)', async () => {
    const { calls, fetchSpy } = await jwksServer();
    await countingTimers(async (timers) => {
      const config = await loadGatewayConfig('examples/demo/gateway.yaml');
      const route = compileRoute(mcpRoute(config.routes[0]!), 0, { env: { MANDATE_GATEWAY_CLIENT_SECRET: 's' }, rateLimits: nodeRateLimits(), fetch: fetchSpy });
      try {
        await new Promise((resolve) => setTimeout(resolve, 20));
        assert.equal(timers(), 0);
        assert.equal(calls.length, 0, calls.join(" "));
        assert.equal(route.revocations!.check({ sub: 'u', client_id: 'c' } as TokenClaims)?.refuse, 'unavailable', 'fails closed until the first list is loaded');
        assert.equal(calls.length, 0, 'check() polls nothing');
        const verdict = await route.revocations!.verdictFor({ sub: 'u', client_id: 'c' } as TokenClaims);
        assert.equal(verdict, undefined, 'the first verdict waits for the first list: the token passes');
        assert.ok(calls.some((url) => url.endsWith('/revocations') || url.includes('/revocations?')), calls.join(' '));
        assert.equal(timers(), 0, 'polled on use, never on a timer');
      } finally {
        route.close();
      }
    });
  });

  it('a key set fetches at its first use; on a server its refresh timer begins then, on Workers (on-use) a stale set is fetched again at use', async () => {
    const { calls, fetchSpy } = await jwksServer();
    await countingTimers(async (timers) => {
      const timed = new RemoteJwks({ jwksUri: 'http://as.test/jwks', refreshMs: 60_000, fetch: fetchSpy });
      timed.start();
      assert.equal(timers(), 0);
      assert.deepEqual(calls, []);
      assert.equal((await timed.byKid('k1'))?.kid, 'k1');
      assert.equal(timers(), 1);
      assert.equal(calls.length, 1);
      timed.stop();

      const onUse = new RemoteJwks({ jwksUri: 'http://as.test/jwks', refreshMs: 50, fetch: fetchSpy, schedule: 'on-use' });
      onUse.start();
      assert.equal((await onUse.byKid('k1'))?.kid, 'k1');
      assert.equal(calls.length, 2);
      await onUse.byKid('k1');
      assert.equal(calls.length, 2, 'fresh: no fetch');
      await new Promise((resolve) => setTimeout(resolve, 60));
      await onUse.byKid('k1');
      await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(calls.length, 3, 'stale: fetched again at use');
      assert.equal(timers(), 1, 'on-use never starts a timer');
      onUse.stop();
    });
  });
});

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gatewayConfigSchema, mcpRoute } from '../../src/config/gateway-schema.ts';
import { loadGatewayConfig } from '../../src/gateway/node/server.ts';
import { compileRoute } from '../../src/gateway/route.ts';
import { nodeRateLimits } from '../../src/gateway/node/rate-limits.ts';

describe('gateway configuration', () => {
  it('the example gateway files are valid and their rules compile', async () => {
    for (const file of ['examples/gateway/everything.yaml']) {
      const example = await loadGatewayConfig(file);
      // A route with rate_limits needs its host's store: compiled without one, it is refused.
      assert.throws(() => example.routes.forEach((route, i) => compileRoute(route, i, { env: {} }).close()), /routes\[0\] \(\/mcp\): rate_limits need a rate limit store/);
      example.routes.forEach((route, i) => compileRoute(route, i, { env: {}, rateLimits: nodeRateLimits() }).close());
    }
    const config = await loadGatewayConfig('examples/demo/gateway.yaml');
    assert.equal(mcpRoute(config.routes[0]!).resource, 'http://localhost:8080/mcp');
    // The demo's gateway reads the revocation feed, with the secret `mandate demo` passes it.
    assert.throws(() => compileRoute(config.routes[0]!, 0, { env: {}, rateLimits: nodeRateLimits() }), /MANDATE_GATEWAY_CLIENT_SECRET is not set/);
    const route = compileRoute(config.routes[0]!, 0, { env: { MANDATE_GATEWAY_CLIENT_SECRET: 'demo-gateway-secret' }, rateLimits: nodeRateLimits(), fetch: async () => new Response(null, { status: 503 }) });
    assert.equal(route.revocations?.loaded, false, 'fails closed until its first load');
    assert.equal(route.metadataUrl, 'http://localhost:8080/.well-known/oauth-protected-resource/mcp');
    assert.deepEqual(route.metadata.scopes_supported, ['banking:read', 'banking:transfer']);
    route.close();
  });

  it('rejects unknown keys and bad values, naming the path', () => {
    const result = gatewayConfigSchema.safeParse({ routes: [{ path: 'mcp', upstream: 'x', resource: 'http://a/mcp', authorization_servers: ['http://as'], tols: {} }] });
    assert.equal(result.success, false);
    const paths = result.error!.issues.map((issue) => issue.path.join('.'));
    assert.ok(paths.includes('routes.0.path'));
    assert.ok(paths.includes('routes.0.upstream'));
    assert.ok(paths.some((p) => p.startsWith('routes.0')) && result.error!.issues.some((issue) => issue.code === 'unrecognized_keys'));
  });

  it('`mandate serve gateway` explains an invalid file and exits 2, with no stack trace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mandate-gwcfg-'));
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, 'routes:\n  - path: /mcp\n    upstream: http://localhost:8000/\n    resource: http://localhost:8080/mcp\n    authorization_servers: [http://localhost:9000]\n    tools: { t: { allow: "((" } }\n');
    const run = spawnSync(process.execPath, ['bin/mandate.js', 'serve', 'gateway', '--config', file], { encoding: 'utf8' });
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /routes\[0\] \(\/mcp\) tools\.t\.allow: invalid CEL expression/);
    assert.doesNotMatch(run.stderr, /at .*\.ts:\d+/);
  });
});

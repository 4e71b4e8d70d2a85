import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { discover, resourceCovers } from '../../src/agent/discovery.ts';
import { AgentError } from '../../src/agent/errors.ts';

/** A server that answers only the paths it is given (JSON bodies; `{origin}` replaced), 404 elsewhere; it records the paths asked. */
async function serve(routes: Record<string, unknown>) {
  const asked: string[] = [];
  let origin = '';
  const server = createServer((req, res) => {
    asked.push(req.url!);
    if (req.url === '/mcp') return res.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
    const body = routes[req.url!];
    if (body === undefined) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body).replaceAll('{origin}', origin));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { origin, asked, close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))) };
}

describe('agent discovery', () => {
  it('resourceCovers: the same URL or a resource above it on a segment boundary, same origin only', () => {
    assert.equal(resourceCovers('https://a.example/mcp', 'https://a.example/mcp'), true);
    assert.equal(resourceCovers('https://a.example/', 'https://a.example/mcp'), true);
    assert.equal(resourceCovers('https://a.example', 'https://a.example/tenant/mcp'), true);
    assert.equal(resourceCovers('https://a.example/mc', 'https://a.example/mcp'), false);
    assert.equal(resourceCovers('https://b.example/', 'https://a.example/mcp'), false);
    assert.equal(resourceCovers('http://a.example/mcp', 'https://a.example/mcp'), false);
  });

  it('no metadata URL in the challenge: the path-inserted PRM, then the root one (whose resource is the origin); AS metadata in the OIDC appended form', async () => {
    const s = await serve({
      '/.well-known/oauth-protected-resource': { resource: '{origin}/', authorization_servers: ['{origin}/tenant1'] },
      '/tenant1/.well-known/openid-configuration': { issuer: '{origin}/tenant1', token_endpoint: '{origin}/tenant1/token' },
    });
    try {
      const found = await discover(`${s.origin}/mcp`);
      assert.equal(found.resource, `${s.origin}/`);
      assert.equal(found.issuer, `${s.origin}/tenant1`);
      assert.deepEqual(s.asked, [
        '/mcp',
        '/.well-known/oauth-protected-resource/mcp',
        '/.well-known/oauth-protected-resource',
        '/.well-known/oauth-authorization-server/tenant1',
        '/.well-known/openid-configuration/tenant1',
        '/tenant1/.well-known/openid-configuration',
      ]);
    } finally {
      await s.close();
    }
  });

  it('a PRM for another origin is refused before any AS is asked', async () => {
    const s = await serve({ '/.well-known/oauth-protected-resource/mcp': { resource: 'https://elsewhere.example/mcp', authorization_servers: ['{origin}'] } });
    try {
      await assert.rejects(discover(`${s.origin}/mcp`), (error: AgentError) => error.kind === 'protocol' && /is for https:\/\/elsewhere\.example\/mcp/.test(error.message));
      assert.ok(!s.asked.some((path) => path.includes('authorization-server') || path.includes('openid')));
    } finally {
      await s.close();
    }
  });
});

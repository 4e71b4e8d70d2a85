import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MCP_HEADERS, mcpPost, startFakeIssuer, startScriptedUpstream, startTestGateway, toolCall, listedTools, type TestGateway } from '../helpers/gateway.ts';

describe('gateway: validation, tool authorization, throttling, upstream failures', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let resource: string;
  let token: (claims?: Record<string, unknown>) => Promise<string>;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    gateway = await startTestGateway((url) => [
      {
        path: '/mcp',
        upstream: upstream.url,
        resource: `${url}/mcp`,
        authorization_servers: [issuer.issuer],
        allowed_origins: ['http://localhost:6277'],
        max_body_bytes: 2048,
        tools: {
          read_balance: { scopes: ['banking:read'] },
          transfer: {
            scopes: ['banking:transfer'],
            // Only a direct delegation by the sample agent, and small amounts.
            allow: "size(act) == 1 && act[0].sub == 'sample-agent' && args.amount <= 100",
            reason: 'transfers need the sample agent acting alone, up to 100',
          },
          echo: {},
          stream: {},
          slow: {},
          fails: {},
          rpc_error: {},
        },
        unlisted_tools: 'deny',
        rules: [{ allow: "!(sub in ['mallory'])", reason: 'mallory is blocked' }],
        rate_limits: [{ name: 'echo-per-subject', key: ['subject', 'tool'], limit: 3, window_seconds: 60, tools: ['echo'] }],
        timeouts: { response_ms: 300 },
      },
      { path: '/down', upstream: 'http://127.0.0.1:9', resource: `${url}/down`, authorization_servers: [issuer.issuer], tools: listedTools() },
      { path: '/limited', upstream: upstream.url, resource: `${url}/limited`, authorization_servers: [issuer.issuer], tools: listedTools(), rate_limits: [{ name: 'any-call', key: ['subject'], limit: 3 }] },
    ]);
    resource = `${gateway.url}/mcp`;
    token = (claims = {}) =>
      issuer.sign({ sub: 'alice', aud: resource, client_id: 'sample-agent', scope: 'banking:read banking:transfer', act: { sub: 'sample-agent', client_id: 'sample-agent' }, ...claims });
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await issuer.close();
  });

  const bearer = async (claims?: Record<string, unknown>) => ({ authorization: `Bearer ${await token(claims)}` });
  const errorOf = (res: { json?: Record<string, unknown> }) => res.json!.error as { code: number; message: string };

  describe('validation', () => {
    const cases: [string, () => Promise<{ status: number; json?: Record<string, unknown> }>, number, number][] = [
      ['an Origin that is not allowed', async () => mcpPost(resource, toolCall('echo'), { ...(await bearer()), origin: 'https://evil.example' }), 403, -32600],
      ['Mcp-Method that disagrees with the body (2026-07-28)', async () => mcpPost(resource, toolCall('echo'), { ...(await bearer()), 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list', 'mcp-name': 'echo' }), 400, -32020],
      ['Mcp-Name that disagrees with the body', async () => mcpPost(resource, toolCall('echo'), { ...(await bearer()), 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'transfer' }), 400, -32020],
      ['a body over max_body_bytes', async () => mcpPost(resource, toolCall('echo', { pad: 'x'.repeat(4096) }), await bearer()), 413, -32600],
      ['a body that is not JSON', async () => mcpPost(resource, '{"jsonrpc":', await bearer()), 400, -32700],
      ['a JSON-RPC batch', async () => mcpPost(resource, [toolCall('echo')], await bearer()), 400, -32600],
      ['tools/call without a name', async () => mcpPost(resource, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: {} }, await bearer()), 400, -32602],
      ['an Accept without text/event-stream', async () => mcpPost(resource, toolCall('echo'), { ...(await bearer()), accept: 'application/json' }), 406, -32600],
      ['a Content-Type that is not JSON', async () => mcpPost(resource, toolCall('echo'), { ...(await bearer()), 'content-type': 'text/plain' }), 415, -32600],
      ['an unknown MCP-Protocol-Version', async () => mcpPost(resource, toolCall('echo'), { ...(await bearer()), 'mcp-protocol-version': '1999-01-01' }), 400, -32600],
    ];
    for (const [name, send, status, code] of cases) {
      it(`${status} ${code}: ${name}`, async () => {
        const res = await send();
        assert.equal(res.status, status);
        assert.equal(errorOf(res).code, code);
      });
    }
    it('405 for GET on the stateless revision and for PUT', async () => {
      const get = await fetch(resource, { headers: { ...(await bearer()), accept: 'text/event-stream', 'mcp-protocol-version': '2026-07-28' } });
      assert.equal(get.status, 405);
      const put = await fetch(resource, { method: 'PUT', headers: { ...MCP_HEADERS, ...(await bearer()) }, body: '{}' });
      assert.equal(put.status, 405);
    });
    it('413 for a chunked body over the limit (counted as it streams)', async () => {
      const body = new ReadableStream({
        start(controller) {
          for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(500)));
          controller.close();
        },
      });
      const res = await fetch(resource, { method: 'POST', headers: { ...MCP_HEADERS, ...(await bearer()) }, body, duplex: 'half' } as RequestInit);
      assert.equal(res.status, 413);
    });
    it('answers a CORS preflight from an allowed origin, and refuses others', async () => {
      const ok = await fetch(resource, { method: 'OPTIONS', headers: { origin: 'http://localhost:6277', 'access-control-request-method': 'POST' } });
      assert.equal(ok.status, 204);
      assert.equal(ok.headers.get('access-control-allow-origin'), 'http://localhost:6277');
      assert.match(ok.headers.get('access-control-allow-headers')!, /mcp-session-id/);
      const bad = await fetch(resource, { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
      assert.equal(bad.status, 403);
    });
    it('a 401 to an allowed origin exposes WWW-Authenticate to the page', async () => {
      const res = await mcpPost(resource, toolCall('echo'), { origin: 'http://localhost:6277' });
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('access-control-allow-origin'), 'http://localhost:6277');
      assert.match(res.headers.get('access-control-expose-headers')!, /www-authenticate/);
    });
  });

  describe('tool authorization', () => {
    it('lets an allowed call through', async () => {
      const res = await mcpPost(resource, toolCall('transfer', { amount: 50 }), await bearer());
      assert.equal(res.status, 200, res.text);
    });
    it('403 insufficient_scope naming the scopes the tool needs', async () => {
      const res = await mcpPost(resource, toolCall('transfer', { amount: 50 }), await bearer({ scope: 'banking:read' }));
      assert.equal(res.status, 403);
      assert.match(res.headers.get('www-authenticate')!, /error="insufficient_scope"/);
      assert.match(res.headers.get('www-authenticate')!, /scope="banking:transfer"/);
      assert.match(errorOf(res).message, /needs banking:transfer/);
    });
    it('refused by a CEL rule on the act chain: a longer chain', async () => {
      const res = await mcpPost(resource, toolCall('transfer', { amount: 50 }), await bearer({ act: { sub: 'mcp-server', act: { sub: 'sample-agent' } } }));
      assert.equal(res.status, 403);
      assert.equal(errorOf(res).code, -32003);
      assert.match(errorOf(res).message, /refused/);
      assert.doesNotMatch(errorOf(res).message, /unknown/i);
    });
    it('refused by a CEL rule on the act chain: another actor', async () => {
      assert.equal((await mcpPost(resource, toolCall('transfer', { amount: 50 }), await bearer({ act: { sub: 'other-agent' } }))).status, 403);
    });
    it('refused by a CEL rule on the arguments', async () => {
      assert.equal((await mcpPost(resource, toolCall('transfer', { amount: 5000 }), await bearer())).status, 403);
    });
    it('refused (fail closed) when the rule cannot be evaluated', async () => {
      assert.equal((await mcpPost(resource, toolCall('transfer', {}), await bearer())).status, 403);
    });
    it('refused, not "unknown", for a tool without a rule when unlisted tools are denied', async () => {
      const res = await mcpPost(resource, toolCall('delete_everything'), await bearer());
      assert.equal(res.status, 403);
      assert.match(errorOf(res).message, /delete_everything was refused/);
    });
    it('refused by a route rule over the claims', async () => {
      assert.equal((await mcpPost(resource, toolCall('echo'), await bearer({ sub: 'mallory' }))).status, 403);
    });
    it('tools/list shows only the tools the caller may call', async () => {
      const list = { jsonrpc: '2.0', id: 3, method: 'tools/list' };
      const all = await mcpPost(resource, list, await bearer());
      const names = ((all.json!.result as { tools: { name: string }[] }).tools).map((t) => t.name);
      assert.deepEqual(names, ['read_balance', 'transfer', 'echo', 'stream', 'slow', 'fails', 'rpc_error']);
      const readOnly = await mcpPost(resource, list, await bearer({ scope: 'banking:read' }));
      const visible = ((readOnly.json!.result as { tools: { name: string }[] }).tools).map((t) => t.name);
      assert.ok(!visible.includes('transfer'));
      assert.ok(visible.includes('read_balance'));
      assert.equal(readOnly.headers.get('content-length'), String(Buffer.byteLength(readOnly.text)));
    });
  });

  describe('throttling', () => {
    it('429 with Retry-After once a limit is used up; other subjects and tools keep their budget', async () => {
      const headers = await bearer({ sub: 'carol' });
      for (let i = 0; i < 3; i++) assert.equal((await mcpPost(resource, toolCall('echo'), headers)).status, 200);
      const limited = await mcpPost(resource, toolCall('echo'), headers);
      assert.equal(limited.status, 429);
      assert.equal(errorOf(limited).code, -32029);
      assert.ok(Number(limited.headers.get('retry-after')) >= 1);
      assert.equal((await mcpPost(resource, toolCall('read_balance'), headers)).status, 200, 'another tool');
      assert.equal((await mcpPost(resource, toolCall('echo'), await bearer({ sub: 'dave' }))).status, 200, 'another subject');
    });
    it('does not count protocol traffic', async () => {
      const url = `${gateway.url}/limited`;
      const headers = { authorization: `Bearer ${await issuer.sign({ sub: 'erin', aud: url })}` };
      for (let i = 0; i < 5; i++) assert.equal((await mcpPost(url, { jsonrpc: '2.0', id: i, method: 'ping' }, headers)).status, 200);
      assert.equal((await mcpPost(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers)).status, 202);
      // The whole budget (3) is still there for real calls.
      for (let i = 0; i < 3; i++) assert.equal((await mcpPost(url, toolCall('echo'), headers)).status, 200);
      assert.equal((await mcpPost(url, toolCall('echo'), headers)).status, 429);
    });
  });

  describe('upstream failures', () => {
    it('502 with a JSON-RPC error when the upstream is down', async () => {
      const url = `${gateway.url}/down`;
      const res = await mcpPost(url, toolCall('echo'), { authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: url })}` });
      assert.equal(res.status, 502);
      assert.equal(errorOf(res).code, -32603);
      assert.equal(res.json!.id, 1);
    });
    it('504 when the upstream does not answer in time', async () => {
      const res = await mcpPost(resource, toolCall('slow', { ms: 2000 }), await bearer());
      assert.equal(res.status, 504);
    });
    it('404 for a path no route serves', async () => {
      assert.equal((await mcpPost(`${gateway.url}/nothing`, toolCall('echo'))).status, 404);
    });
  });
});

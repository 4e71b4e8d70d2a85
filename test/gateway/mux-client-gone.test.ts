import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MCP_HEADERS, leaveDuringKeyFetch, mcpPost, startFakeIssuer, startScriptedUpstream, startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { needsRedis } from '../helpers/services.ts';

/**
 * A route with several upstreams, and a client that goes away while the gateway's filters still run
 * (the gateway's first key fetch is held): no upstream session is opened for its `initialize`, no
 * upstream GET stream for its GET — they would be held open for nobody — and it is audited as
 * `client_closed` (499), as the forwarders do for one upstream (test/gateway/client-gone.test.ts).
 * The GET needs a session: opened at a first gateway, the GET goes to a second one sharing its Redis,
 * whose first request it is.
 */
describe('gateway: several upstreams, a client gone before the gateway answers', needsRedis(), () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstreams: Awaited<ReturnType<typeof startScriptedUpstream>>[];
  const prefix = `mandate-test-mux-gone:${crypto.randomUUID()}`;
  const route = (url: string) => ({
    path: '/mcp',
    upstreams: [
      { name: 'a', url: upstreams[0]!.url },
      { name: 'b', url: upstreams[1]!.url },
    ],
    resource: `${url.replace(/:\d+$/, ':1')}/mcp`,
    authorization_servers: [issuer.issuer],
    tools: { a__echo: {}, b__echo: {} },
  });
  const startGateway = () => startTestGateway((url) => [route(url)], { rate_limit_prefix: prefix });
  const seen = (method: string) => upstreams.flatMap((upstream) => upstream.requests).filter((request) => (method === 'GET' ? request.method === 'GET' : request.body.includes(`"${method}"`))).length;

  before(async () => {
    issuer = await startFakeIssuer();
    upstreams = [await startScriptedUpstream(), await startScriptedUpstream()];
  });
  after(async () => {
    for (const upstream of upstreams ?? []) await upstream.close();
    await issuer?.close();
  });

  const goneDuringFilters = (gateway: TestGateway, request: { method: string; headers: Record<string, string>; body?: string }) => leaveDuringKeyFetch(gateway, issuer, request);

  it('initialize: no upstream session is opened, audited client_closed (499)', async () => {
    const gateway = await startGateway();
    try {
      const token = await issuer.sign({ sub: 'alice', aud: 'http://127.0.0.1:1/mcp', client_id: 'agent-1' });
      const before = seen('initialize');
      const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
      const event = await goneDuringFilters(gateway, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body });
      assert.deepEqual([event?.status, event?.decision, event?.method, event?.sub], [499, 'error', 'initialize', 'alice']);
      assert.equal(seen('initialize'), before, 'no upstream session opened for a client that had gone');
    } finally {
      await gateway.close();
    }
  });

  it('GET: no upstream stream is opened, audited client_closed (499); the gateway still closes', async () => {
    const first = await startGateway();
    const second = await startGateway();
    try {
      const token = await issuer.sign({ sub: 'alice', aud: 'http://127.0.0.1:1/mcp', client_id: 'agent-1' });
      const init = await mcpPost(`${first.url}/mcp`, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }, { authorization: `Bearer ${token}` });
      assert.equal(init.status, 200, init.text);
      const session = init.headers.get('mcp-session-id')!;
      const before = seen('GET');
      const event = await goneDuringFilters(second, { method: 'GET', headers: { accept: 'text/event-stream', authorization: `Bearer ${token}`, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' } });
      assert.deepEqual([event?.status, event?.decision, event?.http_method, event?.session], [499, 'error', 'GET', session]);
      assert.equal(seen('GET'), before, 'no upstream GET for a client that had gone');
      assert.equal((await fetch(`${first.url}/mcp`, { method: 'DELETE', headers: { authorization: `Bearer ${token}`, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' } })).status, 200);
    } finally {
      await second.close();
      await first.close();
    }
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { gatewayConfigSchema } from '../../src/config/gateway-schema.ts';
import { gatewayApp } from '../../src/gateway/chain.ts';
import { fetchForwarder } from '../../src/gateway/filters/proxy.ts';
import { compileRoute, type CompiledRoute } from '../../src/gateway/route.ts';
import type { GatewayAuditEvent } from '../../src/gateway/types.ts';
import { MCP_HEADERS, listedTools, startFakeIssuer, startScriptedUpstream, toolCall } from '../helpers/gateway.ts';

/**
 * The chain without Node's server: the Hono app with the portable fetch forwarder, as it would run
 * on Cloudflare Workers or Deno, driven through `app.request`.
 */
describe('gateway chain on the portable fetch forwarder', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let route: CompiledRoute;
  const events: GatewayAuditEvent[] = [];
  const resource = 'https://edge.example/mcp';
  let app: ReturnType<typeof gatewayApp>;
  let headers: Record<string, string>;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    const config = gatewayConfigSchema.parse({ routes: [{ path: '/mcp', upstream: upstream.url, resource, authorization_servers: [issuer.issuer], tools: { ...listedTools(), transfer: { scopes: ['banking:transfer'] } } }] });
    route = compileRoute(config.routes[0]!, 0, { env: {} });
    app = gatewayApp([route], { observer: { ready: () => undefined, record: (event) => void events.push(event) }, forwarder: fetchForwarder() });
    headers = { ...MCP_HEADERS, authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: resource, scope: 'banking:read' })}` };
  });
  after(async () => {
    route.close();
    await upstream.close();
    await issuer.close();
  });

  it('forwards, strips the caller token, and audits the outcome', async () => {
    const res = await app.request('https://edge.example/mcp', { method: 'POST', headers, body: JSON.stringify(toolCall('echo', { x: 1 }, 31)) });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /\{\\"x\\":1\}/);
    assert.equal(upstream.requests.at(-1)!.headers.authorization, undefined);
    const event = events.find((e) => e.jsonrpc_id === 31)!;
    assert.equal(event.outcome, 'result');
    assert.equal(event.upstream_status, 200);
  });

  it('streams SSE and audits once the stream ends', async () => {
    const res = await app.request('https://edge.example/mcp', { method: 'POST', headers, body: JSON.stringify(toolCall('stream', {}, 32)) });
    assert.equal(res.headers.get('x-accel-buffering'), 'no');
    assert.match(await res.text(), /"id":32/);
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(events.find((e) => e.jsonrpc_id === 32)!.outcome, 'result');
  });

  it('refuses a tool without its scope, like the Node server', async () => {
    const res = await app.request('https://edge.example/mcp', { method: 'POST', headers, body: JSON.stringify(toolCall('transfer')) });
    assert.equal(res.status, 403);
  });
});

/**
 * The portable fetch forwarder (the Worker's), in this process through `app.request`: what the
 * black-box suite found it doing differently from the Node forwarder in workerd, checked here
 * without workerd too — every Set-Cookie kept, `timeouts.response_ms` bounding the wait for the
 * headers only (504 after it, a stream may outlast it), and an audit event however a stream ends
 * (the client cancels: 499 `client_closed`; the upstream breaks off: `upstream_interrupted`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { gatewayConfigSchema } from '../../src/config/gateway-schema.ts';
import { gatewayApp } from '../../src/gateway/chain.ts';
import { fetchForwarder, upstreamError } from '../../src/gateway/filters/proxy.ts';
import { compileRoute, type CompiledRoute } from '../../src/gateway/route.ts';
import type { GatewayAuditEvent } from '../../src/gateway/types.ts';
import { startBlackboxUpstream } from '../helpers/blackbox-upstream.ts';
import { MCP_HEADERS, listedTools, startFakeIssuer, toolCall } from '../helpers/gateway.ts';

const RESOURCE = 'https://edge.example/mcp';

describe('the portable fetch forwarder', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
  let route: CompiledRoute;
  let app: ReturnType<typeof gatewayApp>;
  let headers: Record<string, string>;
  const events: GatewayAuditEvent[] = [];

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startBlackboxUpstream();
    const config = gatewayConfigSchema.parse({ routes: [{ path: '/mcp', upstream: upstream.url, resource: RESOURCE, authorization_servers: [issuer.issuer], tools: listedTools(['cookies', 'slow', 'stream', 'cut']), timeouts: { response_ms: 200 } }] });
    route = compileRoute(config.routes[0]!, 0, { env: {} });
    app = gatewayApp([route], { observer: { ready: () => undefined, record: (event) => void events.push(event) }, forwarder: fetchForwarder() });
    headers = { ...MCP_HEADERS, authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: RESOURCE })}` };
  });
  after(async () => {
    route.close();
    await upstream.close();
    await issuer.close();
  });

  const post = (tool: string, id: number) => app.request(RESOURCE, { method: 'POST', headers, body: JSON.stringify(toolCall(tool, {}, id)) });
  const eventFor = async (id: number) => {
    for (let i = 0; i < 100; i++) {
      const event = events.find((e) => e.jsonrpc_id === id);
      if (event) return event;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.fail(`no audit event for ${id}`);
  };

  it('keeps every Set-Cookie of the answer', async () => {
    const res = await post('cookies', 1);
    assert.equal(res.status, 200);
    assert.deepEqual(res.headers.getSetCookie(), ['a=1; Path=/', 'b=2; Path=/']);
    assert.equal(res.headers.get('x-upstream'), 'yes');
  });

  it('no headers within response_ms: 504 upstream_timeout (TimeoutError)', async () => {
    try {
      const res = await post('slow', 2);
      assert.equal(res.status, 504);
      const event = await eventFor(2);
      assert.equal(event.rejection, 'upstream_timeout');
      assert.equal(event.reason, 'upstream did not answer in time (TimeoutError)');
    } finally {
      upstream.release();
    }
  });

  it('a stream may last longer than response_ms', async () => {
    const res = await post('stream', 3);
    const reader = res.body!.getReader();
    let text = new TextDecoder().decode((await reader.read()).value);
    await new Promise((resolve) => setTimeout(resolve, 400));
    upstream.release();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += new TextDecoder().decode(chunk.value);
    assert.match(text, /"id":3,"result"/);
    assert.equal((await eventFor(3)).outcome, 'result');
  });

  it('the client cancels the stream: audited client_closed, 499, once', async () => {
    const res = await post('stream', 4);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    const event = await eventFor(4);
    assert.deepEqual([event.decision, event.rejection, event.status], ['error', 'client_closed', 499]);
    upstream.release();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(events.filter((e) => e.jsonrpc_id === 4).length, 1);
  });

  it('the upstream breaks off: the stream errors, audited upstream_interrupted', async () => {
    const res = await post('cut', 5);
    const reader = res.body!.getReader();
    await assert.rejects(async () => {
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read());
    });
    const event = await eventFor(5);
    assert.deepEqual([event.decision, event.rejection], ['error', 'upstream_interrupted']);
  });

  it("takes a DOMException's name, not its legacy numeric code, for the failure", () => {
    const timeout = upstreamError(new DOMException('late', 'TimeoutError'));
    assert.deepEqual([timeout.status, timeout.rejection, timeout.message], [504, 'upstream_timeout', 'upstream did not answer in time (TimeoutError)']);
    const refused = upstreamError(Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } }));
    assert.deepEqual([refused.status, refused.message], [502, 'upstream unavailable (ECONNREFUSED)']);
  });
});

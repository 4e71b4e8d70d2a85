import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mcpPost, startFakeIssuer, startScriptedUpstream, startTestGateway, toolCall, listedTools, type TestGateway } from '../helpers/gateway.ts';

describe('gateway: forwarding and streaming', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let resource: string;
  let token: string;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    gateway = await startTestGateway((url) => [
      { path: '/mcp', upstream: `${upstream.url}/`, rewrite: '/', resource: `${url}/mcp`, authorization_servers: [issuer.issuer], scopes: ['banking:read'], tools: listedTools() },
      { path: '/identified', upstream: upstream.url, resource: `${url}/identified`, authorization_servers: [issuer.issuer], identity_headers: true, tools: listedTools() },
    ]);
    resource = `${gateway.url}/mcp`;
    token = await issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1', scope: 'banking:read' });
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await issuer.close();
  });

  it('forwards a tool call with the path rewritten, without the caller token, and stamps it', async () => {
    const res = await mcpPost(`${resource}?x=1`, toolCall('echo', { a: 1 }), { authorization: `Bearer ${token}` });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual((res.json!.result as { content: { text: string }[] }).content[0]!.text, '{"a":1}');
    const seen = upstream.requests.at(-1)!;
    assert.equal(seen.url, '/?x=1');
    assert.equal(seen.headers.authorization, undefined, 'the caller token never reaches the upstream');
    assert.equal(seen.headers['x-request-id'], res.headers.get('x-request-id'));
    assert.equal(res.headers.get('mcp-session-id'), 'upstream-session');
  });

  it('streams SSE progress events as they come', async () => {
    const response = await fetch(resource, {
      method: 'POST',
      headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(toolCall('stream', {}, 7)),
    });
    assert.equal(response.headers.get('content-type'), 'text/event-stream');
    assert.equal(response.headers.get('x-accel-buffering'), 'no');
    const reader = response.body!.getReader();
    const first = await reader.read();
    const text = new TextDecoder().decode(first.value);
    assert.match(text, /notifications\/progress/, 'the first progress event arrives before the stream ends');
    let rest = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    assert.match(rest, /"id":7/);
    const events = await gateway.auditEvents();
    const event = events.find((e) => e.jsonrpc_id === 7)!;
    assert.equal(event.outcome, 'result');
    assert.equal(event.tool, 'stream');
  });

  it("a session is bound to the user who opened it: another user's token cannot ride it", async () => {
    const opened = await mcpPost(resource, toolCall('echo', {}, 8), { authorization: `Bearer ${token}` });
    const session = opened.headers.get('mcp-session-id')!;
    const mallory = await issuer.sign({ sub: 'mallory', aud: resource, client_id: 'agent-2', scope: 'banking:read' });
    const count = upstream.requests.length;
    const hijack = await mcpPost(resource, toolCall('echo', {}, 9), { authorization: `Bearer ${mallory}`, 'mcp-session-id': session });
    assert.equal(hijack.status, 404);
    assert.equal(upstream.requests.length, count, 'nothing reached the upstream');
    assert.equal((await gateway.auditEvents()).find((e) => e.jsonrpc_id === 9)!.rejection, 'session_mismatch');
    assert.equal((await mcpPost(resource, toolCall('echo', {}, 10), { authorization: `Bearer ${token}`, 'mcp-session-id': session })).status, 200);
  });

  it('a client that goes away aborts the upstream call, audited as client_closed', async () => {
    const abort = new AbortController();
    const pending = fetch(resource, {
      method: 'POST',
      headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(toolCall('slow', { ms: 3000 }, 11)),
      signal: abort.signal,
    }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 200));
    abort.abort();
    await pending;
    for (let i = 0; i < 50 && !(await gateway.auditEvents()).some((e) => e.jsonrpc_id === 11); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    const event = (await gateway.auditEvents()).find((e) => e.jsonrpc_id === 11)!;
    assert.equal(event.rejection, 'client_closed');
    assert.equal(event.status, 499);
  });

  it('X-Mandate-* headers from callers never reach the upstream; identity_headers tells it who is calling', async () => {
    await mcpPost(resource, toolCall('echo'), { authorization: `Bearer ${token}`, 'x-mandate-sub': 'admin' });
    assert.equal(upstream.requests.at(-1)!.headers['x-mandate-sub'], undefined);
    const identified = `${gateway.url}/identified`;
    const delegated = await issuer.sign({ sub: 'alice', aud: identified, client_id: 'agent-1', scope: 'banking:read', act: { sub: 'agent-1', client_id: 'agent-1' } });
    await mcpPost(identified, toolCall('echo'), { authorization: `Bearer ${delegated}`, 'x-mandate-sub': 'admin' });
    const seen = upstream.requests.at(-1)!.headers;
    assert.equal(seen['x-mandate-sub'], 'alice');
    assert.equal(seen['x-mandate-client-id'], 'agent-1');
    assert.equal(seen['x-mandate-scope'], 'banking:read');
    assert.deepEqual(JSON.parse(seen['x-mandate-act'] as string), [{ sub: 'agent-1', client_id: 'agent-1', sub_profile: '', iss: '' }]);
  });
});

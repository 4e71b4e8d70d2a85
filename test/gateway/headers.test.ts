import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { MCP_HEADERS, listedTools, mcpPost, startFakeIssuer, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';

/** A POST with headers exactly as given, repeats included (fetch would join or refuse some). */
function rawPost(url: string, rawHeaders: [string, string][], body: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    // An array value is sent as one header line per element.
    const headers: Record<string, string | string[]> = { 'content-length': String(Buffer.byteLength(body)) };
    for (const [name, value] of rawHeaders) {
      const known = headers[name];
      headers[name] = known === undefined ? value : [...(Array.isArray(known) ? known : [known]), value];
    }
    const req = httpRequest({ host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: 'POST', headers }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, json: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Issue 11, items 13 and 18: one credential per request (RFC 6750 §3.1), tools denied unless
 * listed, no hop-by-hop or client-address headers to the upstream, and no internal address in
 * the errors a client sees.
 */
describe('gateway headers: credentials, forwarded headers, upstream errors, unlisted tools', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let resource: string;
  let token: string;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    gateway = await startTestGateway((url) => [
      { path: '/mcp', upstream: upstream.url, resource: `${url}/mcp`, authorization_servers: [issuer.issuer], tools: listedTools() },
      // No unlisted_tools key: the shipped default.
      { path: '/default', upstream: upstream.url, resource: `${url}/default`, authorization_servers: [issuer.issuer], tools: { read_balance: {} } },
      // Nothing listens on port 9 (discard) on the loopback.
      { path: '/down', upstream: 'http://127.0.0.1:9/internal', resource: `${url}/down`, authorization_servers: [issuer.issuer], tools: listedTools() },
    ]);
    resource = `${gateway.url}/mcp`;
    token = await issuer.sign({ sub: 'alice', aud: resource, scope: 'banking:read' });
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await issuer.close();
  });

  const eventFor = async (id: string | string[] | null | undefined) => (await gateway.auditEvents()).find((event) => event.request_id === id);
  const mcpHeaders = Object.entries(MCP_HEADERS) as [string, string][];

  describe('item 13: one credential per request', () => {
    it('two Authorization headers (both valid): 400 invalid_request, audited, not forwarded', async () => {
      const before = upstream.requests.length;
      const res = await rawPost(resource, [...mcpHeaders, ['authorization', `Bearer ${token}`], ['authorization', `Bearer ${token}`]], JSON.stringify(toolCall('echo', {}, 1301)));
      assert.equal(res.status, 400);
      assert.equal((res.json.error as { code: number }).code, -32600);
      assert.match(String(res.headers['www-authenticate']), /error="invalid_request"/);
      const event = await eventFor(res.headers['x-request-id']);
      assert.equal(event?.rejection, 'invalid_request');
      assert.equal(event?.reason, 'two Authorization headers');
      assert.equal(upstream.requests.length, before);
    });

    it('two credentials joined in one header line (as fetch sends repeats): 400 invalid_request', async () => {
      const res = await mcpPost(resource, toolCall('echo', {}, 1302), { authorization: `Bearer ${token}, Bearer ${token}` });
      assert.equal(res.status, 400);
      assert.equal((res.json!.error as { code: number }).code, -32600);
      assert.equal((await eventFor(res.headers.get('x-request-id')))?.reason, 'two Authorization headers');
    });

    it('a token in the header and one in the query: 400 invalid_request', async () => {
      const res = await mcpPost(`${resource}?access_token=${token}`, toolCall('echo', {}, 1303), { authorization: `Bearer ${token}` });
      assert.equal(res.status, 400);
      assert.equal((res.json!.error as { code: number }).code, -32600);
      const event = await eventFor(res.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'invalid_request');
      assert.equal(event?.reason, 'access_token in the query (only the Authorization header is accepted)');
    });

    it('one header still works', async () => {
      const res = await mcpPost(resource, toolCall('echo', {}, 1304), { authorization: `Bearer ${token}` });
      assert.equal(res.status, 200, res.text);
    });
  });

  describe('item 18: unlisted tools, forwarded headers, upstream errors', () => {
    it('unlisted_tools defaults to deny: a tool without an entry is refused (403, -32003, tool_denied) and hidden', async () => {
      const url = `${gateway.url}/default`;
      const auth = { authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: url, scope: 'banking:read' })}` };
      const res = await mcpPost(url, toolCall('echo', { marker: 'unlisted-1801' }, 1801), auth);
      assert.equal(res.status, 403);
      assert.equal((res.json!.error as { code: number }).code, -32003);
      const event = await eventFor(res.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'tool_denied');
      assert.equal(event?.reason, 'tool echo has no rule and unlisted tools are denied');
      assert.ok(!upstream.requests.some((request) => request.body.includes('unlisted-1801')));
      const listed = await mcpPost(url, { jsonrpc: '2.0', id: 1802, method: 'tools/list' }, auth);
      assert.deepEqual((listed.json!.result as { tools: { name: string }[] }).tools.map((tool) => tool.name), ['read_balance']);
      assert.equal((await mcpPost(url, toolCall('read_balance', {}, 1803), auth)).status, 200);
    });

    it('headers named in Connection and client-address headers never reach the upstream', async () => {
      const res = await rawPost(
        resource,
        [
          ...mcpHeaders,
          ['authorization', `Bearer ${token}`],
          ['connection', 'keep-alive, X-Hop-Secret'],
          ['x-hop-secret', 'for the next hop only'],
          ['x-real-ip', '10.0.0.1'],
          ['cf-connecting-ip', '10.0.0.2'],
          ['true-client-ip', '10.0.0.3'],
          ['x-forwarded-for', '10.0.0.4'],
          ['x-forwarded-host', 'evil.example'],
          ['forwarded', 'for=10.0.0.5'],
          ['x-kept', 'ordinary headers pass'],
        ],
        JSON.stringify(toolCall('echo', { marker: 'headers-1804' }, 1804)),
      );
      assert.equal(res.status, 200);
      const seen = upstream.requests.find((request) => request.body.includes('headers-1804'))!.headers;
      for (const name of ['x-hop-secret', 'x-real-ip', 'cf-connecting-ip', 'true-client-ip', 'forwarded']) assert.equal(seen[name], undefined, name);
      assert.equal(seen['x-forwarded-for'], '127.0.0.1', 'the gateway sets the peer it saw');
      assert.equal(seen['x-forwarded-host'], new URL(resource).host);
      assert.equal(seen['x-kept'], 'ordinary headers pass');
    });

    it('an unreachable upstream: 502 with a generic message; the address and cause only in the audit', async () => {
      const url = `${gateway.url}/down`;
      const res = await mcpPost(url, toolCall('echo', {}, 1805), { authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: url })}` });
      assert.equal(res.status, 502);
      assert.equal((res.json!.error as { code: number }).code, -32603);
      assert.equal((res.json!.error as { message: string }).message, 'the upstream server is unavailable');
      assert.doesNotMatch(res.text, /127\.0\.0\.1|:9\b|ECONNREFUSED/);
      const event = await eventFor(res.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'upstream_unavailable');
      assert.match(String(event?.reason), /ECONNREFUSED/);
    });
  });
});

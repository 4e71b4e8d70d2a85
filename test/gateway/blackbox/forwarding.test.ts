/**
 * The gateway as a black box, on the Node gateway and on the Worker in workerd (issue 16):
 * forwarding (path rewrite, headers the upstream must not get, identity headers, CORS), upstream
 * failures (unreachable → 502, too slow → 504), a redirect from the upstream (passed on, never
 * followed), a client that goes away mid-stream, and a request with two credentials (RFC 6750
 * §3.1). One gateway per target for the whole file.
 */
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../../helpers/auth-server.ts';
import { startBlackboxUpstream } from '../../helpers/blackbox-upstream.ts';
import { MCP_HEADERS, listedTools, mcpPost, startFakeIssuer, toolCall } from '../../helpers/gateway.ts';
import { assertRefused, onTarget, startGatewayOn, targets, type TargetGateway } from '../../helpers/gateway-targets.ts';

const INSPECTOR = 'http://localhost:6274';

for (const target of targets) {
  describe(`black box [${target}]: forwarding and upstream failures`, onTarget(target), () => {
    let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
    let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
    let gateway: TargetGateway;
    let closedPort: number;
    // Where the upstream's redirect points: it must never be called by the gateway.
    const elsewhere: { url: string; headers: IncomingHttpHeaders }[] = [];
    const redirectTarget = createServer((req, res) => {
      elsewhere.push({ url: req.url!, headers: req.headers });
      res.writeHead(200, { 'content-type': 'text/html', 'set-cookie': 'planted=1; Path=/' }).end('<script>alert(document.domain)</script>');
    });
    let redirectUrl: string;

    before(async () => {
      await new Promise<void>((r) => redirectTarget.listen(0, '127.0.0.1', r));
      redirectUrl = `http://127.0.0.1:${(redirectTarget.address() as AddressInfo).port}/stolen`;
      issuer = await startFakeIssuer();
      upstream = await startBlackboxUpstream();
      closedPort = await freePort();
      gateway = await startGatewayOn(target, (origin) => {
        const route = (path: string, extra: Record<string, unknown> = {}) => ({ path, upstream: upstream.url, resource: `${origin}${path}`, authorization_servers: [issuer.issuer], tools: listedTools(['echo', 'stream', 'slow', 'cut', 'cookies', 'redirect']), ...extra });
        return [
          route('/mcp', { upstream: `${upstream.url}/inner/`, rewrite: '/inner/', allowed_origins: [INSPECTOR] }),
          route('/identified', { identity_headers: true }),
          route('/down', { upstream: `http://127.0.0.1:${closedPort}` }),
          route('/slow', { timeouts: { response_ms: 300 } }),
        ];
      });
    });
    after(async () => {
      await gateway?.stop();
      await upstream?.close();
      await issuer?.close();
      redirectTarget.closeAllConnections();
      await new Promise<void>((r) => redirectTarget.close(() => r()));
    });

    const bearer = async (path: string, claims: Record<string, unknown> = {}) => ({ authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: `${gateway.url}${path}`, client_id: 'agent-1', scope: 'banking:read', ...claims })}` });

    it('forwards with the path rewritten and the query kept; hop-by-hop, DPoP, X-Mandate-* and X-Forwarded-* from the caller are not forwarded', async () => {
      const res = await mcpPost(`${gateway.url}/mcp/sub?x=1`, toolCall('echo', { a: 1 }), { ...(await bearer('/mcp')), 'x-mandate-sub': 'admin', 'x-forwarded-for': '6.6.6.6', 'x-custom': 'kept', dpop: 'a-proof-for-the-gateway' });
      assert.equal(res.status, 200, res.text);
      const seen = upstream.requests.at(-1)!;
      assert.equal(seen.url, '/inner/sub?x=1');
      assert.equal(seen.headers.authorization, undefined);
      assert.equal(seen.headers['x-mandate-sub'], undefined);
      assert.equal(seen.headers.dpop, undefined, "the caller's DPoP proof is a credential for the gateway, never forwarded");
      assert.notEqual(seen.headers['x-forwarded-for'], '6.6.6.6');
      assert.equal(seen.headers['x-custom'], 'kept');
      assert.equal(seen.headers['x-request-id'], res.headers.get('x-request-id'));
      assert.equal(seen.headers['x-forwarded-host'], new URL(gateway.url).host);
      assert.equal(seen.headers['x-forwarded-proto'], 'http');
      // The caller's address as the gateway saw it (Node: the socket's peer; a Worker: CF-Connecting-IP), replacing the caller's claim.
      assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    });

    it("a redirect from the upstream reaches the client as sent (307, Location unchanged); the gateway does not follow it", async () => {
      const res = await fetch(`${gateway.url}/identified`, {
        method: 'POST',
        redirect: 'manual',
        headers: { ...MCP_HEADERS, ...(await bearer('/identified')), cookie: 'app=1' },
        body: JSON.stringify(toolCall('redirect', { to: redirectUrl })),
      });
      const body = await res.text();
      assert.equal(res.status, 307, body);
      assert.equal(res.headers.get('location'), redirectUrl);
      assert.deepEqual(res.headers.getSetCookie(), [], "nothing of the redirect target's");
      assert.equal(body, 'moved', "the upstream's own body");
      const event = await gateway.waitForAudit((e) => e.request_id === res.headers.get('x-request-id'));
      assert.equal(event.upstream_status, 307);
      assert.equal(event.decision, 'allow');
      assert.deepEqual(elsewhere, [], 'the identity headers, cookies and body went to the upstream only');
    });

    it("a page of the gateway's own loopback origin may call it; a DNS-rebound one (other Host) may not", async () => {
      const own = await mcpPost(`${gateway.url}/identified`, toolCall('echo'), { ...(await bearer('/identified')), origin: gateway.url });
      assert.equal(own.status, 200, own.text);
      const rebound = await mcpPost(`${gateway.url}/identified`, toolCall('echo'), { ...(await bearer('/identified')), origin: `http://evil.example:${new URL(gateway.url).port}`, host: `evil.example:${new URL(gateway.url).port}` });
      await assertRefused(gateway, rebound, { status: 403, code: -32600, rejection: 'origin_not_allowed', reason: 'origin not allowed' });
    });

    it("the upstream's response headers come back, each Set-Cookie kept", async () => {
      const res = await mcpPost(`${gateway.url}/mcp`, toolCall('cookies'), await bearer('/mcp'));
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get('x-upstream'), 'yes');
      assert.deepEqual(res.headers.getSetCookie(), ['a=1; Path=/', 'b=2; Path=/']);
    });

    it('identity_headers: the upstream is told who calls, from the verified token only', async () => {
      const res = await mcpPost(`${gateway.url}/identified`, toolCall('echo'), { ...(await bearer('/identified', { act: { sub: 'agent-1', client_id: 'agent-1' } })), 'x-mandate-sub': 'admin' });
      assert.equal(res.status, 200, res.text);
      const seen = upstream.requests.at(-1)!.headers;
      assert.equal(seen['x-mandate-sub'], 'alice');
      assert.equal(seen['x-mandate-client-id'], 'agent-1');
      assert.equal(seen['x-mandate-scope'], 'banking:read');
      assert.deepEqual(JSON.parse(seen['x-mandate-act'] as string), [{ sub: 'agent-1', client_id: 'agent-1', sub_profile: '', iss: '' }]);
    });

    it('CORS: a preflight from an allowed origin is answered by the gateway; its calls carry the headers; another origin is refused', async () => {
      const preflight = await fetch(`${gateway.url}/mcp`, { method: 'OPTIONS', headers: { origin: INSPECTOR, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers.get('access-control-allow-origin'), INSPECTOR);
      const res = await mcpPost(`${gateway.url}/mcp`, toolCall('echo'), { ...(await bearer('/mcp')), origin: INSPECTOR });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get('access-control-allow-origin'), INSPECTOR);
      const refused = await fetch(`${gateway.url}/mcp`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
      assert.equal(refused.status, 403);
    });

    it('two Authorization headers: 400 invalid_request (RFC 6750 §3.1)', async () => {
      const token = (await bearer('/mcp')).authorization;
      const body = JSON.stringify(toolCall('echo'));
      // fetch would join them into one header: sent raw, as two lines.
      const res = await new Promise<{ status: number; headers: Headers; text: string }>((resolve, reject) => {
        const url = new URL(`${gateway.url}/mcp`);
        const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: ['host', url.host, 'accept', MCP_HEADERS.accept, 'content-type', 'application/json', 'content-length', String(Buffer.byteLength(body)), 'authorization', token, 'authorization', token] }, (response) => {
          let text = '';
          response.on('data', (chunk: Buffer) => (text += chunk.toString()));
          response.on('end', () => resolve({ status: response.statusCode!, headers: new Headers(response.headers as Record<string, string>), text }));
        });
        req.on('error', reject);
        req.end(body);
      });
      await assertRefused(gateway, { ...res, json: JSON.parse(res.text) as Record<string, unknown> }, { status: 400, code: -32600, rejection: 'invalid_request', reason: 'two Authorization headers' });
    });

    it('an unreachable upstream: 502, audited upstream_unavailable', async () => {
      const res = await mcpPost(`${gateway.url}/down`, toolCall('echo'), await bearer('/down'));
      await assertRefused(gateway, res, { status: 502, code: -32603, rejection: 'upstream_unavailable', reason: /^upstream unavailable \(.+\)$/ });
    });

    it('an upstream slower than timeouts.response_ms: 504, audited upstream_timeout', async () => {
      try {
        const res = await mcpPost(`${gateway.url}/slow`, toolCall('slow'), await bearer('/slow'));
        await assertRefused(gateway, res, { status: 504, code: -32603, rejection: 'upstream_timeout', reason: /^upstream did not answer in time \((UND_ERR_HEADERS_TIMEOUT|TimeoutError)\)$/ });
      } finally {
        upstream.release();
      }
    });

    it('timeouts.response_ms bounds the wait for the answer, not the answer: a stream may last longer', async () => {
      const response = await fetch(`${gateway.url}/slow`, { method: 'POST', headers: { ...MCP_HEADERS, ...(await bearer('/slow')) }, body: JSON.stringify(toolCall('stream', {}, 12)) });
      assert.equal(response.status, 200);
      const reader = response.body!.getReader();
      let received = '';
      try {
        const first = await reader.read();
        received += new TextDecoder().decode(first.value);
        assert.match(received, /"progress":1/);
        // Past the route's 300 ms response timeout before the upstream sends the rest.
        await new Promise((r) => setTimeout(r, 600));
      } finally {
        upstream.release();
      }
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        received += new TextDecoder().decode(value);
      }
      assert.match(received, /"id":12,"result"/);
      const event = await gateway.waitForAudit((e) => e.request_id === response.headers.get('x-request-id'));
      assert.equal(event.decision, 'allow');
      assert.equal(event.outcome, 'result');
    });

    it('a client that goes away mid-stream: audited client_closed, 499', async () => {
      const abort = new AbortController();
      const response = await fetch(`${gateway.url}/mcp`, { method: 'POST', headers: { ...MCP_HEADERS, ...(await bearer('/mcp')) }, body: JSON.stringify(toolCall('stream', {}, 11)), signal: abort.signal });
      assert.equal(response.status, 200);
      const requestId = response.headers.get('x-request-id');
      const reader = response.body!.getReader();
      try {
        const first = await reader.read();
        assert.match(new TextDecoder().decode(first.value), /"progress":1/);
        abort.abort();
        await reader.read().catch(() => undefined);
        // Node notices the closed socket at once. workerd notices only when it next writes to the
        // client (docs/edge.md): the upstream's next event, which release() lets through.
        if (target === 'node') assert.equal((await gateway.waitForAudit((e) => e.request_id === requestId)).rejection, 'client_closed');
        upstream.release();
        const event = await gateway.waitForAudit((e) => e.request_id === requestId);
        assert.equal(event.tool, 'stream');
        assert.equal(event.rejection, 'client_closed');
        assert.equal(event.status, 499);
        assert.equal(event.decision, 'error');
      } finally {
        upstream.release();
      }
    });

    it('an upstream that breaks off mid-stream: no result reaches the client, audited upstream_interrupted', async () => {
      const response = await fetch(`${gateway.url}/mcp`, { method: 'POST', headers: { ...MCP_HEADERS, ...(await bearer('/mcp')) }, body: JSON.stringify(toolCall('cut', {}, 13)) });
      assert.equal(response.status, 200);
      let received = '';
      let failed: unknown;
      const reader = response.body!.getReader();
      try {
        for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) received += new TextDecoder().decode(chunk.value);
      } catch (error) {
        failed = error;
      }
      assert.match(received, /"progress":1/);
      const event = await gateway.waitForAudit((e) => e.request_id === response.headers.get('x-request-id'));
      assert.equal(event.decision, 'error');
      assert.equal(event.rejection, 'upstream_interrupted');
      assert.equal(event.status, 200);
      assert.equal(typeof event.reason, 'string');
      assert.doesNotMatch(received, /"id":13/, 'no result: the client cannot take the answer for complete');
      // Node cuts the connection; workerd (under Miniflare) ends the chunked answer without an error (docs/edge.md).
      if (target === 'node') assert.ok(failed, 'the stream ends with an error, not as if complete');
    });

    it('a path no route serves: 404, JSON-RPC -32601', async () => {
      const res = await mcpPost(`${gateway.url}/nowhere`, toolCall('echo'));
      assert.equal(res.status, 404);
      assert.equal((res.json!.error as { code: number }).code, -32601);
    });
  });
}

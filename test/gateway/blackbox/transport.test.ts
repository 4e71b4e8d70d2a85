/**
 * The gateway as a black box, on the Node gateway and on the Worker in workerd (issue 16): an SSE
 * answer streamed event by event (the upstream holds its last events until the test has read the
 * first one through the gateway), and MCP sessions bound to the subject and client that opened
 * them (another caller's `Mcp-Session-Id` → 404, as an unknown session; DELETE ends it).
 * One gateway per target for the whole file.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBlackboxUpstream } from '../../helpers/blackbox-upstream.ts';
import { MCP_HEADERS, listedTools, mcpPost, startFakeIssuer, toolCall } from '../../helpers/gateway.ts';
import { assertRefused, onTarget, startGatewayOn, targets, type TargetGateway } from '../../helpers/gateway-targets.ts';

const PROTOCOL = '2025-11-25';
const INITIALIZE = { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'blackbox', version: '1' } } };
const READ_MS = 5_000;

/** The next chunk of a stream, or a failure after READ_MS (a buffering gateway would never send it). */
async function readWithin(reader: ReadableStreamDefaultReader<Uint8Array>, what: string): Promise<ReadableStreamReadResult<Uint8Array>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error(`${what}: nothing within ${READ_MS} ms`)), READ_MS)));
  try {
    return await Promise.race([reader.read(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

for (const target of targets) {
  describe(`black box [${target}]: streaming and sessions`, onTarget(target), () => {
    let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
    let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
    let gateway: TargetGateway;
    let resource: string;

    before(async () => {
      issuer = await startFakeIssuer();
      upstream = await startBlackboxUpstream();
      gateway = await startGatewayOn(target, (origin) => [{ path: '/mcp', upstream: upstream.url, resource: `${origin}/mcp`, authorization_servers: [issuer.issuer], scopes: ['banking:read'], tools: listedTools(['echo', 'stream']) }]);
      resource = `${gateway.url}/mcp`;
    });
    after(async () => {
      await gateway?.stop();
      await upstream?.close();
      await issuer?.close();
    });

    const bearer = async (sub = 'alice', clientId = 'agent-1') => ({ authorization: `Bearer ${await issuer.sign({ sub, aud: resource, client_id: clientId, scope: 'banking:read' })}`, 'mcp-protocol-version': PROTOCOL });

    it('an SSE answer arrives event by event, not buffered; audited with its outcome', async () => {
      const response = await fetch(resource, { method: 'POST', headers: { ...MCP_HEADERS, ...(await bearer()) }, body: JSON.stringify(toolCall('stream', {}, 7)) });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-type'), 'text/event-stream');
      const reader = response.body!.getReader();
      const decoder = new TextDecoder();
      let received = '';
      try {
        // The upstream has sent only the first progress event; the rest waits for release().
        while (!received.includes('\n\n')) {
          const { done, value } = await readWithin(reader, 'the first event');
          assert.equal(done, false, 'the stream ended before its first event');
          received += decoder.decode(value, { stream: true });
        }
        assert.match(received, /"progress":1/);
        assert.doesNotMatch(received, /"id":7/, 'the result is not there yet');
      } finally {
        upstream.release();
      }
      for (;;) {
        const { done, value } = await readWithin(reader, 'the rest of the stream');
        if (done) break;
        received += decoder.decode(value, { stream: true });
      }
      assert.match(received, /"progress":2/);
      assert.match(received, /"id":7,"result":\{"content":\[\{"type":"text","text":"streamed"\}\]\}/);
      const event = await gateway.waitForAudit((e) => e.request_id === response.headers.get('x-request-id'));
      assert.equal(event.tool, 'stream');
      assert.equal(event.decision, 'allow');
      assert.equal(event.status, 200);
      assert.equal(event.outcome, 'result');
    });

    describe('sessions', () => {
      let session: string;
      before(async () => {
        const opened = await mcpPost(resource, INITIALIZE, await bearer('alice'));
        assert.equal(opened.status, 200, opened.text);
        session = opened.headers.get('mcp-session-id')!;
        assert.match(session, /^s-/);
      });

      it('the opener uses its session', async () => {
        const res = await mcpPost(resource, toolCall('echo', {}, 2), { ...(await bearer('alice')), 'mcp-session-id': session });
        assert.equal(res.status, 200, res.text);
        assert.equal(upstream.requests.at(-1)!.headers['mcp-session-id'], session);
      });

      it("another subject's call with the session id: 404 as an unknown session, nothing forwarded, audited session_mismatch", async () => {
        const count = upstream.requests.length;
        const res = await mcpPost(resource, toolCall('echo', {}, 3), { ...(await bearer('mallory')), 'mcp-session-id': session });
        await assertRefused(gateway, res, { status: 404, code: -32001, rejection: 'session_mismatch', reason: 'session opened by another subject' });
        assert.equal(upstream.requests.length, count);
      });

      it('the same subject through another client: 404, audited session_mismatch', async () => {
        const res = await mcpPost(resource, toolCall('echo', {}, 4), { ...(await bearer('alice', 'agent-2')), 'mcp-session-id': session });
        await assertRefused(gateway, res, { status: 404, code: -32001, rejection: 'session_mismatch', reason: 'session opened by the same subject through another client' });
      });

      it("the session's GET stream: its opener's is streamed; another subject's GET → 404", async () => {
        const refused = await fetch(resource, { headers: { accept: 'text/event-stream', ...(await bearer('mallory')), 'mcp-session-id': session } });
        const text = await refused.text();
        await assertRefused(gateway, { status: refused.status, headers: refused.headers, text, json: JSON.parse(text) as Record<string, unknown> }, { status: 404, code: -32001, rejection: 'session_mismatch', reason: 'session opened by another subject' });
        const response = await fetch(resource, { headers: { accept: 'text/event-stream', ...(await bearer('alice')), 'mcp-session-id': session } });
        assert.equal(response.status, 200);
        assert.equal(response.headers.get('content-type'), 'text/event-stream');
        const reader = response.body!.getReader();
        try {
          const first = await readWithin(reader, 'the GET stream');
          assert.match(new TextDecoder().decode(first.value), /notifications\/tools\/list_changed/);
        } finally {
          upstream.release();
        }
        while (!(await readWithin(reader, 'the end of the GET stream')).done);
        const event = await gateway.waitForAudit((e) => e.request_id === response.headers.get('x-request-id'));
        assert.equal(event.http_method, 'GET');
        assert.equal(event.decision, 'allow');
        assert.equal(event.session, session);
      });

      it('a session opened by an answer in SSE is bound too', async () => {
        const opened = await mcpPost(resource, INITIALIZE, { ...(await bearer('carol')), 'x-answer': 'sse' });
        assert.equal(opened.status, 200, opened.text);
        const carols = opened.headers.get('mcp-session-id')!;
        assert.match(opened.text, /^event: message\ndata: .*"serverInfo"/);
        assert.equal((await mcpPost(resource, toolCall('echo', {}, 8), { ...(await bearer('carol')), 'mcp-session-id': carols })).status, 200);
        const res = await mcpPost(resource, toolCall('echo', {}, 9), { ...(await bearer('mallory')), 'mcp-session-id': carols });
        await assertRefused(gateway, res, { status: 404, code: -32001, rejection: 'session_mismatch', reason: 'session opened by another subject' });
      });

      it('a session id the gateway never bound: 404, audited unknown_session', async () => {
        const res = await mcpPost(resource, toolCall('echo', {}, 5), { ...(await bearer('alice')), 'mcp-session-id': 's-made-up' });
        await assertRefused(gateway, res, { status: 404, code: -32001, rejection: 'unknown_session', reason: /^no binding for this Mcp-Session-Id/ });
      });

      it('DELETE by its opener ends the session at the gateway too', async () => {
        const other = await mcpPost(resource, INITIALIZE, await bearer('bob'));
        const bobs = other.headers.get('mcp-session-id')!;
        assert.notEqual(bobs, session);
        const refused = await fetch(resource, { method: 'DELETE', headers: { ...(await bearer('alice')), 'mcp-session-id': bobs } });
        assert.equal(refused.status, 404, 'alice cannot end bob’s session');
        const ended = await fetch(resource, { method: 'DELETE', headers: { ...(await bearer('bob')), 'mcp-session-id': bobs } });
        assert.equal(ended.status, 200);
        // The binding is ended after the answer (not awaited by it): bounded wait for it to go.
        let res = await mcpPost(resource, toolCall('echo', {}, 6), { ...(await bearer('bob')), 'mcp-session-id': bobs });
        for (let i = 0; i < 40 && res.status === 200; i++) {
          await new Promise((r) => setTimeout(r, 50));
          res = await mcpPost(resource, toolCall('echo', {}, 6), { ...(await bearer('bob')), 'mcp-session-id': bobs });
        }
        await assertRefused(gateway, res, { status: 404, code: -32001, rejection: 'unknown_session', reason: /^no binding for this Mcp-Session-Id/ });
      });
    });
  });
}

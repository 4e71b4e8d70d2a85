import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MCP_HEADERS, leaveDuringKeyFetch, listedTools, startFakeIssuer, startScriptedUpstream, startTestGateway, toolCall } from '../helpers/gateway.ts';

/**
 * A client that goes away while the gateway's filters still run (here: the first key fetch is in
 * flight) must not be forwarded afterwards. Before the fix its request still went upstream, and a
 * GET stream opened that way outlived its client and held the gateway's close forever (a CI run
 * hung in test/e2e/enterprise-agent.test.ts's after hook on exactly that).
 */
describe('gateway: a client gone before forwarding', () => {
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  before(async () => {
    upstream = await startScriptedUpstream();
  });
  after(async () => {
    await upstream.close();
  });

  for (const [kind, init] of [
    ['a tool call', { method: 'POST', headers: MCP_HEADERS, body: JSON.stringify(toolCall('echo', {}, 41)) }],
    ['a GET stream', { method: 'GET', headers: { accept: 'text/event-stream' } }],
  ] as const) {
    it(`${kind}: nothing reaches the upstream, audited as client_closed (499), and the gateway still closes`, async () => {
      // Its own issuer and gateway: the first request of a route fetches the issuer's keys.
      const issuer = await startFakeIssuer();
      const gateway = await startTestGateway((url) => [{ path: '/mcp', upstream: upstream.url, resource: `${url}/mcp`, authorization_servers: [issuer.issuer], scopes: ['banking:read'], tools: listedTools() }]);
      const resource = `${gateway.url}/mcp`;
      try {
        const token = await issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1', scope: 'banking:read' });
        const forwarded = upstream.requests.length;
        // A raw connection, closed by the test: undici's fetch would keep its socket a while after an abort.
        const event = await leaveDuringKeyFetch(gateway, issuer, { method: init.method, headers: { ...init.headers, authorization: `Bearer ${token}` }, ...('body' in init ? { body: init.body } : {}) });
        assert.equal(event?.status, 499);
        assert.equal(event?.decision, 'error');
        assert.equal(event?.sub, 'alice', 'refused after the token was checked');
        assert.equal(upstream.requests.length, forwarded, 'nothing was forwarded for a client that had gone');
      } finally {
        await gateway.close();
        await issuer.close();
      }
    });
  }
});

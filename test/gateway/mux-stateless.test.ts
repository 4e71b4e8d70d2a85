import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startBankingServer, type BankingServer } from '../../examples/banking/server.ts';
import { freePort } from '../helpers/auth-server.ts';
import { mcpPost, startFakeIssuer, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';

/**
 * A client on the stateless revision (2026-07-28: no session) in front of upstreams on older
 * revisions (docs/gateway.md "Several MCP servers behind one route", Sessions): each upstream is
 * spoken to in the revision it negotiated, and one that needs a session gets the caller's own,
 * opened once and kept for the caller's later requests; an upstream that lost it (404) has it
 * opened again on the next request.
 */

/** An MCP server on 2025-11-25 that needs its session: it counts sessions and can forget them all. */
async function startSessionServer() {
  const live = new Set<string>();
  const state = { opened: 0, versions: [] as string[] };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk));
    req.on('end', () => {
      const message = JSON.parse(body || '{}') as { id?: number; method?: string; params?: { name?: string; arguments?: Record<string, unknown> } };
      state.versions.push(String(req.headers['mcp-protocol-version'] ?? ''));
      const json = (status: number, value: unknown, headers: Record<string, string> = {}) => res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(value));
      if (message.method === 'initialize') {
        const session = `s-${++state.opened}`;
        live.add(session);
        return json(200, { jsonrpc: '2.0', id: message.id, result: { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'sessions', version: '1' } } }, { 'mcp-session-id': session });
      }
      const session = String(req.headers['mcp-session-id'] ?? '');
      if (!live.has(session)) return json(session ? 404 : 400, { jsonrpc: '2.0', id: message.id ?? null, error: { code: -32001, message: session ? 'Session not found' : 'Bad Request: No valid session ID provided' } });
      if (req.method === 'DELETE') {
        live.delete(session);
        return res.writeHead(200).end();
      }
      if (message.id === undefined) return res.writeHead(202).end();
      if (message.method === 'tools/list') return json(200, { jsonrpc: '2.0', id: message.id, result: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } });
      return json(200, { jsonrpc: '2.0', id: message.id, result: { content: [{ type: 'text', text: `${session}: ${JSON.stringify(message.params?.arguments ?? {})}` }] } });
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    state,
    live,
    close: () => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections())),
  };
}

describe('gateway mux: stateless clients (2026-07-28) before upstreams on older revisions', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let bank: BankingServer;
  let sessions: Awaited<ReturnType<typeof startSessionServer>>;
  let gateway: TestGateway;
  let url: string;

  before(async () => {
    issuer = await startFakeIssuer();
    bank = await startBankingServer({ host: '127.0.0.1', port: 0 });
    sessions = await startSessionServer();
    gateway = await startTestGateway((origin) => [
      {
        path: '/mcp',
        upstreams: [
          { name: 'bank', url: bank.url },
          { name: 'old', url: sessions.url },
        ],
        resource: `${origin}/mcp`,
        authorization_servers: [issuer.issuer],
        identity_headers: true,
        tools: { bank__read_balance: {}, old__echo: {} },
      },
    ]);
    url = `${gateway.url}/mcp`;
  });
  after(async () => {
    await gateway?.close();
    await sessions?.close();
    await bank?.close();
    await issuer?.close();
  });

  const stateless = async (sub: string, method: string, name?: string) => ({
    authorization: `Bearer ${await issuer.sign({ sub, aud: url, client_id: 'agent' })}`,
    'mcp-protocol-version': '2026-07-28',
    'mcp-method': method,
    ...(name ? { 'mcp-name': name } : {}),
  });

  it("lists and calls both upstreams, each in its own revision; the caller's session at the older one is opened once and kept", async () => {
    const listed = await mcpPost(url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, await stateless('alice', 'tools/list'));
    assert.equal(listed.status, 200, listed.text);
    assert.deepEqual(((listed.json!.result as { tools: { name: string }[] }).tools.map((tool) => tool.name)).sort(), ['bank__read_balance', 'old__echo']);
    assert.equal(listed.headers.get('mcp-session-id'), null, 'no session for a stateless client');
    const opened = sessions.state.opened;
    assert.equal(opened, 1, 'one session opened at the older upstream');
    for (let i = 0; i < 2; i++) {
      const echo = await mcpPost(url, toolCall('old__echo', { n: i }, 2 + i), await stateless('alice', 'tools/call', 'old__echo'));
      assert.equal(echo.status, 200, echo.text);
      assert.match(echo.text, new RegExp(`s-1: \\{\\\\"n\\\\":${i}\\}`));
    }
    const balance = await mcpPost(url, toolCall('bank__read_balance', {}, 4), await stateless('alice', 'tools/call', 'bank__read_balance'));
    assert.equal(balance.status, 200, balance.text);
    assert.match(balance.text, /balance/);
    assert.equal(sessions.state.opened, 1, 'kept for the later requests');
    // initialize offers the client's revision (the upstream answers with its own), every later message is in the upstream's.
    assert.equal(sessions.state.versions[0], '2026-07-28');
    assert.ok(sessions.state.versions.slice(1).every((version) => version === '2025-11-25'), `the older upstream is spoken to in its revision: ${sessions.state.versions.join(', ')}`);
    const events = (await gateway.auditEvents()).filter((e) => e.tool === 'old__echo');
    assert.equal(events.length, 2);
    assert.ok(events.every((e) => e.upstream === 'old' && e.session === undefined && e.outcome === 'result'));
  });

  it('another caller gets sessions of their own, never the first caller\'s', async () => {
    const echo = await mcpPost(url, toolCall('old__echo', {}, 5), await stateless('bob', 'tools/call', 'old__echo'));
    assert.equal(echo.status, 200, echo.text);
    assert.match(echo.text, /s-2: /);
    assert.equal(sessions.state.opened, 2);
  });

  it('an upstream that lost the session: that request gets its 404; the next one opens a new session', async () => {
    sessions.live.clear();
    const lost = await mcpPost(url, toolCall('old__echo', {}, 6), await stateless('alice', 'tools/call', 'old__echo'));
    assert.equal(lost.status, 404, lost.text);
    const again = await mcpPost(url, toolCall('old__echo', {}, 7), await stateless('alice', 'tools/call', 'old__echo'));
    assert.equal(again.status, 200, again.text);
    assert.match(again.text, /s-3: /);
    assert.equal(sessions.state.opened, 3);
  });

  it('an upstream that cannot be opened: the sessions opened at the others serve that request only (ended once it is answered, audited left out); the next request tries again', async () => {
    const partial = await startTestGateway((origin) => [
      {
        path: '/mcp',
        upstreams: [
          { name: 'old', url: sessions.url },
          { name: 'down', url: 'http://127.0.0.1:1/mcp' },
        ],
        resource: `${origin}/mcp`,
        authorization_servers: [issuer.issuer],
        tools: { old__echo: {} },
      },
    ]);
    try {
      const at = `${partial.url}/mcp`;
      const headers = async () => ({ authorization: `Bearer ${await issuer.sign({ sub: 'carol', aud: at, client_id: 'agent' })}`, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'old__echo' });
      const opened = sessions.state.opened;
      const first = await mcpPost(at, toolCall('old__echo', {}, 8), await headers());
      assert.equal(first.status, 200, first.text);
      let event: Record<string, unknown> | undefined;
      for (let i = 0; i < 100 && !event; i++) {
        event = (await partial.auditEvents()).find((e) => e.tool === 'old__echo');
        if (!event) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.match(String(event?.reason), /^left out: down \(/, JSON.stringify(await partial.auditEvents()));
      assert.equal(sessions.state.opened, opened + 1);
      const session = `s-${opened + 1}`;
      for (let i = 0; i < 100 && sessions.live.has(session); i++) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(sessions.live.has(session), false, 'the session opened for that request only was ended');
      const second = await mcpPost(at, toolCall('old__echo', {}, 9), await headers());
      assert.equal(second.status, 200, second.text);
      assert.equal(sessions.state.opened, opened + 2, 'opened again: nothing half-open was kept');
    } finally {
      await partial.close();
    }
  });
});

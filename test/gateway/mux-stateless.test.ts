import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startBankingServer, type BankingServer } from '../../examples/banking/server.ts';
import { freePort } from '../helpers/auth-server.ts';
import { mcpPost, startFakeIssuer, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';

/**
 * A client on the stateless revision (2026-07-28: no session) in front of upstreams on older
 * revisions (docs/gateway.md "Several MCP servers behind one route", Sessions): each upstream is
 * spoken to in the revision it negotiated, and one that needs a session gets one for the request
 * alone, ended once it is answered — never shared by two requests, even of one caller (their ids
 * would meet in it: security review 18b).
 */

/** An MCP server on 2025-11-25 that needs its session: it counts sessions and can forget them all. */
async function startSessionServer(options: { sessions?: boolean } = {}) {
  const withSessions = options.sessions ?? true;
  const live = new Set<string>();
  const state = { opened: 0, versions: [] as string[], pending: new Set<string>() };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk));
    req.on('end', () => {
      const message = JSON.parse(body || '{}') as { id?: number; method?: string; params?: { name?: string; arguments?: Record<string, unknown> } };
      state.versions.push(String(req.headers['mcp-protocol-version'] ?? ''));
      const json = (status: number, value: unknown, headers: Record<string, string> = {}) => res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(value));
      if (message.method === 'initialize') {
        const session = `s-${++state.opened}`;
        if (withSessions) live.add(session);
        return json(200, { jsonrpc: '2.0', id: message.id, result: { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'sessions', version: '1' } } }, withSessions ? { 'mcp-session-id': session } : {});
      }
      const session = String(req.headers['mcp-session-id'] ?? '');
      if (withSessions && !live.has(session)) return json(session ? 404 : 400, { jsonrpc: '2.0', id: message.id ?? null, error: { code: -32001, message: session ? 'Session not found' : 'Bad Request: No valid session ID provided' } });
      if (req.method === 'DELETE') {
        live.delete(session);
        return res.writeHead(200).end();
      }
      if (message.id === undefined) return res.writeHead(202).end();
      // An SDK server answers a request on the stream of the request with its id: two requests with one id in one session meet.
      if (state.pending.has(`${session} ${message.id}`)) return json(409, { jsonrpc: '2.0', id: message.id, error: { code: -32600, message: 'a request with this id is already running in this session' } });
      state.pending.add(`${session} ${message.id}`);
      res.on('close', () => state.pending.delete(`${session} ${message.id}`));
      if (message.params?.name === 'slow') return void setTimeout(() => json(200, { jsonrpc: '2.0', id: message.id, result: { content: [{ type: 'text', text: `${session}: ${JSON.stringify(message.params?.arguments ?? {})}` }] } }), 200);
      if (message.method === 'tools/list') return json(200, { jsonrpc: '2.0', id: message.id, result: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }, { name: 'slow', inputSchema: { type: 'object' } }] } });
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
        tools: { bank__read_balance: {}, old__echo: {}, old__slow: {} },
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

  /** Waits until every upstream session opened so far has been ended (they end once their request is answered). */
  const allEnded = async () => {
    for (let i = 0; i < 100 && sessions.live.size > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(sessions.live.size, 0, `sessions left open: ${[...sessions.live].join(', ')}`);
  };

  it('lists and calls both upstreams, each in its own revision; each request has its own session at the older one, ended after its answer', async () => {
    const listed = await mcpPost(url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, await stateless('alice', 'tools/list'));
    assert.equal(listed.status, 200, listed.text);
    assert.deepEqual(((listed.json!.result as { tools: { name: string }[] }).tools.map((tool) => tool.name)).sort(), ['bank__read_balance', 'old__echo', 'old__slow']);
    assert.equal(listed.headers.get('mcp-session-id'), null, 'no session for a stateless client');
    assert.equal(sessions.state.opened, 1, 'one session opened at the older upstream for the list');
    for (let i = 0; i < 2; i++) {
      const echo = await mcpPost(url, toolCall('old__echo', { n: i }, 2 + i), await stateless('alice', 'tools/call', 'old__echo'));
      assert.equal(echo.status, 200, echo.text);
      assert.match(echo.text, new RegExp(`s-${2 + i}: \\{\\\\"n\\\\":${i}\\}`));
    }
    const balance = await mcpPost(url, toolCall('bank__read_balance', {}, 4), await stateless('alice', 'tools/call', 'bank__read_balance'));
    assert.equal(balance.status, 200, balance.text);
    assert.match(balance.text, /balance/);
    assert.equal(sessions.state.opened, 3, 'a call to the bank opens nothing at the older upstream');
    await allEnded();
    // initialize offers the client's revision (the upstream answers with its own), every later message is in the upstream's.
    assert.ok(sessions.state.versions.every((version) => version === '2026-07-28' || version === '2025-11-25'));
    assert.ok(sessions.state.versions.filter((version) => version === '2026-07-28').length === sessions.state.opened, `only each initialize offers 2026-07-28: ${sessions.state.versions.join(', ')}`);
    const events = (await gateway.auditEvents()).filter((e) => e.tool === 'old__echo');
    assert.equal(events.length, 2);
    assert.ok(events.every((e) => e.upstream === 'old' && e.session === undefined && e.outcome === 'result'));
  });

  it('two requests of one caller at once, with the same JSON-RPC id, never meet in one upstream session: each gets its own answer', async () => {
    const [a, b] = await Promise.all(
      ['agent-a', 'agent-b'].map(async (who) => mcpPost(url, toolCall('old__slow', { who }, 1), await stateless('alice', 'tools/call', 'old__slow'))),
    );
    assert.equal(a!.status, 200, a!.text);
    assert.equal(b!.status, 200, b!.text);
    assert.match(a!.text, /agent-a/);
    assert.doesNotMatch(a!.text, /agent-b/);
    assert.match(b!.text, /agent-b/);
    await allEnded();
  });

  it('an upstream that answered initialize without a session is not opened again for later requests', async () => {
    const plain = await startSessionServer({ sessions: false });
    const route = await startTestGateway((origin) => [
      {
        path: '/mcp',
        upstreams: [
          { name: 'plain', url: plain.url },
          { name: 'old', url: sessions.url },
        ],
        resource: `${origin}/mcp`,
        authorization_servers: [issuer.issuer],
        tools: { plain__echo: {}, old__echo: {} },
      },
    ]);
    try {
      const at = `${route.url}/mcp`;
      for (let i = 0; i < 3; i++) {
        const headers = { authorization: `Bearer ${await issuer.sign({ sub: 'dave', aud: at, client_id: 'agent' })}`, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'plain__echo' };
        const echo = await mcpPost(at, toolCall('plain__echo', { i }, 20 + i), headers);
        assert.equal(echo.status, 200, echo.text);
        assert.match(echo.text, new RegExp(`\\\\"i\\\\":${i}`));
      }
      assert.equal(plain.state.opened, 1, 'initialized once: it keeps no sessions');
      assert.ok(plain.state.versions.slice(1).every((version) => version === '2025-11-25'), 'spoken to in its revision');
    } finally {
      await route.close();
      await plain.close();
    }
  });

  it("an answer to an upstream's request from a stateless client: 400 invalid_request (the request's session ended with its answer)", async () => {
    const answer = await mcpPost(url, { jsonrpc: '2.0', id: 'mandate+old:0', result: { action: 'accept' } }, await stateless('alice', 'notifications/x'));
    assert.equal(answer.status, 400, answer.text);
    assert.equal((answer.json!.error as { code: number }).code, -32600);
    const event = (await gateway.auditEvents()).findLast((e) => e.kind === 'response')!;
    assert.equal(event.rejection, 'invalid_request');
    assert.equal(event.reason, 'answer id "mandate+old:0" names no upstream of the session');
  });

  it('an upstream that cannot be opened: left out of that request (audited), whose own sessions are still ended; the next request tries again', async () => {
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
      const headers = async () => ({ authorization: `Bearer ${await issuer.sign({ sub: 'carol', aud: at, client_id: 'agent' })}`, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' });
      const opened = sessions.state.opened;
      const first = await mcpPost(at, { jsonrpc: '2.0', id: 8, method: 'tools/list' }, await headers());
      assert.equal(first.status, 200, first.text);
      assert.deepEqual(((first.json!.result as { tools: { name: string }[] }).tools.map((tool) => tool.name)).sort(), ['old__echo'], 'the route lists old__echo only');
      let event: Record<string, unknown> | undefined;
      for (let i = 0; i < 100 && !event; i++) {
        event = (await partial.auditEvents()).find((e) => e.method === 'tools/list');
        if (!event) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.match(String(event?.reason), /^left out: down \(/, JSON.stringify(await partial.auditEvents()));
      assert.equal(sessions.state.opened, opened + 1);
      await allEnded();
      const second = await mcpPost(at, { jsonrpc: '2.0', id: 9, method: 'tools/list' }, await headers());
      assert.equal(second.status, 200, second.text);
      assert.equal(sessions.state.opened, opened + 2, 'opened again for the next request');
      await allEnded();
    } finally {
      await partial.close();
    }
  });
});

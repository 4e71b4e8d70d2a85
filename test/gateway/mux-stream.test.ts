/**
 * The GET stream of a multiplexed route (issue 18 part 2): each upstream's GET stream merged into
 * the client's, names and ids rewritten as in lists and call streams, on the Node gateway and the
 * Worker in workerd. Scripted upstreams for exact assertions; server-everything with the MCP SDK
 * client (which opens the GET stream itself) for a real server's notifications.
 */
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { freePort } from '../helpers/auth-server.ts';
import { startEverything } from '../helpers/everything.ts';
import { listedTools, mcpPost, startFakeIssuer } from '../helpers/gateway.ts';
import { assertRefused, onTarget, startGatewayOn, targets, type TargetGateway } from '../helpers/gateway-targets.ts';

const READ_MS = 10_000;

/** A scripted MCP server with sessions: `stream: false` answers GET with 405; otherwise the test pushes messages down its open GET streams. */
async function startStreamingUpstream(name: string, stream = true) {
  const open = new Set<ServerResponse>();
  const posted: Record<string, unknown>[] = [];
  const gets: { session?: string; lastEventId?: string; protocol?: string }[] = [];
  const closed: string[] = [];
  let opened: () => void = () => undefined;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk));
    req.on('end', () => {
      if (req.method === 'GET') {
        gets.push({ session: req.headers['mcp-session-id'] as string | undefined, lastEventId: req.headers['last-event-id'] as string | undefined, protocol: req.headers['mcp-protocol-version'] as string | undefined });
        if (!stream) return void res.writeHead(405).end();
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
        open.add(res);
        res.on('close', () => {
          if (open.delete(res)) closed.push('client');
        });
        opened();
        return;
      }
      if (req.method === 'DELETE') return void res.writeHead(200).end();
      const message = JSON.parse(body) as { id?: number; method?: string };
      posted.push(message as Record<string, unknown>);
      if (message.id === undefined || message.method === undefined) return void res.writeHead(202).end();
      const result =
        message.method === 'initialize'
          ? { protocolVersion: '2025-11-25', capabilities: { tools: { listChanged: true }, resources: { subscribe: true } }, serverInfo: { name, version: '1' } }
          : message.method === 'tools/list'
            ? { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] }
            : {};
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': `${name}-session` }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    posted,
    gets,
    closed,
    /** Resolves once a GET stream is open here. */
    streaming: () => (open.size > 0 ? Promise.resolve() : new Promise<void>((resolve) => (opened = resolve))),
    /** Writes raw SSE text down every open GET stream. */
    write: (text: string) => open.forEach((res) => res.write(text)),
    push: (message: unknown, extra = '') => open.forEach((res) => res.write(`${extra}event: message\ndata: ${JSON.stringify(message)}\n\n`)),
    /** Ends every open GET stream, as the server would. */
    end: () => {
      for (const res of open) {
        open.delete(res);
        res.end();
      }
    },
    /** Resolves once no GET stream is open here (the gateway cancelled it). */
    drained: async () => {
      while (open.size > 0) await new Promise((resolve) => setTimeout(resolve, 20));
    },
    close: () => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections())),
  };
}

/** The next SSE events on `reader` until `count` have arrived (their data, parsed). */
async function readEvents(reader: ReadableStreamDefaultReader<Uint8Array>, count: number, carry: { text: string }): Promise<{ raw: string[]; messages: Record<string, unknown>[] }> {
  const decoder = new TextDecoder();
  const raw: string[] = [];
  while (raw.length < count) {
    const cut = carry.text.indexOf('\n\n');
    if (cut >= 0) {
      raw.push(carry.text.slice(0, cut));
      carry.text = carry.text.slice(cut + 2);
      continue;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error(`no event within ${READ_MS} ms`)), READ_MS)));
    try {
      const { done, value } = await Promise.race([reader.read(), timeout]);
      assert.equal(done, false, 'the stream ended too early');
      carry.text += decoder.decode(value, { stream: true });
    } finally {
      clearTimeout(timer);
    }
  }
  const messages = raw.map((event) => JSON.parse(event.split('\n').find((line) => line.startsWith('data: '))!.slice(6)) as Record<string, unknown>);
  return { raw, messages };
}

for (const target of targets) {
  describe(`several MCP servers behind one route: the GET stream [${target}]`, onTarget(target), () => {
    let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
    let alpha: Awaited<ReturnType<typeof startStreamingUpstream>>;
    let gamma: Awaited<ReturnType<typeof startStreamingUpstream>>;
    let quiet: Awaited<ReturnType<typeof startStreamingUpstream>>;
    let silent: Awaited<ReturnType<typeof startStreamingUpstream>>;
    let everything: Awaited<ReturnType<typeof startEverything>>;
    let gateway: TargetGateway;
    let token: string;

    before(async () => {
      issuer = await startFakeIssuer();
      alpha = await startStreamingUpstream('alpha');
      gamma = await startStreamingUpstream('gamma');
      quiet = await startStreamingUpstream('quiet', false);
      silent = await startStreamingUpstream('silent', false);
      everything = await startEverything();
      gateway = await startGatewayOn(target, (origin) => [
        {
          path: '/mcp',
          upstreams: [
            { name: 'alpha', url: alpha.url },
            { name: 'gamma', url: gamma.url },
            { name: 'quiet', url: quiet.url },
          ],
          resource: `${origin}/mcp`,
          authorization_servers: [issuer.issuer],
          tools: listedTools(['alpha__echo', 'gamma__echo']),
        },
        {
          path: '/none',
          upstreams: [
            { name: 'quiet', url: quiet.url },
            { name: 'silent', url: silent.url },
          ],
          resource: `${origin}/none`,
          authorization_servers: [issuer.issuer],
        },
        {
          path: '/every',
          upstreams: [
            { name: 'every', url: everything.url },
            { name: 'alpha', url: alpha.url },
          ],
          resource: `${origin}/every`,
          authorization_servers: [issuer.issuer],
          tools: listedTools(['every__toggle-simulated-logging', 'alpha__echo']),
        },
      ]);
      token = await issuer.sign({ sub: 'alice', aud: `${gateway.url}/mcp`, client_id: 'mux-stream' });
    });
    after(async () => {
      await gateway?.stop();
      for (const server of [alpha, gamma, quiet, silent]) await server?.close();
      await everything?.close();
      await issuer?.close();
    });

    const openSession = async (path = '/mcp', bearer = token) => {
      const url = `${gateway.url}${path}`;
      const init = await mcpPost(url, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }, { authorization: `Bearer ${bearer}` });
      assert.equal(init.status, 200, init.text);
      const headers = { authorization: `Bearer ${bearer}`, 'mcp-session-id': init.headers.get('mcp-session-id')!, 'mcp-protocol-version': '2025-11-25' };
      return { url, headers, init };
    };

    it('merges the upstreams that offer a stream, renamed; drops responses and event ids; one upstream ending leaves the others; all ending ends it; audited once', async () => {
      const { url, headers, init } = await openSession();
      const capabilities = (init.json!.result as { capabilities: Record<string, Record<string, unknown>> }).capabilities;
      assert.equal(capabilities.tools!.listChanged, true, 'listChanged passed on: the notification reaches the client');
      assert.equal(capabilities.resources!.subscribe, true);
      const response = await fetch(url, { headers: { ...headers, accept: 'text/event-stream', 'last-event-id': 'alpha-9' } });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-type'), 'text/event-stream');
      assert.equal(response.headers.get('mcp-session-id'), headers['mcp-session-id']);
      await Promise.all([alpha.streaming(), gamma.streaming()]);
      const atAlpha = alpha.gets.at(-1)!;
      assert.equal(atAlpha.session, 'alpha-session', "the upstream's own session id");
      assert.equal(atAlpha.lastEventId, undefined, 'no resumption across upstreams');
      assert.equal(quiet.gets.length > 0, true, 'the upstream without a stream was asked');
      const reader = response.body!.getReader();
      const carry = { text: '' };

      alpha.push({ jsonrpc: '2.0', id: 1, result: { not: 'relayed' } }); // a response has no place on this stream
      alpha.write(': keep-alive\n\n');
      alpha.push({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' }, 'id: alpha-1\n');
      const first = await readEvents(reader, 1, carry);
      assert.deepEqual(first.messages[0], { jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
      assert.doesNotMatch(first.raw[0]!, /^id:/m, 'no event ids: the stream is not resumable');

      alpha.push({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'file:///a.txt' } });
      const updated = await readEvents(reader, 1, carry);
      assert.deepEqual(updated.messages[0], { jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'mandate+alpha:file:///a.txt' } });

      gamma.push({ jsonrpc: '2.0', id: 7, method: 'roots/list' });
      const asked = await readEvents(reader, 1, carry);
      assert.deepEqual(asked.messages[0], { jsonrpc: '2.0', id: 'mandate+gamma:7', method: 'roots/list' });
      // The client's answer goes back to gamma only, with its own id.
      const answered = await mcpPost(url, { jsonrpc: '2.0', id: 'mandate+gamma:7', result: { roots: [] } }, headers);
      assert.equal(answered.status, 202, answered.text);
      assert.deepEqual(gamma.posted.at(-1), { jsonrpc: '2.0', id: 7, result: { roots: [] } });
      assert.ok(!alpha.posted.some((message) => message.id === 7));

      gamma.push({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'hello' } });
      gamma.push({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 7, reason: 'late' } });
      const logged = await readEvents(reader, 2, carry);
      assert.deepEqual(logged.messages, [
        { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'hello' } },
        { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'mandate+gamma:7', reason: 'late' } },
      ]);

      alpha.end();
      gamma.push({ jsonrpc: '2.0', method: 'notifications/prompts/list_changed' });
      const still = await readEvents(reader, 1, carry);
      assert.equal(still.messages[0]!.method, 'notifications/prompts/list_changed', 'gamma still streams after alpha ended');
      gamma.end();
      let timer: NodeJS.Timeout | undefined;
      const ended = await Promise.race([reader.read(), new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error('the stream did not end')), READ_MS)))]).finally(() => clearTimeout(timer));
      assert.equal(ended.done, true, 'all upstream streams ended: so does the client’s');
      assert.equal(carry.text, '');

      const event = await gateway.waitForAudit((e) => e.request_id === response.headers.get('x-request-id'));
      assert.equal(event.http_method, 'GET');
      assert.equal(event.decision, 'allow');
      assert.equal(event.status, 200);
      assert.equal(event.session, headers['mcp-session-id']);
      assert.equal(event.reason, 'streams: alpha, gamma');
      assert.equal((await gateway.auditEvents()).filter((e) => e.request_id === event.request_id).length, 1, 'one event per GET stream');
      assert.equal((await fetch(url, { method: 'DELETE', headers })).status, 200);
    });

    it('the client going away ends every upstream stream; audited client_closed (499)', async () => {
      const { url, headers } = await openSession();
      const before = alpha.closed.length;
      const abort = new AbortController();
      const response = await fetch(url, { headers: { ...headers, accept: 'text/event-stream' }, signal: abort.signal });
      assert.equal(response.status, 200);
      await Promise.all([alpha.streaming(), gamma.streaming()]);
      alpha.push({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
      await readEvents(response.body!.getReader(), 1, { text: '' });
      abort.abort();
      // workerd notices the client is gone when it next writes to it.
      const nudge = setInterval(() => gamma.push({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'debug', data: 'tick' } }), 50);
      try {
        await Promise.all([alpha.drained(), gamma.drained()]);
      } finally {
        clearInterval(nudge);
      }
      assert.ok(alpha.closed.length > before, 'alpha saw its stream closed');
      // On workerd too: the request waits for the stream's end (ctx.waitUntil), so the cancel runs and is audited.
      const event = await gateway.waitForAudit((e) => e.request_id === response.headers.get('x-request-id'));
      assert.equal(event.decision, 'error');
      assert.equal(event.rejection, 'client_closed');
      assert.equal(event.status, 499);
      await fetch(url, { method: 'DELETE', headers });
    });

    it('no upstream offers a stream: 405, -32600, audited method_not_allowed; a GET by another subject: 404, session_mismatch; GET without a session: 400, -32600, no_session', async () => {
      const bearer = await issuer.sign({ sub: 'alice', aud: `${gateway.url}/none`, client_id: 'mux-stream' });
      const { url, headers } = await openSession('/none', bearer);
      const refused = await fetch(url, { headers: { ...headers, accept: 'text/event-stream' } });
      const text = await refused.text();
      await assertRefused(gateway, { status: refused.status, headers: refused.headers, text, json: JSON.parse(text) as Record<string, unknown> }, { status: 405, code: -32600, rejection: 'method_not_allowed', reason: /no upstream of this route offers a GET stream/ });
      // Another subject with the session id: refused before any upstream is asked.
      const mallory = await issuer.sign({ sub: 'mallory', aud: `${gateway.url}/none`, client_id: 'mux-stream' });
      const asked = quiet.gets.length;
      const stolen = await fetch(url, { headers: { ...headers, authorization: `Bearer ${mallory}`, accept: 'text/event-stream' } });
      const stolenText = await stolen.text();
      await assertRefused(gateway, { status: stolen.status, headers: stolen.headers, text: stolenText, json: JSON.parse(stolenText) as Record<string, unknown> }, { status: 404, code: -32001, rejection: 'session_mismatch', reason: 'session opened by another subject' });
      assert.equal(quiet.gets.length, asked);
      const { 'mcp-session-id': _session, ...sessionless } = headers;
      const bare = await fetch(url, { headers: { ...sessionless, accept: 'text/event-stream' } });
      const bareText = await bare.text();
      await assertRefused(gateway, { status: bare.status, headers: bare.headers, text: bareText, json: JSON.parse(bareText) as Record<string, unknown> }, { status: 400, code: -32600, rejection: 'no_session', reason: /GET needs an Mcp-Session-Id/ });
    });

    it('the MCP SDK client opens the stream itself: server-everything logs and a scripted list change reach it', async () => {
      const bearer = await issuer.sign({ sub: 'alice', aud: `${gateway.url}/every`, client_id: 'mux-stream' });
      const transport = new StreamableHTTPClientTransport(new URL(`${gateway.url}/every`), { requestInit: { headers: { authorization: `Bearer ${bearer}` } } });
      const client = new Client({ name: 'mux-stream', version: '1.0.0' });
      const logs: unknown[] = [];
      let logged!: () => void;
      const firstLog = new Promise<void>((resolve) => (logged = resolve));
      client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
        logs.push(notification.params);
        logged();
      });
      let changed!: () => void;
      const listChanged = new Promise<void>((resolve) => (changed = resolve));
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => changed());
      await client.connect(transport);
      try {
        await alpha.streaming();
        alpha.push({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
        await listChanged;
        // server-everything sends a log message at once, then every 5 s, down its GET stream.
        const started = await client.callTool({ name: 'every__toggle-simulated-logging', arguments: {} });
        assert.match(JSON.stringify(started.content), /Started simulated/);
        await firstLog;
        assert.match(JSON.stringify(logs[0]), /message/);
        await client.callTool({ name: 'every__toggle-simulated-logging', arguments: {} });
        await transport.terminateSession();
      } finally {
        await client.close();
      }
    });
  });
}

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startBankingServer, type BankingServer } from '../../examples/banking/server.ts';
import { gatewayConfigSchema, routeSchema } from '../../src/config/gateway-schema.ts';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startEverything } from '../helpers/everything.ts';
import { INSPECTOR_LAUNCHER, INSPECTOR_NODE, needsInspector } from '../helpers/inspector-cli.ts';
import { needsRedis } from '../helpers/services.ts';
import { mcpPost, startFakeIssuer, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';

/**
 * Several MCP servers behind one route (issue 18 part 2): the banking example (stateless, identity
 * headers) and server-everything (sessions, SSE) behind /mcp, driven by the MCP SDK client.
 */
describe('gateway: several MCP servers behind one route', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let everything: Awaited<ReturnType<typeof startEverything>>;
  let bank: BankingServer;
  let gateways: TestGateway[];
  let token: string;
  const prefix = `mandate-test:${crypto.randomUUID()}`;

  const route = (gatewayUrl: string) => ({
    path: '/mcp',
    upstreams: [
      { name: 'bank', url: bank.url },
      { name: 'every', url: everything.url },
    ],
    resource: `${gatewayUrl.replace(/:\d+$/, ':1')}/mcp`,
    authorization_servers: [issuer.issuer],
    identity_headers: true,
    tools: {
      bank__read_balance: {},
      bank__transfer: { allow: 'args.amount <= 100', reason: 'transfers above 100 EUR need a person' },
      every__echo: {},
      'every__get-sum': {},
      'every__trigger-long-running-operation': {},
    },
  });

  before(async () => {
    issuer = await startFakeIssuer();
    everything = await startEverything();
    bank = await startBankingServer({ host: '127.0.0.1', port: 0 });
    // Two replicas sharing Redis (REDIS_URL) and one key prefix: either serves any request of a session.
    gateways = [await startTestGateway((url) => [route(url)], { rate_limit_prefix: prefix }), await startTestGateway((url) => [route(url)], { rate_limit_prefix: prefix })];
    token = await issuer.sign({ sub: 'alice', aud: 'http://127.0.0.1:1/mcp', client_id: 'mux-test' });
  });
  after(async () => {
    for (const gateway of gateways ?? []) await gateway.close();
    await bank?.close();
    await everything?.close();
    await issuer?.close();
  });

  const auth = () => ({ authorization: `Bearer ${token}` });

  it('the MCP SDK client lists the merged tools (prefixed, filtered by the rules) and calls both servers; SSE progress streams through', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`${gateways[0]!.url}/mcp`), { requestInit: { headers: auth() } });
    const client = new Client({ name: 'mux', version: '1.0.0' });
    await client.connect(transport);
    try {
      assert.equal(client.getServerVersion()?.name, 'mandate-gateway', 'the gateway answered initialize itself');
      assert.ok(client.getServerCapabilities()?.tools, 'tools merged into the capabilities');
      assert.ok(transport.sessionId, 'one gateway session id');
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((tool) => tool.name).sort(), ['bank__read_balance', 'bank__transfer', 'every__echo', 'every__get-sum', 'every__trigger-long-running-operation']);
      const balance = await client.callTool({ name: 'bank__read_balance', arguments: {} });
      assert.match(JSON.stringify(balance.content), /balance/);
      const echo = await client.callTool({ name: 'every__echo', arguments: { message: 'through the mux' } });
      assert.match(JSON.stringify(echo.content), /through the mux/);
      const progress: number[] = [];
      const long = await client.callTool({ name: 'every__trigger-long-running-operation', arguments: { duration: 1, steps: 2 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
      assert.deepEqual(progress, [1, 2], 'progress notifications streamed from server-everything');
      assert.match(JSON.stringify(long.content), /completed/i);
      await transport.terminateSession();
    } finally {
      await client.close();
    }
    const events = await gateways[0]!.auditEvents();
    const call = events.find((event) => event.tool === 'every__echo')!;
    assert.equal(call.upstream, 'every');
    assert.equal(call.outcome, 'result');
    assert.equal(events.find((event) => event.tool === 'bank__read_balance')!.upstream, 'bank');
    assert.ok(events.some((event) => event.http_method === 'DELETE' && event.status === 200));
  });

  it("the gateway's own requests at an upstream session never take a client's id: a list while a call with id 1 runs gets both answers right", async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`${gateways[0]!.url}/mcp`), { requestInit: { headers: auth() } });
    const client = new Client({ name: 'mux-ids', version: '1.0.0' });
    await client.connect(transport);
    try {
      // The SDK client numbers its requests 0 (initialize), 1 (this call), 2 (the list): the gateway's list pages once went as id 1.
      const [long, listed] = await Promise.all([
        client.callTool({ name: 'every__trigger-long-running-operation', arguments: { duration: 1, steps: 2 } }),
        new Promise((resolve) => setTimeout(resolve, 100)).then(() => client.listTools()),
      ]);
      assert.match(JSON.stringify(long.content), /completed/i);
      assert.ok(listed.tools.some((tool) => tool.name === 'every__echo'), JSON.stringify(listed.tools.map((tool) => tool.name)));
      await transport.terminateSession();
    } finally {
      await client.close();
    }
  });

  it('prompts and resources: merged (prompt names prefixed, resource URIs under mandate+<upstream>:), got and read at their upstream', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`${gateways[1]!.url}/mcp`), { requestInit: { headers: auth() } });
    const client = new Client({ name: 'mux-prompts', version: '1.0.0' });
    await client.connect(transport);
    try {
      const capabilities = client.getServerCapabilities()!;
      assert.ok(capabilities.prompts && capabilities.resources, 'server-everything offers prompts and resources');
      const { prompts } = await client.listPrompts();
      assert.ok(prompts.some((prompt) => prompt.name === 'every__simple-prompt'), JSON.stringify(prompts.map((p) => p.name)));
      assert.ok(prompts.every((prompt) => prompt.name.startsWith('every__')), 'the bank has no prompts');
      const prompt = await client.getPrompt({ name: 'every__simple-prompt' });
      assert.ok(prompt.messages.length > 0);
      const completed = await client.complete({ ref: { type: 'ref/prompt', name: 'every__completable-prompt' }, argument: { name: 'department', value: 'E' } });
      assert.deepEqual(completed.completion.values, ['Engineering'], 'completion/complete reaches the prompt at its upstream');
      const { resources } = await client.listResources();
      assert.ok(resources.length > 0);
      assert.ok(resources.every((resource) => resource.uri.startsWith('mandate+every:')), resources[0]?.uri);
      const read = await client.readResource({ uri: resources[0]!.uri });
      assert.equal(read.contents[0]!.uri, resources[0]!.uri, 'the content is named by the URI the gateway listed');
      const { resourceTemplates } = await client.listResourceTemplates();
      assert.ok(resourceTemplates.every((template) => template.uriTemplate.startsWith('mandate+every:')));
      await transport.terminateSession();
    } finally {
      await client.close();
    }
    const events = await gateways[1]!.auditEvents();
    assert.equal(events.find((event) => event.method === 'prompts/get')!.upstream, 'every');
    assert.equal(events.find((event) => event.method === 'resources/read')!.upstream, 'every');
  });

  it('the MCP Inspector CLI lists the merged tools and calls one', needsInspector(), async () => {
    const home = mkdtempSync(join(tmpdir(), 'mandate-mux-inspector-'));
    const cli = (args: string[]) =>
      promisify(execFile)(INSPECTOR_NODE, [INSPECTOR_LAUNCHER, '--cli', `${gateways[0]!.url}/mcp`, '--transport', 'http', '--header', `Authorization: Bearer ${token}`, ...args], {
        env: { ...process.env, HOME: home },
        timeout: 60_000,
      });
    try {
      const list = await cli(['--method', 'tools/list']);
      const tools = (JSON.parse(list.stdout) as { tools: { name: string }[] }).tools.map((tool) => tool.name).sort();
      assert.deepEqual(tools, ['bank__read_balance', 'bank__transfer', 'every__echo', 'every__get-sum', 'every__trigger-long-running-operation']);
      const call = await cli(['--method', 'tools/call', '--tool-name', 'every__get-sum', '--tool-arg', 'a=20', 'b=22']);
      assert.match(call.stdout, /42/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  // Without REDIS_URL each replica keeps its own sessions: B would refuse A's session (404 "session not found").
  it('two replicas sharing Redis serve alternate requests of one session; DELETE at one ends it at both', needsRedis(), async () => {
    const [a, b] = gateways.map((gateway) => `${gateway.url}/mcp`);
    const init = await mcpPost(a!, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }, auth());
    assert.equal(init.status, 200);
    assert.equal((init.json!.result as { protocolVersion: string }).protocolVersion, '2025-11-25');
    const session = init.headers.get('mcp-session-id')!;
    assert.ok(session);
    const headers = { ...auth(), 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' };
    for (const [i, url] of [b, a, b].entries()) {
      const sum = await mcpPost(url!, toolCall('every__get-sum', { a: i, b: 40 }, i + 2), headers);
      assert.equal(sum.status, 200, sum.text);
      assert.match(sum.text, new RegExp(`${i + 40}`));
      assert.equal(sum.headers.get('mcp-session-id'), session, 'the client only ever sees the gateway session');
    }
    const list = await mcpPost(b!, { jsonrpc: '2.0', id: 9, method: 'tools/list' }, headers);
    assert.equal(list.status, 200);
    assert.equal((list.json!.result as { tools: unknown[] }).tools.length, 5);
    const ping = await mcpPost(b!, { jsonrpc: '2.0', id: 10, method: 'ping' }, headers);
    assert.deepEqual(ping.json, { jsonrpc: '2.0', id: 10, result: {} });
    const ended = await fetch(b!, { method: 'DELETE', headers });
    assert.equal(ended.status, 200);
    const after = await mcpPost(a!, toolCall('every__echo', { message: 'x' }, 11), headers);
    assert.equal(after.status, 404, 'the ended session is refused at the other replica too');
  });

  it("GET: the upstreams' streams merged into one; a notification is answered 202; an answer to a request no upstream sent is refused (400, -32600)", async () => {
    const url = `${gateways[0]!.url}/mcp`;
    const init = await mcpPost(url, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }, auth());
    const headers = { ...auth(), 'mcp-session-id': init.headers.get('mcp-session-id')!, 'mcp-protocol-version': '2025-11-25' };
    const abort = new AbortController();
    const stream = await fetch(url, { headers: { ...headers, accept: 'text/event-stream' }, signal: abort.signal });
    assert.equal(stream.status, 200);
    assert.equal(stream.headers.get('content-type'), 'text/event-stream');
    abort.abort();
    // Audited when the stream ends (here: the client left).
    let opened: Record<string, unknown> | undefined;
    while (!(opened = (await gateways[0]!.auditEvents()).find((event) => event.request_id === stream.headers.get('x-request-id')))) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(opened.rejection, 'client_closed');
    assert.equal(opened.reason, 'streams: bank, every');
    const cancelled = await mcpPost(url, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 99, reason: 'test' } }, headers);
    assert.equal(cancelled.status, 202);
    const answer = await mcpPost(url, { jsonrpc: '2.0', id: 'srv-1', result: { action: 'accept' } }, headers);
    assert.equal(answer.status, 400);
    assert.equal((answer.json!.error as { code: number }).code, -32600);
    const event = (await gateways[0]!.auditEvents()).findLast((e) => e.kind === 'response')!;
    assert.equal(event.rejection, 'invalid_request');
    assert.equal((await fetch(url, { method: 'DELETE', headers })).status, 200);
  });

  it('the stateless revision (2026-07-28): initialize gives no session (the upstream sessions it opened are ended), ping answered by the gateway', async () => {
    const url = `${gateways[0]!.url}/mcp`;
    const headers = { ...auth(), 'mcp-protocol-version': '2026-07-28' };
    const init = await mcpPost(url, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2026-07-28', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }, { ...headers, 'mcp-method': 'initialize' });
    assert.equal(init.status, 200, init.text);
    assert.equal((init.json!.result as { protocolVersion: string }).protocolVersion, '2026-07-28');
    assert.equal(init.headers.get('mcp-session-id'), null);
    const ping = await mcpPost(url, { jsonrpc: '2.0', id: 2, method: 'ping' }, { ...headers, 'mcp-method': 'ping' });
    assert.deepEqual(ping.json, { jsonrpc: '2.0', id: 2, result: {} });
  });

  it('an unknown prefix is a JSON-RPC error -32602 (HTTP 404), audited as unknown_upstream', async () => {
    // unlisted_tools: allow, so that the tool rules let the name through and the multiplexer judges it.
    const open = await startTestGateway((url) => [{ ...route(url), unlisted_tools: 'allow' as const, tools: {} }], { rate_limit_prefix: prefix });
    try {
      const response = await mcpPost(`${open.url}/mcp`, toolCall('nobank__read_balance', {}, 7), { ...auth(), 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'nobank__read_balance' });
      assert.equal(response.status, 404);
      assert.equal((response.json!.error as { code: number }).code, -32602);
      assert.equal(response.json!.id, 7);
      const event = (await open.auditEvents()).find((e) => e.tool === 'nobank__read_balance')!;
      assert.equal(event.decision, 'deny');
      assert.equal(event.rejection, 'unknown_upstream');
      assert.equal(event.status, 404);
    } finally {
      await open.close();
    }
  });

  it('a rule on a prefixed name refuses (403, -32003, tool_denied), and the refusal is audited', async () => {
    const response = await mcpPost(`${gateways[1]!.url}/mcp`, toolCall('bank__transfer', { to: 'bob', amount: 500 }, 3), { ...auth(), 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'bank__transfer' });
    assert.equal(response.status, 403);
    assert.equal((response.json!.error as { code: number }).code, -32003);
    const event = (await gateways[1]!.auditEvents()).find((e) => e.tool === 'bank__transfer' && e.jsonrpc_id === 3)!;
    assert.equal(event.rejection, 'tool_denied');
    assert.equal(event.reason, 'transfers above 100 EUR need a person');
    // The same call within the rule goes through, to the bank, with the name it knows.
    // (The banking server, stateless, takes a call without a session; its SDK does not speak 2026-07-28.)
    const small = await mcpPost(`${gateways[1]!.url}/mcp`, toolCall('bank__transfer', { to: 'bob', amount: 5 }, 4), { ...auth(), 'mcp-protocol-version': '2025-11-25' });
    assert.equal(small.status, 200, small.text);
    assert.match(small.text, /transferred/);
  });

  it('config load refuses colliding prefixes, a tool rule naming no upstream, and upstream with upstreams (exact messages)', () => {
    const base = { path: '/mcp', resource: 'https://gw.example/mcp', authorization_servers: ['https://as.example'] };
    const message = (input: unknown) => {
      const parsed = routeSchema.safeParse(input);
      assert.equal(parsed.success, false);
      return parsed.error!.issues.map((issue) => issue.message);
    };
    assert.deepEqual(message({ ...base, separator: '-', upstreams: [{ name: 'bank', url: 'http://a/' }, { name: 'bank-eu', url: 'http://b/' }] }), [
      'upstream names bank and bank-eu collide: bank-eu starts with bank-',
      'the separator - may not appear in an upstream name',
    ]);
    assert.deepEqual(message({ ...base, upstreams: [{ name: 'bank', url: 'http://a/' }, { name: 'bank', url: 'http://b/' }] }), ['upstream name bank is used twice']);
    assert.deepEqual(message({ ...base, upstreams: [{ name: 'bank', url: 'http://a/' }], tools: { read_balance: {} } }), ['tool read_balance names no upstream: with upstreams, tools are named <upstream>__<tool> (bank__…)']);
    assert.deepEqual(message({ ...base, upstream: 'http://a/', upstreams: [{ name: 'bank', url: 'http://a/' }] }), ['a route needs exactly one of upstream (one MCP server) and upstreams (several)']);
    assert.deepEqual(message({ ...base, upstreams: [{ name: 'Bank', url: 'http://a/' }] }), ['lower-case letters, digits and -, not first']);
    assert.equal(gatewayConfigSchema.safeParse({ routes: [{ ...base, upstreams: [{ name: 'bank', url: 'http://a/' }, { name: 'every', url: 'http://b/' }] }] }).success, true);
  });
});

/**
 * The admin MCP server (<issuer>/admin/mcp) with a client this project did not write: the MCP
 * TypeScript SDK client, its Streamable HTTP transport and its OAuth flow (discovery through the
 * 401's protected resource metadata, dynamic registration, PKCE, the RFC 8707 resource), the admin
 * signing in over HTTP. Read-only by default; writes only with admin.mcp.writes, a write scope and
 * not production; every call audited as the admin with the MCP session and request ids.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { decodeJwt } from '../helpers/auth-server.ts';
import { MemoryOAuthProvider } from '../helpers/mcp-oauth.ts';
import { inspectorHome, needsInspector, runInspectorCli, toolNames } from '../helpers/inspector-cli.ts';
import { ADMIN_OPERATIONS } from '../../src/admin/index.ts';
import { auditEvents, signIn, startAdminServer } from './helpers.ts';

type Server = Awaited<ReturnType<typeof startAdminServer>>;
type Json = Record<string, unknown>;

const REDIRECT = 'http://127.0.0.1:5998/callback';
const BIN = new URL('../../bin/mandate.js', import.meta.url).pathname;
const READ_TOOLS = Object.values(ADMIN_OPERATIONS)
  .filter((op) => op.access === 'read')
  .map((op) => op.name.replace('.', '_'))
  .sort();

/** The user's part of the sign-in over HTTP (in a new browser unless given one): log in, then allow, ticking one high-risk scope if asked. */
async function authorize(as: Server, url: URL, username: string, tick?: string, browser = new FormBrowser(as.issuer)): Promise<URL> {
  let page = await browser.open(url.href);
  for (let step = 0; step < 4 && !page.external; step++) {
    if (page.html.includes('name="password"')) page = await browser.submit(page, { username, password: 'demo' });
    else if (page.html.includes('name="decision"')) page = await browser.submit(page, { decision: 'allow', ...(tick ? { high_risk: tick } : {}) });
    else break;
  }
  if (!page.external) throw new Error(`sign-in did not return to the client: ${page.url} ${page.html.slice(0, 300)}`);
  return new URL(page.external);
}

/**
 * What an MCP host does: connect, get a 401, run the SDK's OAuth flow (the admin signs in), connect
 * again with the token. Returns the connected client, or the error the sign-in came back with.
 */
async function connectAs(as: Server, username: string, options: { tick?: string } = {}): Promise<Connected | { error: string | null; authorizationUrl: URL }> {
  const url = new URL(`${as.issuer}/admin/mcp`);
  const provider = new MemoryOAuthProvider(REDIRECT);
  const first = new StreamableHTTPClientTransport(url, { authProvider: provider });
  await assert.rejects(new Client({ name: 'admin-mcp-test', version: '1.0.0' }).connect(first), UnauthorizedError);
  const authorizationUrl = provider.authorizationUrl!;
  const back = await authorize(as, authorizationUrl, username, options.tick);
  const code = back.searchParams.get('code');
  if (!code) {
    await first.close();
    return { error: back.searchParams.get('error'), authorizationUrl };
  }
  await first.finishAuth(code);
  await first.close();
  const transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
  const client = new Client({ name: 'admin-mcp-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport, provider, authorizationUrl, token: provider.saved!.access_token };
}
interface Connected {
  client: Client;
  transport: StreamableHTTPClientTransport;
  provider: MemoryOAuthProvider;
  authorizationUrl: URL;
  token: string;
}

async function connected(as: Server, username: string, options: { tick?: string } = {}): Promise<Connected> {
  const result = await connectAs(as, username, options);
  if (!('client' in result)) throw new Error(`${username} could not sign in: ${result.error}`);
  return result;
}

/**
 * `mandate admin token`: the admin signs in at the URL it prints on stderr (ticking `tick` if
 * given); returns its exit code, stdout and the sign-in URL.
 */
async function adminTokenCli(as: Server, username: string, args: string[], tick?: string, browser?: FormBrowser): Promise<{ code: number | null; stdout: string; stderr: string; url: URL }> {
  const { MANDATE_ADMIN_ACCESS_TOKEN: _unset, ...env } = process.env as Record<string, string>;
  const child = spawn(process.execPath, [BIN, 'admin', 'token', '--url', `${as.issuer}/admin/mcp`, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let [stdout, stderr] = ['', ''];
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  try {
    for (let i = 0; i < 300 && !/^ {2}(http\S+)$/m.test(stderr); i++) await new Promise((r) => setTimeout(r, 100));
    const url = new URL(/^ {2}(http\S+)$/m.exec(stderr)?.[1] ?? assert.fail(`no sign-in URL on stderr: ${stderr}`));
    assert.equal(stdout, '', 'nothing on stdout before the sign-in');
    await fetch(await authorize(as, url, username, tick, browser));
    return { code: await exited, stdout, stderr, url };
  } finally {
    child.kill();
  }
}

/** Calls a tool expecting a JSON-RPC error; returns it. */
async function refusedCall(client: Client, name: string, args: Json): Promise<McpError> {
  try {
    await client.callTool({ name, arguments: args });
  } catch (error) {
    assert.ok(error instanceof McpError, `a JSON-RPC error, not ${String(error)}`);
    return error;
  }
  throw new Error(`${name} was not refused`);
}

describe('admin MCP server', () => {
  it('documents every tool in docs/admin-mcp.md', () => {
    const doc = readFileSync(new URL('../../docs/admin-mcp.md', import.meta.url), 'utf8');
    const documented = [...doc.matchAll(/^\| `([a-z_]+)` \| (read|write) \|/gm)].map((m) => `${m[1]} ${m[2]}`);
    assert.deepEqual(documented, Object.values(ADMIN_OPERATIONS).map((op) => `${op.name.replace('.', '_')} ${op.access}`));
  });

  describe('by default (read-only)', () => {
    let as: Server;
    let alice: Connected;
    before(async () => {
      as = await startAdminServer({ admin: { mcp: { self_registered_clients: true } } });
      alice = await connected(as, 'alice');
    });
    after(async () => {
      await alice?.client.close();
      await as?.close();
    });

    it('answers 401 with the admin resource metadata without a token, asking for read scopes only; audited', async () => {
      const res = await fetch(`${as.issuer}/admin/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
      });
      assert.equal(res.status, 401);
      const header = res.headers.get('www-authenticate') ?? '';
      const metadataUrl = /resource_metadata="([^"]+)"/.exec(header)?.[1];
      assert.equal(metadataUrl, `${as.issuer}/.well-known/oauth-protected-resource/admin`);
      const scope = /scope="([^"]+)"/.exec(header)?.[1]?.split(' ') ?? [];
      assert.ok(scope.includes('admin:read') && scope.includes('admin:agents:read'));
      assert.ok(!scope.some((s) => s.endsWith(':write')), 'no write scope asked while writes are off');
      const metadata = (await (await fetch(metadataUrl!)).json()) as Json;
      assert.equal(metadata.resource, as.admin);
      assert.deepEqual(metadata.authorization_servers, [as.issuer]);
      const refused = (await auditEvents(as)).find((e) => e.type === 'admin.refused' && e.data?.front_end === 'mcp');
      assert.equal(refused?.reason, 'no bearer token');
    });

    it('signs the admin in through the SDK: a self-registered client, PKCE, a token for the admin resource with read scopes', () => {
      const url = alice.authorizationUrl;
      assert.equal(url.searchParams.get('resource'), as.admin, 'the SDK sends the metadata resource as its RFC 8707 resource');
      assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
      const claims = decodeJwt(alice.token);
      assert.equal(claims.aud, as.admin);
      assert.equal(claims.scope, 'admin:read');
      assert.equal(claims.client_id, alice.provider.client?.client_id);
    });

    it('lists the read tools only, with JSON Schemas and read-only annotations, and says writes are off', async () => {
      const result = await alice.client.listTools();
      assert.deepEqual(result.tools.map((t) => t.name).sort(), READ_TOOLS);
      for (const tool of result.tools) {
        assert.equal(tool.annotations?.readOnlyHint, true, tool.name);
        assert.equal(tool.annotations?.destructiveHint, false, tool.name);
        assert.equal(tool.inputSchema.type, 'object', tool.name);
        assert.equal(tool.outputSchema?.type, 'object', tool.name);
        assert.match(tool.description ?? '', /Read-only\. Needs one of the scopes admin:read/);
      }
      const audit = result.tools.find((t) => t.name === 'audit_query')!;
      assert.ok(audit.inputSchema.properties?.since && audit.inputSchema.properties.until);
      assert.match(audit.description ?? '', /ISO 8601/);
      assert.equal((result._meta?.['mandate/writes'] as Json).enabled, false);
      assert.match(alice.client.getInstructions() ?? '', /Read-only here: admin\.mcp\.writes is false/);
    });

    it('runs a read tool as the admin: structured output, audited with the MCP session and request ids', async () => {
      const result = await alice.client.callTool({ name: 'agents_list', arguments: {} });
      assert.notEqual(result.isError, true);
      const items = (result.structuredContent as { items: Json[] }).items;
      assert.deepEqual(
        items.map((a) => a.client_id),
        ['sample-agent'],
      );
      const event = (await auditEvents(as)).find((e) => e.type === 'admin.agents.list');
      assert.equal(event?.outcome, 'success');
      assert.equal(event?.sub, (await as.store.users.findByUsername('alice'))!.sub);
      assert.equal(event?.data?.admin, 'alice');
      assert.equal(event?.data?.front_end, 'mcp');
      assert.equal(event?.data?.via_client, alice.provider.client?.client_id);
      assert.equal(event?.data?.session_id, alice.transport.sessionId);
      assert.ok(alice.transport.sessionId, 'a session id');
      assert.match(String(event?.data?.request_id), /^\d+$/);
    });

    it('answers the questions of the seeds: failed sign-ins in a time range', async () => {
      const browser = new FormBrowser(as.issuer);
      const query = new URLSearchParams({ response_type: 'code', client_id: 'admin-test-console', redirect_uri: 'http://127.0.0.1:5999/callback', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256', scope: 'openid' });
      const login = await browser.open(`${as.issuer}/authorize?${query}`);
      assert.match(login.html, /name="password"/);
      await browser.submit(login, { username: 'demo', password: 'wrong' });
      const since = new Date(Date.now() - 60_000).toISOString();
      const until = new Date(Date.now() + 60_000).toISOString();
      const result = await alice.client.callTool({ name: 'audit_query', arguments: { type: 'login.failed', since, until } });
      const items = (result.structuredContent as { items: Json[] }).items;
      assert.ok(items.length >= 1);
      assert.ok(items.every((e) => e.type === 'login.failed' && e.outcome === 'failure'));
    });

    it('turns a bad input or a missing item into a tool error the model can read, audited', async () => {
      const missing = await alice.client.callTool({ name: 'agents_read', arguments: { id: 'no-such-agent' } });
      assert.equal(missing.isError, true);
      assert.match((missing.content as { text: string }[])[0]!.text, /^not_found: no such agent/);
      const invalid = await alice.client.callTool({ name: 'agents_list', arguments: { limit: 0 } });
      assert.equal(invalid.isError, true);
      assert.match((invalid.content as { text: string }[])[0]!.text, /^invalid_request: invalid input: limit/);
    });

    it('refuses a write tool: a JSON-RPC error saying writes are off, audited with the reason; nothing changed', async () => {
      const error = await refusedCall(alice.client, 'agents_update', { id: 'sample-agent', enabled: false });
      assert.match(error.message, /agents_update is a write tool; admin\.mcp\.writes is false/);
      assert.deepEqual(error.data, { error: 'writes_disabled' });
      const event = (await auditEvents(as)).find((e) => e.type === 'admin.agents.update');
      assert.equal(event?.outcome, 'failure');
      assert.equal(event?.error, 'writes_disabled');
      assert.match(event?.reason ?? '', /admin\.mcp\.writes is false/);
      assert.equal(event?.data?.admin, 'alice');
      assert.equal(event?.data?.session_id, alice.transport.sessionId);
      assert.equal((await as.store.clients.find('sample-agent'))?.disabledAt, undefined);
      await assert.rejects(alice.client.callTool({ name: 'no_such_tool', arguments: {} }), /no tool no_such_tool/);
    });

    it("refuses a non-admin: no admin scope at sign-in (invalid_scope), and another resource's token is 401", async () => {
      const demo = await connectAs(as, 'demo');
      assert.equal('error' in demo ? demo.error : 'signed in', 'invalid_scope');
      const demoSub = (await as.store.users.findByUsername('demo'))!.sub;
      const refused = (await auditEvents(as)).find((e) => e.type === 'authorize.refused' && e.sub === demoSub);
      assert.match(refused?.reason ?? '', /^user demo holds no admin role/);
      const other = await signIn(as, 'demo', { scope: 'mcp:read', resource: as.resource });
      const res = await fetch(`${as.issuer}/admin/mcp`, { method: 'POST', headers: { authorization: `Bearer ${other.accessToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      const event = (await auditEvents(as)).find((e) => e.type === 'admin.refused' && e.reason?.startsWith('token audience'));
      assert.equal(event?.reason, `token audience ${as.resource} is not ${as.admin}`);
    });

    it("keeps a session to its admin: another admin's token with it is 404", async () => {
      const reader = await signIn(as, 'reader', { scope: 'admin:read' });
      const res = await fetch(`${as.issuer}/admin/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${reader.accessToken}`, 'mcp-session-id': alice.transport.sessionId!, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list' }),
      });
      assert.equal(res.status, 404);
    });

    it('keeps at most 20 sessions per admin: a new one replaces that admin\'s least recently used, and no other admin\'s', async () => {
      const reader = await signIn(as, 'reader', { scope: 'admin:read' });
      const post = (token: string, body: unknown, session?: string) =>
        fetch(`${as.issuer}/admin/mcp`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18', ...(session ? { 'mcp-session-id': session } : {}) },
          body: JSON.stringify(body),
        });
      const open = async (token: string) => (await post(token, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } })).headers.get('mcp-session-id')!;
      const list = async (token: string, session: string) => (await post(token, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, session)).status;
      const readers: string[] = [];
      for (let i = 0; i < 21; i++) readers.push(await open(reader.accessToken!));
      assert.equal(await list(reader.accessToken!, readers[0]!), 404, 'the oldest of the reader\'s 21 sessions is gone');
      assert.equal(await list(reader.accessToken!, readers[20]!), 200);
      assert.equal(await list(reader.accessToken!, readers[1]!), 200);
      assert.equal(await list(alice.token, alice.transport.sessionId!), 200, 'another admin\'s session is untouched');
    });

    it('MCP Inspector CLI: signs the admin in by itself and lists the read tools', needsInspector(), async () => {
      const home = inspectorHome();
      const run = runInspectorCli(home, [`${as.issuer}/admin/mcp`, '--transport', 'http', '--method', 'tools/list', '--format', 'json', '--callback-url', 'http://127.0.0.1:0/oauth/callback']);
      try {
        // 401 → discovery → registration → the admin signs in (over HTTP here) → the CLI's callback → token → tools/list.
        const url = await run.authorizationUrl();
        assert.equal(url.searchParams.get('resource'), as.admin);
        const back = await authorize(as, url, 'alice');
        assert.ok(back.searchParams.get('code'), back.href);
        assert.equal((await fetch(back)).status, 200, 'the Inspector took the code');
        assert.equal(await run.done(), 0, run.err());
        assert.deepEqual(toolNames(run.out()), READ_TOOLS);
      } finally {
        run.kill();
        home.cleanup();
      }
    });

    it('mandate admin mcp relays stdio to the server as the admin of MANDATE_ADMIN_ACCESS_TOKEN', async () => {
      const { MANDATE_ADMIN_ACCESS_TOKEN: _unset, ...env } = process.env as Record<string, string>;
      const transport = new StdioClientTransport({ command: process.execPath, args: [BIN, 'admin', 'mcp', '--url', `${as.issuer}/admin/mcp`], env: { ...env, MANDATE_ADMIN_ACCESS_TOKEN: alice.token }, stderr: 'pipe' });
      const client = new Client({ name: 'stdio-host', version: '1.0.0' });
      await client.connect(transport);
      try {
        assert.deepEqual((await client.listTools()).tools.map((t) => t.name).sort(), READ_TOOLS);
        const result = await client.callTool({ name: 'users_read', arguments: { username: 'reader' } });
        assert.equal((result.structuredContent as Json).username, 'reader');
        const event = (await auditEvents(as)).find((e) => e.type === 'admin.users.read');
        assert.deepEqual([event?.outcome, event?.data?.admin, event?.data?.front_end], ['success', 'alice', 'mcp']);
        assert.ok(event?.data?.session_id);
        const refused = await refusedCall(client, 'users_delete', { username: 'reader' });
        assert.match(refused.message, /admin\.mcp\.writes is false/);
      } finally {
        await client.close();
      }
    });

    it('mandate admin mcp signs the admin in when it has no token', async () => {
      const { MANDATE_ADMIN_ACCESS_TOKEN: _unset, ...env } = process.env as Record<string, string>;
      const transport = new StdioClientTransport({ command: process.execPath, args: [BIN, 'admin', 'mcp', '--url', `${as.issuer}/admin/mcp`], env, stderr: 'pipe' });
      let stderr = '';
      transport.stderr!.on('data', (d) => (stderr += d));
      const client = new Client({ name: 'stdio-host', version: '1.0.0' });
      const connecting = client.connect(transport);
      try {
        for (let i = 0; i < 300 && !/^ {2}(http\S+)$/m.test(stderr); i++) await new Promise((r) => setTimeout(r, 100));
        const url = new URL(/^ {2}(http\S+)$/m.exec(stderr)?.[1] ?? assert.fail(`no sign-in URL on stderr: ${stderr}`));
        assert.equal(url.searchParams.get('resource'), as.admin, stderr);
        const back = await authorize(as, url, 'reader');
        assert.equal((await fetch(back)).status, 200);
        await connecting;
        assert.deepEqual((await client.listTools()).tools.map((t) => t.name).sort(), READ_TOOLS);
      } finally {
        await client.close();
      }
    });

    it('mandate admin token signs the admin in and prints a token for the admin resource, good for the admin API', async () => {
      const { code, stdout, url } = await adminTokenCli(as, 'reader', []);
      assert.equal(code, 0);
      assert.equal(url.searchParams.get('resource'), as.admin);
      const token = stdout.trim();
      assert.match(stdout, /^\S+\n$/, 'the token alone, one line');
      assert.deepEqual([decodeJwt(token).aud, decodeJwt(token).scope], [as.admin, 'admin:read']);
      const client = await as.store.clients.find(String(decodeJwt(token).client_id));
      assert.equal(client?.metadata.client_name, 'mandate admin token (CLI)', 'the consent page names the command that signed in');
      const res = await fetch(`${as.issuer}/admin/api/v1/agents`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200);
      const event = (await auditEvents(as)).find((e) => e.type === 'admin.agents.list');
      assert.deepEqual([event?.outcome, event?.data?.admin, event?.data?.front_end], ['success', 'reader', 'api']);
    });

    it('speaks the protocol revisions 2025-03-26, 2025-06-18 and 2025-11-25', async () => {
      for (const version of ['2025-03-26', '2025-06-18', '2025-11-25']) {
        const res = await fetch(`${as.issuer}/admin/mcp`, {
          method: 'POST',
          headers: { authorization: `Bearer ${alice.token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
        });
        assert.equal(res.status, 200, version);
        const body = (await res.json()) as { result: { protocolVersion: string; serverInfo: { name: string } } };
        assert.equal(body.result.protocolVersion, version);
        assert.equal(body.result.serverInfo.name, 'mandate-admin');
        assert.ok(res.headers.get('mcp-session-id'));
      }
    });
  });

  describe('with admin.mcp.writes: true', () => {
    let as: Server;
    let alice: Connected;
    before(async () => {
      as = await startAdminServer({ admin: { mcp: { writes: true, self_registered_clients: true } } });
      alice = await connected(as, 'alice', { tick: 'admin:write' });
    });
    after(async () => {
      await alice?.client.close();
      await as?.close();
    });

    it('lists the write tools to a write-scoped token, with destructive and idempotent hints', async () => {
      assert.equal(decodeJwt(alice.token).scope, 'admin:read admin:write');
      const { tools } = await alice.client.listTools();
      assert.equal(tools.length, Object.keys(ADMIN_OPERATIONS).length);
      const update = tools.find((t) => t.name === 'agents_update')!;
      assert.deepEqual([update.annotations?.readOnlyHint, update.annotations?.destructiveHint, update.annotations?.idempotentHint], [false, true, true]);
      const create = tools.find((t) => t.name === 'users_create')!;
      assert.deepEqual([create.annotations?.readOnlyHint, create.annotations?.destructiveHint, create.annotations?.idempotentHint], [false, false, false]);
      assert.equal(tools.find((t) => t.name === 'agents_delete')?.annotations?.destructiveHint, true);
      assert.deepEqual(update.inputSchema.required, ['id']);
    });

    it('agents_update disables an agent; the audit event names the admin, the MCP session and the agent', async () => {
      const result = await alice.client.callTool({ name: 'agents_update', arguments: { id: 'sample-agent', enabled: false } });
      assert.notEqual(result.isError, true, JSON.stringify(result.content));
      assert.equal((result.structuredContent as Json).enabled, false);
      assert.ok((await as.store.clients.find('sample-agent'))?.disabledAt, 'the agent is disabled in the store');
      const event = (await auditEvents(as)).find((e) => e.type === 'admin.agents.update' && e.outcome === 'success');
      assert.equal(event?.clientId, 'sample-agent');
      assert.equal(event?.sub, (await as.store.users.findByUsername('alice'))!.sub);
      assert.equal(event?.data?.admin, 'alice');
      assert.equal(event?.data?.front_end, 'mcp');
      assert.equal(event?.data?.session_id, alice.transport.sessionId);
      assert.deepEqual(event?.data?.change, { enabled: false });
    });

    it('keeps write tools from a read-only token: not listed, refused when called (insufficient_scope, audited)', async () => {
      const reader = await connected(as, 'reader');
      try {
        assert.equal(decodeJwt(reader.token).scope, 'admin:read');
        const { tools } = await reader.client.listTools();
        assert.deepEqual(tools.map((t) => t.name).sort(), READ_TOOLS);
        const error = await refusedCall(reader.client, 'agents_update', { id: 'sample-agent', enabled: true });
        assert.match(error.message, /agents_update needs one of the scopes admin:write admin:agents:write/);
        assert.deepEqual(error.data, { error: 'insufficient_scope' });
        const event = (await auditEvents(as)).find((e) => e.type === 'admin.agents.update' && e.error === 'insufficient_scope');
        assert.equal(event?.data?.admin, 'reader');
        assert.ok((await as.store.clients.find('sample-agent'))?.disabledAt, 'still disabled');
      } finally {
        await reader.client.close();
      }
    });

    it('mandate admin token asks who signs in (prompt=login): a browser still signed in as a non-admin can sign in as the admin', async () => {
      const browser = new FormBrowser(as.issuer);
      const demo = await adminTokenCli(as, 'demo', [], undefined, browser);
      assert.equal(demo.url.searchParams.get('prompt'), 'login');
      assert.deepEqual([demo.code, demo.stdout], [1, ''], demo.stderr);
      assert.match(demo.stderr, /^mandate admin token: sign-in not completed: invalid_scope your account holds no administrative role$/m);
      const demoSub = (await as.store.users.findByUsername('demo'))!.sub;
      const refused = (await auditEvents(as)).filter((e) => e.type === 'authorize.refused' && e.sub === demoSub).at(-1);
      assert.match(refused?.reason ?? '', /^user demo holds no admin role/);
      // The same browser, still signed in as demo: the sign-in page again, and alice gets her token.
      const alice = await adminTokenCli(as, 'alice', [], undefined, browser);
      assert.equal(alice.code, 0, alice.stderr);
      assert.equal(decodeJwt(alice.stdout.trim()).sub, (await as.store.users.findByUsername('alice'))!.sub);
    });

    it('mandate admin token --scope admin:write: a write token once the admin ticks it; unticked, none (exit 1)', async () => {
      const ticked = await adminTokenCli(as, 'alice', ['--scope', 'admin:write'], 'admin:write');
      assert.equal(ticked.code, 0);
      assert.equal(ticked.url.searchParams.get('scope'), 'admin:write');
      assert.equal(decodeJwt(ticked.stdout.trim()).scope, 'admin:write');
      const unticked = await adminTokenCli(as, 'alice', ['--scope', 'admin:write']);
      assert.deepEqual([unticked.code, unticked.stdout], [1, ''], unticked.stderr);
      assert.match(unticked.stderr, /^mandate admin token: sign-in not completed: access_denied the user granted no permission$/m);
    });

    it('gives a self-registered client a write scope only when the admin ticks it', async () => {
      const unticked = await connected(as, 'alice');
      try {
        assert.equal(decodeJwt(unticked.token).scope, 'admin:read');
        const consent = (await auditEvents(as)).find((e) => e.type === 'consent.granted' && e.clientId === unticked.provider.client?.client_id);
        assert.equal(consent?.data?.scope_not_ticked, 'admin:write');
      } finally {
        await unticked.client.close();
      }
    });
  });

  describe('with admin.mcp.production: true', () => {
    let as: Server;
    let alice: Connected;
    before(async () => {
      as = await startAdminServer({ admin: { mcp: { writes: true, production: true, self_registered_clients: true } } });
      alice = await connected(as, 'alice', { tick: 'admin:write' });
    });
    after(async () => {
      await alice?.client.close();
      await as?.close();
    });

    it('refuses writes whatever admin.mcp.writes says, and the tool list says so', async () => {
      const { tools, _meta } = await alice.client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), READ_TOOLS);
      assert.match(String((_meta?.['mandate/writes'] as Json).reason), /admin\.mcp\.production is true/);
      assert.match(alice.client.getInstructions() ?? '', /Read-only here: admin\.mcp\.production is true/);
      const error = await refusedCall(alice.client, 'agents_update', { id: 'sample-agent', enabled: false });
      assert.match(error.message, /admin\.mcp\.production is true/);
      const event = (await auditEvents(as)).find((e) => e.type === 'admin.agents.update');
      assert.deepEqual([event?.outcome, event?.error, event?.data?.admin], ['failure', 'writes_disabled', 'alice']);
      assert.equal((await as.store.clients.find('sample-agent'))?.disabledAt, undefined);
    });
  });

  describe('as shipped: admin.mcp.self_registered_clients is false', () => {
    let as: Server;
    before(async () => {
      as = await startAdminServer();
    });
    after(async () => as?.close());

    it('gives a self-registered client no admin scope (the registration allowlist applies)', async () => {
      const result = await connectAs(as, 'alice');
      assert.equal('error' in result ? result.error : 'signed in', 'invalid_scope');
    });
  });
});

/**
 * The Todo MCP server's Worker (examples/todo-mcp/worker.ts, issue 16) in workerd: the bundle
 * `npm run edge:build` makes, run twice (`--instances 2`, two isolates sharing the first one's
 * TodoSessions objects) with its sessions persisted, in front of a real authorization server and
 * the Todo API (both in this process, loopback). Users sign in with the form driver; the Worker
 * validates their tokens, exchanges them at the AS for Todo API tokens, and keeps each MCP
 * session's owner in the Durable Object. workerd is stopped and started again on the same
 * directory. Loopback only, bounded in time; workerd stopped at the end.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTodoApi, type TodoApi } from '../../examples/todo-api/server.ts';
import { DEMO_PASSWORD_HASH, decodeJwt, freePort, pkcePair, postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { EDGE_SKIP_REASON, edgeAvailable, startEdgeWorker, type EdgeWorker } from '../helpers/edge-worker.ts';
import { MCP_HEADERS, mcpPost, toolCall } from '../helpers/gateway.ts';
import { skipUnless } from '../helpers/services.ts';

const SECRET = 'todo-mcp-edge-secret-0123456789abcdef';
const REDIRECT = 'http://127.0.0.1:3999/callback';
const SCOPES = 'todo_api:read todo_api:write';
const LOG = 'mandate-todo-mcp';

describe('the Todo MCP server as a Worker, in workerd', skipUnless(edgeAvailable, EDGE_SKIP_REASON), () => {
  let as: TestAuthServer;
  let api: TodoApi;
  let worker: EdgeWorker | undefined;
  let dir: string;
  let script: string;
  let persist: string;
  let port: number;
  let resource: string;
  let apiUrl: string;
  /** The second isolate's /mcp (its own port; tokens carry the first's URL as audience). */
  let other: string;
  let appA: string;
  let appB: string;
  const tokens = new Map<string, string>();

  const start = async () => {
    worker = await startEdgeWorker([
      '--entry', 'todo-mcp', '--script', script, '--host', '127.0.0.1', '--port', String(port), '--persist', persist, '--instances', '2',
      '--binding', `TODO_MCP_ISSUER=${as.issuer}`,
      '--binding', `TODO_MCP_RESOURCE=${resource}`,
      '--binding', `TODO_API_URL=${apiUrl}`,
      '--binding', 'TODO_MCP_CLIENT_ID=todo-mcp',
      '--binding', `TODO_MCP_CLIENT_SECRET=${SECRET}`,
      '--binding', 'TODO_MCP_ALLOWED_ORIGINS=http://localhost:6274, http://127.0.0.1:6274',
      '--binding', 'TODO_MCP_REVOCATION_POLL_SECONDS=1',
    ]);
    assert.equal(worker.url, `http://127.0.0.1:${port}`);
    other = `${worker.urls[1]}/mcp`;
  };

  /** A user's token for the Worker, signed in through a registered public client (PKCE). */
  const tokenFor = async (username: string, clientId: string): Promise<string> => {
    const key = `${username}/${clientId}`;
    if (tokens.has(key)) return tokens.get(key)!;
    const { verifier, challenge } = pkcePair();
    const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource, scope: SCOPES, state: 's' })}`;
    const back = await new FormBrowser(as.issuer).authorize(url, { username, password: 'demo' });
    const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT, client_id: clientId });
    assert.equal(token.status, 200, token.text);
    tokens.set(key, token.json.access_token as string);
    return token.json.access_token as string;
  };
  const bearer = async (username: string, clientId = appA) => ({ authorization: `Bearer ${await tokenFor(username, clientId)}` });
  const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } };
  const inSession = (session: string) => ({ 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' });
  const open = async (url: string, headers: Record<string, string>) => {
    const res = await mcpPost(url, initialize, headers);
    assert.equal(res.status, 200, res.text);
    const session = res.headers.get('mcp-session-id');
    assert.match(session ?? '', /^[0-9a-f-]{36}$/, 'a random session id');
    return session!;
  };

  before(async () => {
    port = await freePort();
    resource = `http://127.0.0.1:${port}/mcp`;
    apiUrl = `http://127.0.0.1:${await freePort()}`;
    process.env.TEST_TODO_MCP_SECRET = SECRET;
    as = await startTestAuthServer({
      users: [
        { username: 'demo', name: 'Demo User', email: 'demo@example.com', password_hash: DEMO_PASSWORD_HASH },
        { username: 'bob', name: 'Bob', email: 'bob@example.com', password_hash: DEMO_PASSWORD_HASH },
      ],
      clients: [{ client_id: 'todo-mcp', client_name: 'Todo MCP server', client_secret_env: 'TEST_TODO_MCP_SECRET', grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'] as never }],
      resources: [
        { id: resource, name: 'Todo MCP server', scopes: [{ name: 'todo_api:read' }, { name: 'todo_api:write' }], may_act: { client_id: 'todo-mcp' }, resource_servers: ['todo-mcp'] },
        { id: apiUrl, name: 'Todo API', scopes: [{ name: 'todo_api:read' }, { name: 'todo_api:write' }], exchange: { allowed_actors: ['todo-mcp'], max_depth: 2 } },
      ] as never,
      registration: { allowed_scopes: ['todo_api:read', 'todo_api:write'] } as never,
    });
    api = await startTodoApi({ issuer: as.issuer, resource: apiUrl, host: '127.0.0.1', port: Number(new URL(apiUrl).port) });
    const register = async () => (await registerClient(as.issuer, { client_name: 'edge test app', software_id: crypto.randomUUID(), redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none' })).client_id;
    appA = await register();
    appB = await register();
    dir = mkdtempSync(join(tmpdir(), 'mandate-edge-todo-'));
    script = join(dir, 'todo-mcp.js');
    persist = join(dir, 'state');
    const built = spawnSync(process.execPath, ['scripts/build-edge.mjs', '--entry', 'todo-mcp', '--outfile', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(built.status, 0, built.stderr);
    await start();
  });

  after(async () => {
    await worker?.stop();
    await api?.close();
    await as?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('no token: 401 with resource_metadata, and the protected resource metadata (RFC 9728)', async () => {
    const res = await mcpPost(resource, initialize);
    assert.equal(res.status, 401, res.text);
    assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp"`);
    assert.equal((res.json as { error: string }).error, 'invalid_request');
    const prm = (await (await fetch(`http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
    assert.deepEqual(prm, { resource, authorization_servers: [as.issuer], scopes_supported: ['todo_api:read', 'todo_api:write'], bearer_methods_supported: ['header'], resource_name: 'Todo MCP server' });
    const wrongAudience = await mcpPost(other, initialize, { authorization: `Bearer ${await (async () => {
      const { verifier, challenge } = pkcePair();
      const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: appA, redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: apiUrl, scope: 'todo_api:read', state: 's' })}`;
      const back = await new FormBrowser(as.issuer).authorize(url);
      const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT, client_id: appA });
      return token.json.access_token as string;
    })()}` });
    assert.equal(wrongAudience.status, 401, 'a token for the Todo API is not one for the MCP server');
    assert.match(wrongAudience.headers.get('www-authenticate')!, /error="invalid_token"/);
  });

  it('CORS: the Inspector origin is allowed, another origin refused', async () => {
    const preflight = await fetch(resource, { method: 'OPTIONS', headers: { origin: 'http://localhost:6274', 'access-control-request-method': 'POST' } });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'http://localhost:6274');
    assert.match(preflight.headers.get('access-control-allow-headers')!, /mcp-session-id/);
    const evil = await mcpPost(resource, initialize, { origin: 'https://evil.example', ...(await bearer('demo')) });
    assert.equal(evil.status, 403);
    assert.equal((evil.json as { error: { code: number } }).error.code, -32600);
  });

  it('the tools through the MCP SDK client: who_am_I, and peek_api_token_claims shows the exchanged token with act', async () => {
    const client = new Client({ name: 'edge-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(resource), { requestInit: { headers: await bearer('demo') } }));
    try {
      const textOf = (result: unknown) => JSON.parse((result as { content: { text: string }[] }).content[0]!.text) as Record<string, unknown>;
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((tool) => tool.name).sort(), ['add_todo', 'complete_todo', 'delete_todo', 'list_todos', 'peek_api_token_claims', 'who_am_I']);
      const user = textOf(await client.callTool({ name: 'who_am_I', arguments: {} }));
      const apiClaims = textOf(await client.callTool({ name: 'peek_api_token_claims', arguments: {} }));
      assert.equal(user.aud, resource);
      assert.equal(user.act, undefined);
      assert.equal(apiClaims.sub, user.sub, 'the same user');
      assert.equal(apiClaims.aud, apiUrl, 'a token for the Todo API');
      assert.deepEqual(apiClaims.act, { sub: 'todo-mcp', iss: as.issuer, sub_profile: 'service', client_id: 'todo-mcp' }, 'the Worker acted for the user');
      assert.equal(apiClaims.scope, 'todo_api:read', 'the narrowest scope the tool needs');
      const added = textOf(await client.callTool({ name: 'add_todo', arguments: { title: 'buy milk at the edge' } }));
      assert.deepEqual((added.history as { act: unknown }[])[0]!.act, [{ sub: 'todo-mcp' }]);
      const listed = (await client.callTool({ name: 'list_todos', arguments: {} })) as { content: { text: string }[] };
      assert.match(listed.content[0]!.text, /buy milk at the edge/);
    } finally {
      await client.close();
    }
  });

  it('a session is its opener\'s in both isolates: another subject or client gets 404, logged with the reason', async () => {
    const demo = await bearer('demo');
    const session = await open(resource, demo);
    const listed = await mcpPost(other, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, { ...demo, ...inSession(session) });
    assert.equal(listed.status, 200, 'opened through one isolate, served by the other');
    assert.ok(((listed.json as { result: { tools: unknown[] } }).result.tools).length === 6);

    const bob = await bearer('bob');
    const bobsTry = await mcpPost(other, toolCall('list_todos', {}, 3), { ...bob, ...inSession(session) });
    assert.equal(bobsTry.status, 404, bobsTry.text);
    assert.equal((bobsTry.json as { error: { code: number } }).error.code, -32001);
    const bobSub = decodeJwt(await tokenFor('bob', appA)).sub;
    const logged = await worker!.waitForLine(LOG, (line) => line.status === 404 && line.sub === bobSub);
    assert.equal(logged.error, 'session_mismatch');
    assert.equal(logged.reason, 'session opened by another subject');
    assert.equal(logged.decision, 'deny');

    const viaB = await mcpPost(resource, toolCall('list_todos', {}, 4), { ...(await bearer('demo', appB)), ...inSession(session) });
    assert.equal(viaB.status, 404, 'the same person through another client');
    const other404 = await worker!.waitForLine(LOG, (line) => line.status === 404 && line.client_id === appB);
    assert.equal(other404.reason, 'session opened by the same subject through another client');

    const unknown = await mcpPost(resource, toolCall('list_todos', {}, 5), { ...demo, ...inSession(crypto.randomUUID()) });
    assert.equal(unknown.status, 404);
    assert.equal((await worker!.waitForLine(LOG, (line) => line.error === 'unknown_session')).reason, 'no session with this Mcp-Session-Id (never opened, ended, or idle past its lifetime)');

    const without = await mcpPost(resource, toolCall('list_todos', {}, 6), demo);
    assert.equal(without.status, 400, 'a request after initialize carries its session');
    const stream = await fetch(resource, { headers: { ...demo, ...inSession(session), accept: 'text/event-stream' } });
    assert.equal(stream.status, 405, 'no standalone SSE stream');
    assert.equal(stream.headers.get('allow'), 'POST, DELETE');
    await stream.body?.cancel();
  });

  it('DELETE ends a session for every isolate; another caller cannot end it', async () => {
    const demo = await bearer('demo');
    const session = await open(other, demo);
    const bobDelete = await fetch(resource, { method: 'DELETE', headers: { ...(await bearer('bob')), ...inSession(session) } });
    assert.equal(bobDelete.status, 404);
    assert.equal((await mcpPost(resource, toolCall('list_todos', {}, 2), { ...demo, ...inSession(session) })).status, 200, 'still open');
    const ended = await fetch(resource, { method: 'DELETE', headers: { ...demo, ...inSession(session) } });
    assert.equal(ended.status, 200);
    const after = await mcpPost(other, toolCall('list_todos', {}, 3), { ...demo, ...inSession(session) });
    assert.equal(after.status, 404, after.text);
  });

  it('a session keeps its owner after workerd restarts (the Durable Object persisted)', async () => {
    const demo = await bearer('demo');
    const session = await open(resource, demo);
    await worker!.stop();
    assert.ok(readdirSync(persist).length > 0, 'the Durable Object state is on disk');
    await start();
    const served = await mcpPost(other, toolCall('who_am_I', {}, 2), { ...demo, ...inSession(session) });
    assert.equal(served.status, 200, served.text);
    const refused = await mcpPost(resource, toolCall('who_am_I', {}, 3), { ...(await bearer('bob')), ...inSession(session) });
    assert.equal(refused.status, 404);
  });

  it('a revoked token is refused (401 invalid_token, logged with the reason) once the list is polled again', async () => {
    // A fresh sign-in: its own token, so revoking it leaves the others alone.
    tokens.delete(`demo/${appB}`);
    const token = await tokenFor('demo', appB);
    const headers = { ...MCP_HEADERS, authorization: `Bearer ${token}` };
    assert.equal((await fetch(resource, { method: 'POST', headers, body: JSON.stringify(initialize) })).status, 200);
    assert.equal((await postForm(`${as.issuer}/revoke`, { token, client_id: appB })).status, 200);
    let status = 0;
    for (let i = 0; i < 100 && status !== 401; i++) {
      status = (await fetch(resource, { method: 'POST', headers, body: JSON.stringify(initialize) })).status;
      if (status !== 401) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 401);
    const logged = await worker!.waitForLine(LOG, (line) => line.status === 401);
    assert.equal(logged.error, 'invalid_token');
    assert.match(String(logged.reason), /revoked/);
  });
});

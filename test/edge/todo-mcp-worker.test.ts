/**
 * The Todo MCP server's Worker entry (examples/todo-mcp/worker.ts) called in Node with fake
 * bindings: it fails closed. A TODO_SESSIONS Durable Object that cannot be reached or fails → 503
 * with the reason logged; a missing or invalid binding → 500 with a generic message on the wire and
 * the reason (never a secret) in the log. A real authorization server in this process issues the
 * tokens; the rest of the Worker's behaviour is tested in workerd (todo-mcp-workerd.test.ts). And
 * it runs nothing on a timer (in workerd one set during a request never fires after it): the AS's
 * key set is fetched again on use, under the request's waitUntil.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import worker, { TodoSessions, type TodoMcpWorkerEnv } from '../../examples/todo-mcp/worker.ts';
import { pkcePair, postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { MCP_HEADERS } from '../helpers/gateway.ts';

const RESOURCE = 'https://todo-mcp.test/mcp';
const SECRET = 'todo-mcp-node-secret-0123456789abcdef';
const REDIRECT = 'http://127.0.0.1:3999/callback';
const ctx = { waitUntil: () => undefined };
const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } };

/** A Durable Object namespace whose objects fail as told. */
const failingNamespace = (fetch: () => Promise<Response>) => ({ idFromName: (name: string) => name, get: () => ({ fetch }) });

/** Console lines written during `run` (the Worker's logs). */
async function logged(t: TestContext, run: () => Promise<Response>) {
  const lines: string[] = [];
  for (const method of ['log', 'warn', 'error'] as const) t.mock.method(console, method, (line: unknown) => lines.push(String(line)));
  const response = await run();
  t.mock.restoreAll();
  return { response, lines: lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

describe('the Todo MCP Worker entry fails closed', () => {
  let as: TestAuthServer;
  let token: string;
  /** A new access token for RESOURCE, through the authorization code flow. */
  let issue: () => Promise<string>;
  const env = (overrides: Partial<TodoMcpWorkerEnv>): TodoMcpWorkerEnv => ({
    TODO_MCP_ISSUER: as.issuer,
    TODO_MCP_RESOURCE: RESOURCE,
    TODO_API_URL: 'http://127.0.0.1:9',
    TODO_MCP_CLIENT_ID: 'todo-mcp',
    TODO_MCP_CLIENT_SECRET: SECRET,
    ...overrides,
  });
  const post = (e: TodoMcpWorkerEnv, headers: Record<string, string> = {}) =>
    worker.fetch(new Request(RESOURCE, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, ...headers }, body: JSON.stringify(initialize) }), e, ctx);

  before(async () => {
    process.env.TEST_TODO_MCP_SECRET = SECRET;
    as = await startTestAuthServer({
      clients: [{ client_id: 'todo-mcp', client_name: 'Todo MCP server', client_secret_env: 'TEST_TODO_MCP_SECRET', grant_types: ['client_credentials'] as never }],
      resources: [{ id: RESOURCE, name: 'Todo MCP server', scopes: [{ name: 'todo_api:read' }], resource_servers: ['todo-mcp'] }] as never,
      registration: { allowed_scopes: ['todo_api:read'] } as never,
    });
    const client = await registerClient(as.issuer, { client_name: 'worker test', software_id: crypto.randomUUID(), redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none' });
    issue = async () => {
      const { verifier, challenge } = pkcePair();
      const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: client.client_id, redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: RESOURCE, scope: 'todo_api:read', state: 's' })}`;
      const back = await new FormBrowser(as.issuer).authorize(url);
      const issued = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT, client_id: client.client_id });
      assert.equal(issued.status, 200, issued.text);
      return issued.json.access_token as string;
    };
    token = await issue();
  });
  after(async () => as?.close());

  it('without the TODO_SESSIONS binding: 500 "server not configured", the reason logged', async (t) => {
    const { response, lines } = await logged(t, () => post(env({ TODO_MCP_SESSION_IDLE_SECONDS: '101' })));
    assert.equal(response.status, 500);
    assert.deepEqual(await response.json(), { jsonrpc: '2.0', id: null, error: { code: -32603, message: 'server not configured' } });
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.msg, 'cannot build the Todo MCP server');
    assert.equal(lines[0]!.reason, 'the TODO_SESSIONS Durable Object binding (class TodoSessions) is missing');
  });

  it('an invalid binding: 500, the binding named in the log, never the secret', async (t) => {
    const { response, lines } = await logged(t, () => post(env({ TODO_MCP_ISSUER: 'not a url', TODO_MCP_CLIENT_SECRET: 'short', TODO_SESSIONS: failingNamespace(async () => Response.json({})) })));
    assert.equal(response.status, 500);
    const reason = String(lines[0]!.reason);
    assert.match(reason, /^invalid bindings: /);
    assert.match(reason, /TODO_MCP_ISSUER/);
    assert.match(reason, /TODO_MCP_CLIENT_SECRET/);
    assert.ok(!reason.includes('short'), 'the secret is not logged');
  });

  it('a Durable Object that cannot be reached: initialize answers 503 and gives out no session, the reason logged', async (t) => {
    const e = env({ TODO_MCP_SESSION_IDLE_SECONDS: '102', TODO_SESSIONS: failingNamespace(() => Promise.reject(new Error('network connection lost'))) });
    const { response, lines } = await logged(t, () => post(e));
    assert.equal(response.status, 503, await response.clone().text());
    assert.equal(response.headers.get('mcp-session-id'), null);
    assert.equal(response.headers.get('retry-after'), '1');
    assert.equal(((await response.json()) as { error: { code: number } }).error.code, -32000);
    const refusal = lines.find((line) => line.audit === 'mandate-todo-mcp')!;
    assert.equal(refusal.status, 503);
    assert.equal(refusal.error, 'session_store_unavailable');
    assert.equal(refusal.reason, 'session store unavailable: network connection lost');
  });

  it('a body over 4 MiB: 413, read no further and never parsed, no session asked for', async () => {
    let asked = 0;
    const e = env({ TODO_MCP_SESSION_IDLE_SECONDS: '104', TODO_SESSIONS: failingNamespace(async () => (asked++, Response.json({ verdict: 'own' }))) });
    // Streamed without a Content-Length: the bound holds while reading, not only on the header.
    let sent = 0;
    const chunk = new TextEncoder().encode(' '.repeat(64 * 1024));
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 8 * 1024 * 1024) return controller.close();
        sent += chunk.byteLength;
        controller.enqueue(chunk);
      },
    });
    const response = await worker.fetch(new Request(RESOURCE, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body, duplex: 'half' } as RequestInit), e, ctx);
    assert.equal(response.status, 413);
    assert.equal(((await response.json()) as { error: { code: number } }).error.code, -32000);
    assert.ok(sent < 8 * 1024 * 1024, 'the rest of the body was not read');
    assert.equal(asked, 0);
  });

  it("the AS's key set: refreshed on use once stale, in the background under waitUntil; no timer set (a Worker's would never fire)", async (t) => {
    const e = env({ TODO_MCP_SESSION_IDLE_SECONDS: '105', TODO_SESSIONS: failingNamespace(async () => Response.json({})) });
    const later = await issue(); // not yet verified by this Worker: its check needs the key set
    const jwksUri = ((await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as { jwks_uri: string }).jwks_uri;
    const original = globalThis.fetch;
    const fetched: string[] = [];
    t.mock.method(globalThis, 'fetch', (input: RequestInfo | URL, init?: RequestInit) => {
      fetched.push(input instanceof Request ? input.url : String(input));
      return original(input, init);
    });
    const intervals = t.mock.method(globalThis, 'setInterval');
    const waited: Promise<unknown>[] = [];
    const context = { waitUntil: (promise: Promise<unknown>) => void waited.push(promise) };
    const call = (bearer: string) => worker.fetch(new Request(RESOURCE, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${bearer}` }, body: JSON.stringify(initialize) }), e, context);
    await call(token);
    const loads = fetched.filter((url) => url === jwksUri).length;
    assert.equal(loads, 1, 'the first use loads the set');
    // Past the key set's refresh interval (300 s; the token lives 900 s).
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() + 301_000 });
    waited.length = 0;
    await call(later);
    await Promise.all(waited);
    t.mock.timers.reset();
    assert.equal(fetched.filter((url) => url === jwksUri).length, loads + 1, 'fetched again on use, the request waiting for it through waitUntil');
    assert.equal(intervals.mock.callCount(), 0, 'no setInterval');
  });

  it('a Durable Object that answers 500: a call in a session answers 503, the reason logged', async (t) => {
    const e = env({ TODO_MCP_SESSION_IDLE_SECONDS: '103', TODO_SESSIONS: failingNamespace(async () => new Response('boom', { status: 500 })) });
    const { response, lines } = await logged(t, () =>
      worker.fetch(
        new Request(RESOURCE, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, 'mcp-session-id': crypto.randomUUID() }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }) }),
        e,
        ctx,
      ),
    );
    assert.equal(response.status, 503);
    const refusal = lines.find((line) => line.audit === 'mandate-todo-mcp')!;
    assert.equal(refusal.error, 'session_store_unavailable');
    assert.equal(refusal.reason, 'session store unavailable: the Durable Object answered 500');
  });
});

describe('examples/edge/todo-mcp.wrangler.jsonc', () => {
  it('binds TODO_SESSIONS to the bundle\'s TodoSessions with a migration, and sets every var but the secret', async () => {
    // JSONC: whole-line comments only in this file.
    const wrangler = JSON.parse(readFileSync('examples/edge/todo-mcp.wrangler.jsonc', 'utf8').replace(/^\s*\/\/.*$/gm, '')) as {
      main: string;
      durable_objects: { bindings: { name: string; class_name: string }[] };
      migrations: { tag: string; new_sqlite_classes?: string[] }[];
      vars: Record<string, string>;
    };
    assert.equal(wrangler.main, '../../dist-edge/todo-mcp.js');
    assert.deepEqual(wrangler.durable_objects.bindings, [{ name: 'TODO_SESSIONS', class_name: 'TodoSessions' }]);
    assert.deepEqual(wrangler.migrations, [{ tag: 'v1', new_sqlite_classes: ['TodoSessions'] }]);
    assert.deepEqual(Object.keys(wrangler.vars).sort(), [
      'TODO_API_URL',
      'TODO_MCP_ALLOWED_ORIGINS',
      'TODO_MCP_CLIENT_ID',
      'TODO_MCP_ISSUER',
      'TODO_MCP_RESOURCE',
      'TODO_MCP_REVOCATION_POLL_SECONDS',
      'TODO_MCP_SESSION_IDLE_SECONDS',
    ]);
    assert.equal(typeof TodoSessions, 'function');
  });
});

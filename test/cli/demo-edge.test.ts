/**
 * `npm run edge` (`mandate demo --edge`): the demo with its gateway and Todo MCP server as Workers
 * in workerd, beside the Node authorization server, Todo API, banking server and web app — on free
 * ports (`--port-offset`) with its own data dir, so it runs beside a developer's own demo. Flow A
 * against the Todo MCP server in workerd: the MCP SDK client's OAuth flow (401 → protected resource
 * metadata → registration → PKCE sign-in in Chromium) and `who_am_I` / `peek_api_token_claims`
 * showing the exchanged token's `act`; MCP Inspector CLI signing in to both Workers and listing
 * their tools; the example web app signed in through the gateway Worker's web route (/app/), as a
 * browser (fetch with cookies and the AS's forms), with keys the demo made and keeps in its data dir. Needs `.cache/edge` (skipped with the reason without it, failing instead under
 * MANDATE_REQUIRE_SERVICES=1); Chromium and the Inspector as the demo's own test does.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startCallbackServer } from '../helpers/callback-server.ts';
import { authorizeInChromium, launchChromium } from '../helpers/chromium.ts';
import { freeDemoOffset, portFree, startDemo, type RunningDemo } from '../helpers/demo.ts';
import { EDGE_SKIP_REASON, edgeAvailable } from '../helpers/edge-worker.ts';
import { inspectorCliWithOAuth, inspectorHome, needsInspectorAndChromium, runInspectorCli, toolNames } from '../helpers/inspector-cli.ts';
import { MemoryOAuthProvider } from '../helpers/mcp-oauth.ts';
import { needsChromium, skipUnless } from '../helpers/services.ts';
import { registerClient } from '../helpers/auth-server.ts';
import { userToken } from '../helpers/delegation-server.ts';
import { mcpPost } from '../helpers/gateway.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';

const offset = await freeDemoOffset();
const at = (port: number) => `http://localhost:${port + offset}`;

describe('`npm run edge`: the demo with the gateway and the Todo MCP server in workerd', skipUnless(edgeAvailable, EDGE_SKIP_REASON), () => {
  let cwd: string;
  let dataDir: string;
  let demo: RunningDemo;

  before(async () => {
    // What `npm run edge` does first.
    const built = spawnSync(process.execPath, ['scripts/build-edge.mjs'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(built.status, 0, built.stderr);
    cwd = mkdtempSync(join(tmpdir(), 'mandate-demo-edge-'));
    dataDir = join(cwd, 'demo-data');
    demo = await startDemo({ cwd, portOffset: offset, dataDir, args: ['--edge'], timeoutMs: 120_000 });
  });
  after(() => {
    demo?.kill();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('prints a guide: the Workers, the web app behind the gateway Worker, where the logs are', async () => {
    assert.equal(demo.child.exitCode, null, 'the demo is still running');
    const out = demo.out();
    assert.match(out, /with the gateway and the Todo MCP server at the edge \(Cloudflare Workers in workerd\)/);
    assert.ok(out.includes(`Todo MCP server        ${at(8787)}/mcp   a Worker in workerd;`), out);
    assert.ok(out.includes(`Gateway (banking)      ${at(8080)}/mcp   a Worker in workerd;`), out);
    assert.ok(out.includes(`Web app (SSO)          ${at(8080)}/app/   the gateway Worker signs you in; the app at ${at(8002)}/ has no sign-in code`), out);
    assert.ok(out.includes(`Web SSO:        open ${at(8080)}/app/ in a browser`), out);
    assert.ok(out.includes(join(dataDir, 'edge', 'gateway.log')));
    assert.ok(out.includes(`${at(9000)}/approvals`));
    // The Workers answer on the demo's ports, as the protected resources the AS knows.
    const prm = (await (await fetch(`${at(8787)}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
    assert.deepEqual([prm.resource, prm.authorization_servers], [`${at(8787)}/mcp`, [at(9000)]]);
    const gateway = await fetch(`${at(8080)}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' });
    assert.equal(gateway.status, 401);
    assert.match(gateway.headers.get('www-authenticate')!, new RegExp(`^Bearer resource_metadata="${at(8080)}/.well-known/oauth-protected-resource/mcp"`));
  });

  it('the gateway Worker serves a signed-in user once its revocation list is loaded (503 with the reason until then)', async () => {
    const issuer = at(9000);
    const client = await registerClient(issuer, { client_name: 'edge demo test', software_id: crypto.randomUUID(), redirect_uris: ['http://127.0.0.1:3999/callback'], token_endpoint_auth_method: 'none' });
    const { token } = await userToken({ issuer } as never, { clientId: client.client_id, redirectUri: 'http://127.0.0.1:3999/callback', resource: `${at(8080)}/mcp`, scope: 'banking:read' });
    const call = () => mcpPost(`${at(8080)}/mcp`, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { authorization: `Bearer ${token.access_token}` });
    let res = await call();
    // The Worker compiles its routes at the first request, and its revocation list polls from the
    // first check: until the first list arrives it refuses (fail closed), then serves.
    for (let i = 0; i < 50 && res.status === 503; i++) {
      assert.match(res.text, /revocation list is not loaded yet/);
      await new Promise((r) => setTimeout(r, 100));
      res = await call();
    }
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(((res.json as { result: { tools: { name: string }[] } }).result.tools.map((tool) => tool.name)).sort(), ['list_transactions', 'read_balance']);
  });

  it('flow A: the MCP SDK client signs in (Chromium) to the Todo MCP server in workerd, which exchanges the token for the Todo API', needsChromium(), async () => {
    const callback = await startCallbackServer();
    const browser = await launchChromium();
    try {
      const provider = new MemoryOAuthProvider(callback.redirectUri);
      const first = new StreamableHTTPClientTransport(new URL(`${at(8787)}/mcp`), { authProvider: provider });
      // 401 → the protected resource metadata → the AS's metadata → dynamic registration → the authorization URL.
      await assert.rejects(new Client({ name: 'edge-e2e', version: '1.0.0' }).connect(first), UnauthorizedError);
      assert.ok(provider.client?.client_id, 'registered itself at the AS');
      const url = provider.authorizationUrl!;
      assert.equal(url.origin, at(9000));
      assert.equal(url.searchParams.get('resource'), `${at(8787)}/mcp`);
      assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
      const { redirect, steps } = await authorizeInChromium(browser, url.href, { callback });
      assert.deepEqual(steps, ['login', 'consent']);
      await first.finishAuth(redirect.searchParams.get('code')!);
      const transport = new StreamableHTTPClientTransport(new URL(`${at(8787)}/mcp`), { authProvider: provider });
      const client = new Client({ name: 'edge-e2e', version: '1.0.0' });
      await client.connect(transport);
      try {
        assert.match(transport.sessionId ?? '', /^[0-9a-f-]{36}$/, 'the Worker gave out a session (its owner in the Durable Object)');
        const textOf = (result: unknown) => JSON.parse((result as { content: { text: string }[] }).content[0]!.text) as Record<string, unknown>;
        const user = textOf(await client.callTool({ name: 'who_am_I', arguments: {} }));
        const api = textOf(await client.callTool({ name: 'peek_api_token_claims', arguments: {} }));
        assert.equal(user.aud, `${at(8787)}/mcp`);
        assert.equal(user.act, undefined);
        assert.deepEqual(user.may_act, { sub: 'todo-mcp' });
        assert.equal(api.sub, user.sub, 'the same user');
        assert.equal(api.aud, at(8001), 'a token for the Todo API');
        assert.deepEqual(api.act, { sub: 'todo-mcp', iss: at(9000), sub_profile: 'service', client_id: 'todo-mcp' }, 'act only on the downstream token');
        assert.equal(api.scope, 'todo_api:read', 'the narrowest scope the tool needs');
        const added = textOf(await client.callTool({ name: 'add_todo', arguments: { title: 'buy milk at the edge' } }));
        assert.deepEqual((added.history as { act: unknown }[])[0]!.act, [{ sub: 'todo-mcp' }], 'the Todo API recorded who acted');
        const listed = (await client.callTool({ name: 'list_todos', arguments: {} })) as { content: { text: string }[] };
        assert.match(listed.content[0]!.text, /buy milk at the edge/);
        await transport.terminateSession();
        assert.equal(transport.sessionId, undefined, 'DELETE ended the session');
      } finally {
        await client.close();
      }
    } finally {
      await browser.close();
      await callback.close();
    }
  });

  for (const [server, expected] of [
    [`${at(8787)}/mcp`, ['add_todo', 'complete_todo', 'delete_todo', 'list_todos', 'peek_api_token_claims', 'who_am_I']],
    // As in the demo: the Inspector registered itself, so the allowlist withholds banking:transfer and transfer stays hidden.
    [`${at(8080)}/mcp`, ['list_transactions', 'read_balance']],
  ] as const) {
    it(`MCP Inspector CLI: signs in (Chromium) to ${server} in workerd by itself and lists its tools (and calls one)`, needsInspectorAndChromium(), async () => {
      const home = inspectorHome();
      const browser = await launchChromium();
      try {
        const run = await inspectorCliWithOAuth(browser, home, [server, '--transport', 'http', '--method', 'tools/list', '--format', 'json']);
        assert.equal(run.code, 0, run.stderr);
        assert.deepEqual(run.steps, ['login', 'consent']);
        assert.equal(run.authorizationUrl.searchParams.get('resource'), server);
        assert.deepEqual(toolNames(run.stdout), [...expected]);
        if (server.endsWith(`:${8787 + offset}/mcp`)) {
          // And calls a tool with the stored token: the Worker's exchange for the Todo API, with act.
          const call = runInspectorCli(home, [server, '--transport', 'http', '--method', 'tools/call', '--tool-name', 'peek_api_token_claims', '--format', 'json', '--stored-auth-only']);
          assert.equal(await call.done(), 0, call.err());
          // `--format json`: {"result": <the tool result>}, as for tools/list.
          const { result } = JSON.parse(call.out()) as { result?: { content?: { text: string }[] } };
          assert.ok(result?.content, call.out());
          const claims = JSON.parse(result.content[0]!.text) as Record<string, unknown>;
          assert.deepEqual([claims.aud, claims.act, claims.scope], [at(8001), { sub: 'todo-mcp', iss: at(9000), sub_profile: 'service', client_id: 'todo-mcp' }, 'todo_api:read']);
        }
      } finally {
        await browser.close();
        home.cleanup();
      }
    });
  }

  it('the web route in the gateway Worker: a browser signs in to the example web app at /app/, the admin area is refused to demo; the keys are the demo\'s, 0600 in its data dir', async () => {
    const gateway = new FormBrowser(at(8080));
    const first = await gateway.open(`${at(8080)}/app/`);
    assert.equal(first.status, 302);
    const authorize = new URL(first.external!);
    assert.equal(authorize.origin, at(9000), 'no session: sent to the AS to sign in');
    assert.equal(authorize.searchParams.get('client_id'), 'web-app');
    // The AS's sign-in and consent forms, then back to the Worker's callback (the route's public_url is the Worker's origin).
    const callback = await new FormBrowser(at(9000)).authorize(authorize.href, { username: 'demo', password: 'demo' });
    assert.equal(`${callback.origin}${callback.pathname}`, `${at(8080)}/app/callback`);
    const page = await gateway.open(callback.href);
    assert.equal(page.url, `${at(8080)}/app/`, 'back where the browser was going');
    assert.equal(page.status, 200, page.html.slice(0, 400));
    // The app (on Node) verified the Worker's identity assertion against the Worker's JWKS.
    assert.match(page.html, /<h1>Signed in as Demo User<\/h1>/);
    assert.match(page.html, /<td>preferred_username<\/td><td><code>(&quot;|")demo(&quot;|")<\/code>/, 'the asserted claims');
    const jwks = (await (await fetch(`${at(8080)}/.well-known/mandate-gateway-jwks.json`)).json()) as { keys: { x?: string; y?: string; d?: string }[] };
    const identityKey = JSON.parse(readFileSync(join(dataDir, 'edge', 'identity-key.json'), 'utf8')) as { x: string; y: string; d: string };
    assert.ok(identityKey.d, 'a private key');
    assert.deepEqual(jwks.keys.map((key) => [key.x, key.y, key.d]), [[identityKey.x, identityKey.y, undefined]], 'the JWKS is the public half of the key the demo made');
    for (const file of ['identity-key.json', 'web-session.key']) assert.equal(statSync(join(dataDir, 'edge', file)).mode & 0o777, 0o600, file);

    const admin = await gateway.open(`${at(8080)}/app/admin/`);
    assert.equal(admin.status, 403);
    assert.match(admin.html, /the admin area is for administrators/);
    const log = join(dataDir, 'edge', 'gateway.log');
    let refusal: Record<string, unknown> | undefined;
    for (let i = 0; i < 50 && !refusal; i++) {
      refusal = readFileSync(log, 'utf8').split('\n').filter((line) => line.includes('"audit":"mandate-gateway"')).map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.path === '/app/admin/' && line.status === 403);
      if (!refusal) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(refusal, 'the refusal is in the Worker\'s audit lines');
    assert.deepEqual([refusal.rejection, refusal.reason], ['rule_denied', 'the admin area is for administrators']);
    // The app itself refuses a request that did not come through the gateway.
    assert.equal((await fetch(`${at(8002)}/`)).status, 401);
  });

  it('the gateway Worker\'s audit lines are in the data dir', () => {
    const log = join(dataDir, 'edge', 'gateway.log');
    assert.ok(existsSync(log));
    const lines = readFileSync(log, 'utf8').split('\n').filter((line) => line.includes('"audit":"mandate-gateway"')).map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(lines.some((line) => line.status === 401 && line.rejection === 'no_token'), 'the refusal of the first test');
  });

  it('stops cleanly on Ctrl-C, and the Workers with it', async () => {
    demo.child.kill('SIGINT');
    assert.equal(await demo.exited, 0);
    assert.match(demo.out(), /stopping/);
    assert.ok(await portFree(8787 + offset), 'the Todo MCP Worker\'s port is free');
    assert.ok(await portFree(8080 + offset), 'the gateway Worker\'s port is free');
  });
});

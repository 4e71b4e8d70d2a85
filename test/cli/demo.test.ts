import assert from 'node:assert/strict';
import { mcpRoute } from '../../src/config/gateway-schema.ts';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startCallbackServer } from '../helpers/callback-server.ts';
import { authorizeInChromium, launchChromium, navigating } from '../helpers/chromium.ts';
import { MemoryOAuthProvider } from '../helpers/mcp-oauth.ts';
import { agentCli as runAgent, agentWithSignIn as signInAgent } from '../helpers/agent-cli.ts';
import { freeDemoOffset, startDemo, type RunningDemo } from '../helpers/demo.ts';
import { externalRedirectUri } from '../helpers/inspector-cli.ts';
import { inspectorCliWithOAuth, inspectorHome, needsInspectorAndChromium, runInspectorCli, toolNames } from '../helpers/inspector-cli.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { accessWith, signInAdmin } from '../helpers/admin.ts';
import { basic, decodeJwt, freePort, postForm, registerClient } from '../helpers/auth-server.ts';
import { exchange, userToken } from '../helpers/delegation-server.ts';
import { needsChromium } from '../helpers/services.ts';

const BIN = new URL('../../bin/mandate.js', import.meta.url).pathname;

/**
 * The demo on free ports (`--port-offset`) with its own data dir (`--data-dir`), so this file runs
 * beside a developer's own `npm start` and never skips. `at(9000)` is where the demo's AS is now.
 */
const offset = await freeDemoOffset();
const at = (port: number) => `http://localhost:${port + offset}`;

/** `mandate agent …` for the demo under test: its gateway is not on the default 8080 (a later `--mcp-url` wins). */
const withGateway = (args: string[]) => [args[0]!, '--mcp-url', `${at(8080)}/mcp`, ...args.slice(1)];
const agentCli = (args: string[], env: NodeJS.ProcessEnv, options?: { pty?: boolean }) => runAgent(withGateway(args), env, options);
const agentWithSignIn = (browser: Parameters<typeof signInAgent>[0], args: string[], env: NodeJS.ProcessEnv) => signInAgent(browser, withGateway(args), env);

function run(args: string[], cwd: string) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, LOG_LEVEL: 'warn' } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exited, out: () => out, err: () => err };
}


/** The seeds' flows A and B against the demo configuration, as the README walks through them. */
async function demoDelegation(dataDir: string) {
  const issuer = `${at(9000)}`;
  const secret = (name: string) => readFileSync(join(dataDir, 'secrets', `${name}.secret`), 'utf8').trim();
  const client = await registerClient(issuer, { client_name: 'demo test', software_id: crypto.randomUUID(), redirect_uris: ['http://127.0.0.1:3999/callback'], token_endpoint_auth_method: 'none' });
  const user = await userToken({ issuer } as never, { clientId: client.client_id, redirectUri: 'http://127.0.0.1:3999/callback', resource: `${at(8787)}/mcp`, scope: 'todo_api:read todo_api:write' });
  assert.deepEqual(decodeJwt(user.token.access_token).may_act, { sub: 'todo-mcp' });
  const api = await exchange({ issuer } as never, { subject_token: user.token.access_token, resource: `${at(8001)}`, scope: 'todo_api:read' }, { authorization: basic('todo-mcp', secret('todo-mcp')) });
  assert.equal(api.status, 200, api.text);
  assert.deepEqual(decodeJwt(api.json.access_token as string).act, { sub: 'todo-mcp', iss: issuer, sub_profile: 'service', client_id: 'todo-mcp' });

  const agent = { authorization: basic('sample-agent', secret('sample-agent')) };
  const actor = await postForm(`${issuer}/token`, { grant_type: 'client_credentials', resource: 'http://localhost:3000' }, agent);
  assert.equal(actor.status, 200, actor.text);
  const browser = new FormBrowser(issuer);
  const subject = await userToken({ issuer } as never, { clientId: 'sample-agent', redirectUri: 'http://localhost:3000/callback', resource: 'http://localhost:3000', scope: 'banking:read', clientAuth: agent, browser });
  assert.ok(browser.pages.some((p) => p.html.includes('Digital assistant consent')), 'the agreement page');
  const mandate = await exchange(
    { issuer } as never,
    { subject_token: subject.token.access_token, actor_token: actor.json.access_token as string, actor_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: `${at(8080)}/mcp`, scope: 'banking:read' },
    agent,
  );
  assert.equal(mandate.status, 200, mandate.text);
  const claims = decodeJwt(mandate.json.access_token as string);
  assert.deepEqual(claims.act, { sub: 'sample-agent', iss: issuer, sub_profile: 'ai_agent', client_id: 'sample-agent' });
  assert.equal(claims.acr, 'Agent-Consent-Login');
  return mandate.json.access_token as string;
}


/** Reads the gateway's audit file until an event matches (events are written in batches). */
async function auditEvent(dataDir: string, match: (event: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  for (let i = 0; i < 50; i++) {
    const file = join(dataDir, 'gateway-audit.jsonl');
    const events = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>) : [];
    const found = events.find(match);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail('no such audit event');
}

describe('`mandate demo` (npm start): the whole system, on free ports with its own data dir', () => {
  let cwd: string;
  let dataDir: string;
  let demo: RunningDemo;
  let mandateToken: string;

  before(async () => {
    cwd = mkdtempSync(join(tmpdir(), 'mandate-demo-'));
    dataDir = join(cwd, 'demo-data');
    demo = await startDemo({ cwd, portOffset: offset, dataDir });
  });
  after(() => {
    // Never leave the demo running: a failed assertion must not hold the ports or hang the run.
    demo?.kill();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('prints a guide and serves the authorization server with the Inspector origin allowed', async () => {
    assert.equal(demo.child.exitCode, null, 'the demo is still running');
    for (const url of [`${at(9000)}`, `${at(8787)}/mcp`, `${at(8001)}`, `${at(8080)}/mcp`, `${at(9464)}/metrics`]) assert.ok(demo.out().includes(url), url);
    assert.match(demo.out(), /demo \/ demo/);
    assert.ok(demo.out().includes(`${at(9000)}/approvals`), 'the guide says where approvals wait');
    assert.match(demo.out(), /ready in \d+ ms from process start; services started in \d+ ms; data in .*demo-data\//);
    assert.ok(existsSync(join(dataDir, 'secrets', 'admin.token')), 'the data (and secrets) live in --data-dir');
    assert.ok(!existsSync(join(cwd, '.mandate')), 'nothing in the default data dir');
    const metrics = await fetch(`${at(9464)}/metrics`);
    assert.equal(metrics.status, 200, 'the gateway metrics moved with the offset');
    const metadata = (await (await fetch(`${at(9000)}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.equal(metadata.issuer, `${at(9000)}`);
    assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
    assert.equal(metadata.authorization_response_iss_parameter_supported, true);
    assert.equal(metadata.client_id_metadata_document_supported, true);
    // The demo allows MCP Inspector's origin through CORS.
    const preflight = await fetch(`${at(9000)}/token`, { method: 'OPTIONS', headers: { origin: 'http://localhost:6274', 'access-control-request-method': 'POST' } });
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'http://localhost:6274');
    const other = await fetch(`${at(9000)}/token`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  });

  it('the seeds\' token flows A and B against the demo configuration', async () => {
    mandateToken = await demoDelegation(dataDir);
  });

  it('flow A end to end: the MCP SDK client signs in (Chromium) to the Todo MCP server, which exchanges the token for the Todo API', needsChromium(), async () => {
    const callback = await startCallbackServer();
    const browser = await launchChromium();
    try {
      const provider = new MemoryOAuthProvider(callback.redirectUri);
      const first = new StreamableHTTPClientTransport(new URL(`${at(8787)}/mcp`), { authProvider: provider });
      await assert.rejects(new Client({ name: 'demo-e2e', version: '1.0.0' }).connect(first), UnauthorizedError);
      assert.equal(provider.authorizationUrl!.searchParams.get('resource'), `${at(8787)}/mcp`);
      const { redirect, steps } = await authorizeInChromium(browser, provider.authorizationUrl!.href, { callback });
      assert.deepEqual(steps, ['login', 'consent']);
      await first.finishAuth(redirect.searchParams.get('code')!);
      const client = new Client({ name: 'demo-e2e', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${at(8787)}/mcp`), { authProvider: provider }));
      try {
        const textOf = (result: unknown) => JSON.parse((result as { content: { text: string }[] }).content[0]!.text) as Record<string, unknown>;
        const user = textOf(await client.callTool({ name: 'who_am_I', arguments: {} }));
        const api = textOf(await client.callTool({ name: 'peek_api_token_claims', arguments: {} }));
        assert.equal(api.sub, user.sub, 'the same user');
        assert.equal(user.aud, `${at(8787)}/mcp`);
        assert.equal(api.aud, `${at(8001)}`, 'a different audience');
        assert.equal(user.act, undefined);
        assert.deepEqual(api.act, { sub: 'todo-mcp', iss: at(9000), sub_profile: 'service', client_id: 'todo-mcp' }, 'act only on the downstream token');
        assert.deepEqual(user.may_act, { sub: 'todo-mcp' });
        assert.equal(api.scope, 'todo_api:read', 'the narrowest scope the tool needs');
        const added = textOf(await client.callTool({ name: 'add_todo', arguments: { title: 'buy milk' } }));
        assert.deepEqual((added.history as { act: unknown }[])[0]!.act, [{ sub: 'todo-mcp' }], 'the Todo API recorded who acted');
        const listed = (await client.callTool({ name: 'list_todos', arguments: {} })) as { content: { text: string }[] };
        assert.match(listed.content[0]!.text, /buy milk/);
      } finally {
        await client.close();
      }
    } finally {
      await browser.close();
      await callback.close();
    }
  });

  it('flow B end to end: the agent\'s delegated token through the gateway to the banking server, audited with the act chain', async () => {
    assert.ok(mandateToken, 'flow B token from the previous test');
    const client = new Client({ name: 'sample-agent', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${at(8080)}/mcp`), { requestInit: { headers: { authorization: `Bearer ${mandateToken}` } } }));
    try {
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((tool) => tool.name).sort(), ['list_transactions', 'read_balance'], 'transfer is hidden without banking:transfer');
      const balance = (await client.callTool({ name: 'read_balance', arguments: {} })) as { content: { text: string }[] };
      assert.deepEqual(JSON.parse(balance.content[0]!.text), { balance: '1250.00', currency: 'EUR' });
      await assert.rejects(client.callTool({ name: 'transfer', arguments: { to: 'bob', amount: 5 } }), (error: { code?: number }) => error.code === 403);
    } finally {
      await client.close();
    }
    const sub = decodeJwt(mandateToken).sub;
    const read = await auditEvent(dataDir, (event) => event.tool === 'read_balance');
    assert.equal(read.sub, sub);
    assert.deepEqual(read.act, [{ sub: 'sample-agent', client_id: 'sample-agent', sub_profile: 'ai_agent', iss: at(9000) }]);
    assert.equal(read.decision, 'allow');
    const refused = await auditEvent(dataDir, (event) => event.tool === 'transfer');
    assert.equal(refused.rejection, 'insufficient_scope');
    assert.equal(refused.status, 403);
  });

  for (const [server, expected] of [
    [`${at(8787)}/mcp`, ['add_todo', 'complete_todo', 'delete_todo', 'list_todos', 'peek_api_token_claims', 'who_am_I']],
    // The Inspector asks for every scope of the protected resource metadata, banking:transfer included;
    // it registered itself, so the demo's allowlist withholds banking:transfer (RFC 6749 §3.3) and transfer stays hidden.
    [`${at(8080)}/mcp`, ['list_transactions', 'read_balance']],
  ] as const) {
    it(`MCP Inspector CLI: signs in (Chromium) to ${server} by itself and lists its tools`, needsInspectorAndChromium(), async () => {
      const home = inspectorHome();
      const browser = await launchChromium();
      try {
        const args = [server, '--transport', 'http', '--method', 'tools/list', '--format', 'json'];
        // One run: 401 → discovery → registration → browser (login, consent) → callback → token → tools/list.
        const run = await inspectorCliWithOAuth(browser, home, args);
        assert.equal(run.code, 0, run.stderr);
        assert.deepEqual(run.steps, ['login', 'consent']);
        assert.equal(run.authorizationUrl.origin, `${at(9000)}`);
        assert.equal(run.authorizationUrl.searchParams.get('resource'), server);
        assert.match(run.authorizationUrl.searchParams.get('redirect_uri')!, /^http:\/\/127\.0\.0\.1:\d+\/oauth\/callback$/);
        assert.equal(run.redirect.searchParams.get('iss'), `${at(9000)}`);
        assert.match(run.stderr, /Authorization complete\./);
        assert.deepEqual(home.opened(), [run.authorizationUrl.href], 'the browser launch went to the recorder');
        assert.deepEqual(toolNames(run.stdout), [...expected]);
        // A second run reuses the stored token: no browser, no prompt.
        const again = runInspectorCli(home, [...args, '--stored-auth-only']);
        assert.equal(await again.done(), 0, again.err());
        assert.deepEqual(toolNames(again.out()), [...expected]);
        assert.doesNotMatch(again.err(), /Please navigate to/);
      } finally {
        await browser.close();
        home.cleanup();
      }
    });
  }

  describe('mandate agent (the sample agent of seed 001) against the demo', needsChromium(), () => {
    let browser: Awaited<ReturnType<typeof launchChromium>>;
    let env: NodeJS.ProcessEnv;
    before(async () => {
      browser = await launchChromium();
      env = {
        AGENT_CLIENT_ID: 'sample-agent',
        AGENT_SECRET: readFileSync(join(dataDir, 'secrets', 'sample-agent.secret'), 'utf8').trim(),
        MANDATE_AGENT_HOME: mkdtempSync(join(tmpdir(), 'mandate-agent-home-')),
      };
    });
    after(async () => {
      await browser?.close();
      if (env?.MANDATE_AGENT_HOME) rmSync(env.MANDATE_AGENT_HOME, { recursive: true, force: true });
    });
    const cli = (args: string[], options?: { pty?: boolean }) => agentCli(args, env, options);

    it('before login: a one-line error and exit 7', async () => {
      const run = cli(['tools']);
      assert.equal(await run.exited, 7);
      assert.equal(run.err(), `mandate agent: not signed in for ${at(8080)}/mcp: run \`mandate agent login\`\n`);
    });

    it('errors a person can act on: unreachable (3), consent denied (4), scope refused (6) — one line each', async () => {
      const closed = await freePort();
      const unreachable = cli(['tools', '--mcp-url', `http://127.0.0.1:${closed}/mcp`]);
      assert.equal(await unreachable.exited, 3);
      assert.equal(unreachable.err(), `mandate agent: cannot reach the MCP server at http://127.0.0.1:${closed}/mcp (ECONNREFUSED) — is it running?\n`);

      const denied = agentCli(['login', '--callback-port', '0', '--scope', 'banking:read banking:transfer'], { ...env, MANDATE_AGENT_HOME: mkdtempSync(join(tmpdir(), 'mandate-agent-deny-')) });
      const url = await denied.authorizationUrl();
      await authorizeInChromium(browser, url.href, { callback: externalRedirectUri(url.searchParams.get('redirect_uri')!), decision: 'deny' });
      assert.equal(await denied.exited, 4, denied.err());
      assert.match(denied.err(), /^mandate agent: the sign-in was denied/m);

      const refused = agentCli(['login', '--callback-port', '0', '--scope', 'no-such:scope'], env);
      const refusedUrl = await refused.authorizationUrl();
      const page = await browser.newPage();
      await page.goto(refusedUrl.href).catch(() => undefined);
      assert.equal(await refused.exited, 6, refused.err());
      assert.match(refused.err(), /^mandate agent: the scope was refused/m);
      await page.close();
    });

    it('login (Chromium), tools, call read_balance, tokens', async () => {
      const login = await agentWithSignIn(browser, ['login', '--callback-port', '0', '--scope', 'banking:read'], env);
      assert.equal(login.code, 0, login.err);
      assert.equal(login.url.searchParams.get('client_id'), 'sample-agent');
      assert.equal(login.url.searchParams.get('resource'), 'http://localhost:3000');
      assert.match(login.out, new RegExp(`Signed in as .+; sample-agent may act for you at ${at(8080)}/mcp with banking:read`));
      const credentials = join(env.MANDATE_AGENT_HOME!, 'credentials.json');
      assert.equal(statSync(credentials).mode & 0o777, 0o600, 'credentials readable by the user only');

      const tools = cli(['tools']);
      assert.equal(await tools.exited, 0, tools.err());
      assert.deepEqual(tools.out().trim().split('\n').map((line) => line.split('\t')[0]).sort(), ['list_transactions', 'read_balance']);

      const call = cli(['call', 'read_balance']);
      assert.equal(await call.exited, 0, call.err());
      assert.deepEqual(JSON.parse(call.out()), { balance: '1250.00', currency: 'EUR' });

      const tokens = cli(['tokens']);
      assert.equal(await tokens.exited, 0, tokens.err());
      const rows = Object.fromEntries(tokens.out().trim().split('\n').slice(1).map((line) => { const [claim, ...cells] = line.split(/\s{2,}/); return [claim, cells]; }));
      assert.deepEqual(rows.act, ['—', '—', JSON.stringify({ sub: 'sample-agent', iss: at(9000), sub_profile: 'ai_agent', client_id: 'sample-agent' })], 'act = the agent, on the exchanged token only');
      assert.deepEqual(rows.may_act, ['—', '{"sub":"sample-agent"}', '—'], 'the subject token names the agent in may_act');
      assert.equal(rows.aud[1], 'http://localhost:3000');
      assert.equal(rows.aud[2], `${at(8080)}/mcp`);
      assert.equal(rows.sub[0], 'sample-agent');
      assert.equal(rows.sub[1], rows.sub[2], 'the same user on the subject and exchanged tokens');
    });

    it('step-up: call transfer without banking:transfer signs in again for that scope, then succeeds', async () => {
      const run = await agentWithSignIn(browser, ['call', 'transfer', '--args', '{"to":"bob","amount":5}', '--callback-port', '0'], env);
      assert.equal(run.code, 0, run.err);
      assert.match(run.url.searchParams.get('scope')!, /banking:read banking:transfer/);
      assert.equal(JSON.parse(run.out).performed_by, 'sample-agent');
      const event = await auditEvent(dataDir, (e) => e.tool === 'transfer' && e.decision === 'allow');
      assert.deepEqual(event.act, [{ sub: 'sample-agent', client_id: 'sample-agent', sub_profile: 'ai_agent', iss: at(9000) }]);
    });

    it('a transfer over 100 EUR waits for the person\'s approval at the demo AS (--no-wait: the link, exit 13, nothing moved)', async () => {
      const held = cli(['call', 'transfer', '--args', '{"to":"bob","amount":250}', '--no-wait']);
      assert.equal(await held.exited, 13, held.err());
      assert.match(held.err(), new RegExp(`This call needs your approval: .*Transfer 250 EUR to bob.*\\n\\s+open ${at(9000)}/approve/[A-Za-z0-9_-]+\\n`));
      const event = await auditEvent(dataDir, (e) => e.tool === 'transfer' && e.rejection === 'approval_required');
      assert.equal(event.approval, 'required');
      assert.match(String(event.approval_id), /^[A-Za-z0-9_-]+$/);
    });

    it('chat in a terminal: /tools and /call', async () => {
      const chat = cli(['chat'], { pty: true });
      try {
        await chat.waitFor(/\/exit/, chat.out);
        chat.child.stdin.write('/tools\n');
        await chat.waitFor(/read_balance\s+The user's account balance/, chat.out);
        chat.child.stdin.write('/call read_balance {}\n');
        await chat.waitFor(/"balance": "1245.00"/, chat.out);
        chat.child.stdin.write('/exit\n');
        assert.equal(await chat.exited, 0);
      } finally {
        if (chat.child.exitCode === null) chat.child.kill('SIGKILL');
      }
    });

    it('an agent disabled at the AS: a one-line error and exit 5', async () => {
      // The demo's admin exists already (its generated password is printed and kept in the data dir): it signs in.
      const password = readFileSync(join(dataDir, 'secrets', 'admin.password'), 'utf8').trim();
      const admin = accessWith(at(9000), (await signInAdmin(at(9000), 'admin', password)).accessToken);
      const patch = (enabled: boolean) => admin.api('PATCH', '/agents/sample-agent', { enabled });
      assert.equal((await patch(false)).status, 200);
      try {
        const disabled = cli(['call', 'read_balance']);
        assert.equal(await disabled.exited, 5, disabled.err());
        assert.match(disabled.err(), /is the agent disabled or expired, or AGENT_SECRET wrong\?/);
      } finally {
        assert.equal((await patch(true)).status, 200);
      }
    });

    it('device authorization grant: login --device, the verification page completed in Chromium', async () => {
      const home = mkdtempSync(join(tmpdir(), 'mandate-agent-device-'));
      const run = agentCli(['login', '--device', '--scope', 'banking:read'], { ...env, MANDATE_AGENT_HOME: home });
      const context = await browser.newContext();
      try {
        const [, code] = await run.waitFor(/enter the code ([A-Z]{4}-[A-Z]{4})/, run.err);
        const [, url] = await run.waitFor(/\(or open (\S+);/, run.err);
        assert.equal(new URL(url!).origin + new URL(url!).pathname, `${at(9000)}/device`);
        const page = await context.newPage();
        await page.goto(url!);
        assert.equal(await page.getByLabel('Code').inputValue(), code, 'the code is filled in from the complete URL');
        await navigating(page, () => page.getByRole('button', { name: 'Continue' }).click());
        const { steps } = await authorizeInChromium(page, page.url(), { callback: externalRedirectUri(`${at(9000)}/device/done`) });
        assert.deepEqual(steps, ['login', 'consent'], 'consent is asked again for a device');
        assert.match(await page.locator('h1').innerText(), /Device connected/);
        assert.equal(await run.exited, 0, run.err());
        assert.match(run.out(), /Signed in as .+ with banking:read/);
        const tools = agentCli(['call', 'read_balance'], { ...env, MANDATE_AGENT_HOME: home });
        assert.equal(await tools.exited, 0, tools.err());
      } finally {
        await context.close();
        if (run.child.exitCode === null) run.child.kill('SIGKILL');
        rmSync(home, { recursive: true, force: true });
      }
    });

    it('without a client id: login registers the agent (dynamic registration by default, --register agent for an agent identity)', async () => {
      const home = mkdtempSync(join(tmpdir(), 'mandate-agent-reg-'));
      const fresh = { MANDATE_AGENT_HOME: home, AGENT_CLIENT_ID: '', AGENT_SECRET: '' };
      try {
        const secretOnly = agentCli(['tools'], { ...fresh, AGENT_SECRET: 'x' });
        assert.equal(await secretOnly.exited, 2);
        assert.match(secretOnly.err(), /AGENT_SECRET is set but no --client-id/);

        // auto: the demo AS takes no loopback metadata documents, so RFC 7591 — a public client, signed in for the gateway itself.
        const direct = await agentWithSignIn(browser, ['login', '--callback-port', '0', '--scope', 'banking:read'], fresh);
        assert.equal(direct.code, 0, direct.err);
        assert.match(direct.err, new RegExp(`^Registered at ${at(9000)} as mc_\\S+ \\(dynamic client registration \\(RFC 7591\\)\\)`, 'm'));
        assert.equal(direct.url.searchParams.get('resource'), `${at(8080)}/mcp`);
        assert.match(direct.out, new RegExp(`holds your token for ${at(8080)}/mcp with banking:read \\(direct`));
        const call = agentCli(['call', 'read_balance'], fresh);
        assert.equal(await call.exited, 0, call.err());
        assert.equal(JSON.parse(call.out()).currency, 'EUR');

        // --register agent: /aiagent/register, then delegation: the exchanged token's act names the new agent.
        const agent = await agentWithSignIn(browser, ['login', '--register', 'agent', '--callback-port', '0', '--scope', 'banking:read'], fresh);
        assert.equal(agent.code, 0, agent.err);
        const id = /as (agent_\S+) \(agent registration\)/.exec(agent.err)?.[1];
        assert.ok(id, agent.err);
        assert.equal(agent.sign.steps.includes('consent'), true, 'the person consents to the new agent');
        assert.match(agent.out, new RegExp(`; ${id} may act for you at ${at(8080)}/mcp`));
        const tokens = agentCli(['tokens'], fresh);
        assert.equal(await tokens.exited, 0, tokens.err());
        const act = tokens.out().split('\n').find((line) => line.startsWith('act '));
        assert.match(act ?? '', new RegExp(`\\{"sub":"${id}","iss":"[^"]+","sub_profile":"ai_agent","client_id":"${id}"\\}`));
        const whoami = agentCli(['whoami'], fresh);
        assert.equal(await whoami.exited, 0, whoami.err());
        assert.deepEqual(
          (({ client_id, registration, mode }) => ({ client_id, registration, mode }))(JSON.parse(whoami.out()) as Record<string, string>),
          { client_id: id, registration: 'agent registration', mode: 'delegated' },
        );
        const forget = agentCli(['logout', '--forget-registration'], fresh);
        assert.equal(await forget.exited, 0, forget.err());
        assert.match(forget.out(), new RegExp(`Signed out\\.\\nForgot the registration ${id}`));
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    });

    it('logout forgets the sign-in', async () => {
      const out = cli(['logout']);
      assert.equal(await out.exited, 0);
      assert.match(out.out(), /Signed out/);
      assert.equal(await cli(['whoami']).exited, 7);
    });
  });

  it('stops cleanly on Ctrl-C', async () => {
    demo.child.kill('SIGINT');
    assert.equal(await demo.exited, 0);
    assert.match(demo.out(), /stopping/);
  });
});

describe('the demo configuration under --port-offset and --data-dir', () => {
  it('moves every demo URL (issuer, resources, gateway route) and data path, and leaves other URLs alone', async () => {
    const { demoConfigs, demoOptions } = await import('../../src/cli/demo.ts');
    const cwd = mkdtempSync(join(tmpdir(), 'mandate-demo-config-'));
    try {
      const options = demoOptions(['--port-offset', '100', '--data-dir', join(cwd, 'd')], {});
      const { auth, gateway, gatewayFile } = await demoConfigs(options);
      assert.equal(auth.issuer, 'http://localhost:9100');
      assert.equal(auth.listen.port, 9100);
      assert.equal(auth.data_dir, join(cwd, 'd'));
      assert.deepEqual(auth.resources.map((r) => r.id), ['http://localhost:8887/mcp', 'http://localhost:8101', 'http://localhost:3000', 'http://localhost:8180/mcp']);
      assert.equal(auth.registration.default_resource, 'http://localhost:8180/mcp');
      assert.deepEqual(auth.cors.allowed_origins, ['http://localhost:6274', 'http://127.0.0.1:6274'], 'the Inspector page keeps its port');
      assert.deepEqual(auth.agents[0]!.redirect_uris, ['http://localhost:3000/callback'], 'the agent\'s redirect is not a demo port');
      assert.equal(gateway.listen.port, 8180);
      assert.equal(gateway.admin.listen.port, 9564);
      const route = mcpRoute(gateway.routes[0]!);
      assert.deepEqual([route.upstream, route.resource, route.authorization_servers], ['http://localhost:8100/', 'http://localhost:8180/mcp', ['http://localhost:9100']]);
      assert.equal(gateway.audit.file, join(cwd, 'd', 'gateway-audit.jsonl'));
      assert.equal(gateway.data_dir, join(cwd, 'd', 'gateway'));
      assert.equal(gatewayFile, join(cwd, 'd', 'demo-gateway.yaml'), 'the reload watches the moved file');
      assert.match(readFileSync(gatewayFile, 'utf8'), /upstream: http:\/\/localhost:8100\//);
      const defaults = await demoConfigs(demoOptions([], {}));
      assert.equal(defaults.auth.issuer, 'http://localhost:9000');
      assert.equal(defaults.gatewayFile, new URL('../../examples/demo/gateway.yaml', import.meta.url).pathname, 'by default the example file itself is watched');
      assert.deepEqual(demoOptions([], { MANDATE_DEMO_PORT_OFFSET: '5', MANDATE_DEMO_DATA_DIR: 'x' }), { portOffset: 5, dataDir: 'x' });
      // 8080 + 2000 = 10080, a port fetch refuses: the demo says so instead of starting a gateway no client reaches.
      assert.throws(() => demoOptions(['--port-offset', '2000'], {}), /--port-offset 2000 puts a service on port 10080, which fetch .* refuses/);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe('the mandate command', () => {
  it('rejects a configuration with an unknown key, naming it, with exit code 2', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mandate-cli-'));
    try {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(cwd, 'bad.yaml'), 'issuer: http://localhost:9100\ntokenz: {}\n');
      const cli = run(['serve', 'auth', '--config', 'bad.yaml'], cwd);
      assert.equal(await cli.exited, 2);
      assert.match(cli.err(), /tokenz/);
      assert.doesNotMatch(cli.err(), /at .*\.ts:\d+/, 'no stack trace');
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('`mandate demo` refuses a port offset that leaves the port range, with exit code 2 and no stack trace', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mandate-cli-'));
    try {
      const cli = run(['demo', '--port-offset', '60000'], cwd);
      assert.equal(await cli.exited, 2);
      assert.match(cli.err(), /^mandate demo: --port-offset must be a whole number from -7999 to 56071, not "60000"\n$/);
      const bad = spawn(process.execPath, [BIN, 'demo'], { cwd, env: { ...process.env, MANDATE_DEMO_PORT_OFFSET: 'ten' } });
      let err = '';
      bad.stderr.on('data', (d) => (err += d));
      assert.equal(await new Promise((r) => bad.on('exit', r)), 2);
      assert.match(err, /--port-offset must be a whole number .* not "ten"/);
      assert.ok(!existsSync(join(cwd, '.mandate', 'keys.json')), 'nothing started');
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('`mandate hash-password` hashes a piped password with scrypt', async () => {
    const cli = spawn(process.execPath, [BIN, 'hash-password'], { env: process.env });
    let out = '';
    cli.stdout.on('data', (d) => (out += d));
    cli.stdin.end('correct horse\n');
    assert.equal(await new Promise((r) => cli.on('exit', r)), 0);
    const { verifyPassword } = await import('../../src/auth-server/passwords.ts');
    assert.equal(await verifyPassword('correct horse', out.trim()), true);
    assert.equal(await verifyPassword('wrong', out.trim()), false);
  });

  it('`mandate keys rotate` adds a key to the data dir', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mandate-keys-'));
    try {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(cwd, 'auth.yaml'), 'issuer: http://localhost:9100\ndata_dir: data\n');
      const empty = run(['keys', 'list', '--config', 'auth.yaml'], cwd);
      assert.equal(await empty.exited, 1, 'listing creates nothing');
      assert.match(empty.err(), /no key file/);
      const rotate = run(['keys', 'rotate', '--config', 'auth.yaml'], cwd);
      assert.equal(await rotate.exited, 0, rotate.err());
      assert.match(rotate.out(), /new key \S+: published now, signs from/);
      const list = run(['keys', 'list', '--config', 'auth.yaml'], cwd);
      assert.equal(await list.exited, 0);
      assert.equal(list.out().trim().split('\n').length, 2);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});

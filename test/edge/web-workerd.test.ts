/**
 * `kind: web` routes in workerd (issue 16): the Worker bundle under Miniflare (Node 22 from
 * .cache/edge), in two isolates (`--instances 2`) sharing the GatewayState Durable Object, signs
 * people in at a real authorization server (the test helpers' AS, a first-party `web-app` client),
 * as a browser does it: cookies and redirects over fetch, the AS's login form posted by
 * FormBrowser. The app behind it is a loopback recorder: it must receive the gateway's signed
 * identity assertion (checked against the Worker's JWKS, the configured key) and never a token nor
 * the gateway's cookie. Loopback only, bounded in time; workerd is stopped at the end.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, SignJWT, type JWK } from 'jose';
import { signJwt } from '../../src/core/jwt.ts';
import { DEMO_PASSWORD_HASH, freePort, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { listedTools, mcpPost } from '../helpers/gateway.ts';
import { skipUnless } from '../helpers/services.ts';

const EDGE = resolve('.cache/edge/node_modules');
const NODE22 = join(EDGE, 'node/bin/node');
const available = existsSync(NODE22) && existsSync(join(EDGE, 'miniflare/package.json'));
const STARTUP_MS = 30_000;
const CLIENT_SECRET = 'web-edge-test-client-secret-0123456789abcdef';
const COOKIE_KEY = 'web-edge-test-cookie-key-0123456789abcdefghij';
const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/** A browser's cookies for the gateway's host (cookies ignore the port: both isolates get them). */
class Jar {
  readonly cookies = new Map<string, string>();
  /** Every Set-Cookie line received, in order. */
  readonly received: string[] = [];

  header(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  remember(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      this.received.push(line);
      const [pair, ...attributes] = line.split(';');
      const name = pair!.slice(0, pair!.indexOf('=')).trim();
      if (attributes.some((attribute) => /^\s*max-age=0\s*$/i.test(attribute))) this.cookies.delete(name);
      else this.cookies.set(name, pair!.slice(pair!.indexOf('=') + 1));
    }
  }

  async get(url: string, init: RequestInit = {}): Promise<Response> {
    const response = await fetch(url, { redirect: 'manual', ...init, headers: { accept: 'text/html', ...(init.headers as Record<string, string>), cookie: this.header() } });
    this.remember(response);
    return response;
  }
}

describe('web routes in workerd: sign-in, rules, sign-out, back-channel logout, two isolates', skipUnless(available, 'edge tests: run `npm run edge:install` (Miniflare and workerd need Node 22, installed under .cache/)'), () => {
  let as: TestAuthServer;
  let app: Server;
  const seen: { method: string; url: string; headers: IncomingHttpHeaders }[] = [];
  let upstream: string;
  let worker: ChildProcess | undefined;
  let dir: string;
  let gatewayUrl: string;
  /** The second isolate's origin. */
  let other: string;
  let identityKey: JWK;
  let stdout = '';
  // Where the app's redirect points: the browser's business, never the gateway's.
  const elsewhereSeen: IncomingHttpHeaders[] = [];
  const elsewhere = createServer((request, response) => void (elsewhereSeen.push(request.headers), response.end('elsewhere')));
  let elsewhereUrl: string;

  const auditEvents = () =>
    stdout
      .split('\n')
      .filter((line) => line.startsWith('{"audit":"mandate-gateway"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  /** The audit event that matches, waiting for workerd's stdout (bounded). */
  async function waitForAudit(match: (event: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> {
    for (let i = 0; i < 100; i++) {
      const event = auditEvents().find(match);
      if (event) return event;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no audit event: ${what}\n${stdout.slice(-3000)}`);
  }

  before(async () => {
    gatewayUrl = `http://127.0.0.1:${await freePort()}`;
    process.env.WEB_EDGE_CLIENT_SECRET = CLIENT_SECRET;
    as = await startTestAuthServer({
      users: [
        { username: 'demo', name: 'Demo User', email: 'demo@example.com', password_hash: DEMO_PASSWORD_HASH },
        { username: 'admin', name: 'Administrator', email: 'admin@example.com', password_hash: DEMO_PASSWORD_HASH },
      ],
      clients: [
        {
          client_id: 'web-app',
          client_name: 'Example web app',
          client_secret_env: 'WEB_EDGE_CLIENT_SECRET',
          redirect_uris: [`${gatewayUrl}/app/callback`],
          first_party: true,
          post_logout_redirect_uris: [`${gatewayUrl}/app/signed-out`],
          backchannel_logout_uri: `${gatewayUrl}/app/backchannel-logout`,
        } as never,
      ],
    });
    // The app: records what reaches it, answers a page.
    app = createServer((request, response) => {
      seen.push({ method: request.method!, url: request.url!, headers: request.headers });
      if (request.url === '/moved') {
        // The app sends the browser elsewhere: the gateway must pass this on, not go there itself.
        response.writeHead(302, { location: `${elsewhereUrl}/landing` }).end();
        return;
      }
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'set-cookie': ['app_pref=dark; Path=/', 'mandate_web=planted; Path=/app/'] });
      response.end(`<h1>app page ${request.url}</h1>`);
    });
    await new Promise<void>((ready) => app.listen(0, '127.0.0.1', ready));
    await new Promise<void>((ready) => elsewhere.listen(0, '127.0.0.1', ready));
    elsewhereUrl = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}`;
    upstream = `http://127.0.0.1:${(app.address() as AddressInfo).port}/`;

    dir = mkdtempSync(join(tmpdir(), 'mandate-edge-web-'));
    script = join(dir, 'gateway.js');
    persist = join(dir, 'state');
    const built = spawnSync(process.execPath, ['scripts/build-edge.mjs', '--outfile', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(built.status, 0, built.stderr);
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    identityKey = { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig' };
    configFile = join(dir, 'gateway.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        routes: [
          {
            kind: 'web',
            path: '/app/',
            upstream,
            rewrite: '/',
            public_url: gatewayUrl,
            oidc: { issuer: as.issuer, client_id: 'web-app', client_secret_env: 'WEB_EDGE_CLIENT_SECRET' },
            // Seed 004: role claims → paths. Here: the admin area for the admin user only.
            rules: [{ allow: "!path.startsWith('/app/admin/') || claims.preferred_username == 'admin'", reason: 'the admin area is for administrators' }],
          },
          // An MCP route beside it, as in the demo: the Worker sends each request to the right one.
          { path: '/mcp', upstream: `${upstream}mcp`, resource: `${gatewayUrl}/mcp`, authorization_servers: [as.issuer], scopes: ['mcp:read'], tools: listedTools() },
        ],
      }),
    );
    await startWorkerd();
  });

  let configFile: string;
  let script: string;
  let persist: string;

  /** workerd on the gateway's port, two isolates, the Durable Object persisted in `persist`. */
  async function startWorkerd(): Promise<void> {
    const args = ['scripts/edge-workerd.mjs', '--config', configFile, '--script', script, '--host', '127.0.0.1', '--port', new URL(gatewayUrl).port, '--instances', '2', '--persist', persist];
    for (const binding of [`WEB_EDGE_CLIENT_SECRET=${CLIENT_SECRET}`, `MANDATE_WEB_COOKIE_KEY=${COOKIE_KEY}`, `MANDATE_WEB_IDENTITY_KEY=${JSON.stringify(identityKey)}`]) args.push('--binding', binding);
    const child = spawn(NODE22, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    worker = child;
    const from = stdout.length;
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`workerd did not start in ${STARTUP_MS} ms:\n${stdout.slice(from)}\n${stderr}`)), STARTUP_MS);
      const check = () => {
        const output = stdout.slice(from);
        const line = output.split('\n').find((l) => l.startsWith('{"url":'));
        if (line && output.slice(output.indexOf(line) + line.length).includes('\n')) {
          const urls = (JSON.parse(line) as { urls: string[] }).urls;
          assert.equal(urls[0], gatewayUrl);
          other = urls[1]!;
          clearTimeout(timer);
          child.stdout!.off('data', check);
          ready();
        }
      };
      child.stdout!.on('data', check);
      child.once('exit', (code) => {
        clearTimeout(timer);
        fail(new Error(`workerd exited (${code}):\n${stdout.slice(from)}\n${stderr}`));
      });
    });
  }

  async function stopWorkerd(): Promise<void> {
    const child = worker;
    worker = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM'); // edge-workerd.mjs disposes of workerd (its stdin is a socket here, not a FIFO)
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  after(async () => {
    await stopWorkerd();
    await new Promise<void>((r) => (app ? app.close(() => r()) : r()));
    app?.closeAllConnections();
    elsewhere.closeAllConnections();
    await new Promise<void>((r) => elsewhere.close(() => r()));
    await as?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Opens `start` without a session: 302 to the AS; the AS's forms as `username` (none when the AS
   * session of `browser` is still on); back at the callback — through `finishAt` (an isolate's
   * origin) — which sets the session cookie and sends the browser where it was going.
   */
  async function signIn(jar: Jar, browser: FormBrowser, options: { start?: string; username?: string; finishAt?: string } = {}): Promise<Response> {
    const start = options.start ?? `${gatewayUrl}/app/`;
    const first = await jar.get(start);
    assert.equal(first.status, 302, await first.text());
    const authorize = new URL(first.headers.get('location')!);
    assert.equal(authorize.origin, as.issuer);
    assert.deepEqual([...authorize.searchParams.keys()].sort(), ['client_id', 'request_uri'], 'pushed (PAR): the browser carries only client_id and request_uri');
    const callback = await browser.authorize(authorize.href, { username: options.username ?? 'demo', password: 'demo' });
    assert.equal(`${callback.origin}${callback.pathname}`, `${gatewayUrl}/app/callback`);
    const back = await jar.get(`${options.finishAt ?? gatewayUrl}${callback.pathname}${callback.search}`);
    assert.equal(back.status, 302, await back.text());
    return back;
  }

  it('cold isolates: concurrent first requests, sharing the AS metadata read begun by one of them, each start a sign-in', async () => {
    const responses = await Promise.all(Array.from({ length: 6 }, (_, i) => fetch(`${i % 2 ? other : gatewayUrl}/app/?n=${i}`, { redirect: 'manual' })));
    for (const response of responses) {
      assert.equal(response.status, 302, await response.text());
      assert.equal(new URL(response.headers.get('location')!).origin, as.issuer);
    }
  });

  it('signs in (started through one isolate, finished through the other), the app gets a verified identity assertion and no token, one session for both isolates', async () => {
    const jar = new Jar();
    const back = await signIn(jar, new FormBrowser(as.issuer), { start: `${gatewayUrl}/app/reports?tab=1`, finishAt: other });
    assert.equal(back.headers.get('location'), '/app/reports?tab=1', 'back where the person was going');
    const session = jar.received.find((line) => line.startsWith('mandate_web='))!;
    assert.ok(session, `session cookie set: ${jar.received.join(' | ')}`);
    assert.match(session, /; Path=\/app\//);
    assert.match(session, /; HttpOnly/);
    assert.match(session, /; SameSite=Lax/);
    assert.ok(!/max-age|expires/i.test(session), 'a browser-session cookie');
    assert.ok(!jar.cookies.has('mandate_web_signin'), 'the sign-in cookie is gone after the callback');
    const signedIn = await waitForAudit((event) => event.web === 'signed_in', 'signed_in');
    assert.equal(signedIn.route, '/app/');
    assert.equal(typeof signedIn.sub, 'string');

    const before = seen.length;
    const page = await jar.get(`${gatewayUrl}/app/reports?tab=1`);
    assert.equal(page.status, 200);
    assert.equal(await page.text(), '<h1>app page /reports?tab=1</h1>');
    assert.deepEqual(page.headers.getSetCookie(), ['app_pref=dark; Path=/'], 'the app may not set the gateway\'s cookie');
    const request = seen.at(-1)!;
    assert.equal(seen.length, before + 1);
    assert.equal(request.url, '/reports?tab=1');
    assert.equal(request.headers.authorization, undefined, 'no token passthrough');
    assert.ok(!String(request.headers.cookie ?? '').includes('mandate_web'), 'the gateway\'s cookie stays at the gateway');
    const assertion = String(request.headers['x-mandate-identity']);
    assert.equal(decodeProtectedHeader(assertion).typ, 'mandate-id+jwt');
    // Signed with the configured key, served by both isolates as the gateway's JWKS.
    const jwks = (await (await fetch(`${gatewayUrl}/.well-known/mandate-gateway-jwks.json`)).json()) as { keys: JWK[] };
    assert.deepEqual((await (await fetch(`${other}/.well-known/mandate-gateway-jwks.json`)).json()) as unknown, jwks, 'one key for every isolate');
    assert.equal(jwks.keys.length, 1);
    assert.deepEqual([jwks.keys[0]!.x, jwks.keys[0]!.y, 'd' in jwks.keys[0]!], [identityKey.x, identityKey.y, false]);
    const { payload } = await jwtVerify(assertion, createLocalJWKSet(jwks), { issuer: gatewayUrl, audience: upstream, typ: 'mandate-id+jwt', algorithms: ['ES256'] });
    assert.equal(payload.sub, signedIn.sub);
    assert.equal(payload.name, 'Demo User');
    assert.equal(payload.email, 'demo@example.com');
    const forwarded = await waitForAudit((event) => event.path === '/app/reports' && event.upstream_status === 200, 'the forwarded page');
    assert.equal(forwarded.decision, 'allow');
    assert.equal(forwarded.sub, signedIn.sub);

    // The same cookie through the other isolate: the session is in the Durable Object.
    const there = await jar.get(`${other}/app/`);
    assert.equal(there.status, 200, 'one session, served by both isolates');
    assert.equal(seen.at(-1)!.url, '/');
  });

  it("the app's redirect reaches the browser as a 302 with its Location; the gateway does not follow it (the identity assertion goes to the app only)", async () => {
    const jar = new Jar();
    await signIn(jar, new FormBrowser(as.issuer));
    const moved = await jar.get(`${gatewayUrl}/app/moved`);
    assert.equal(moved.status, 302, await moved.text());
    assert.equal(moved.headers.get('location'), `${elsewhereUrl}/landing`);
    assert.equal(seen.at(-1)!.url, '/moved');
    assert.ok(seen.at(-1)!.headers['x-mandate-identity'], 'the app got the assertion');
    assert.deepEqual(elsewhereSeen, [], 'nothing reached the redirect target');
    const event = await waitForAudit((e) => e.path === '/app/moved' && e.upstream_status === 302, 'the redirect passed on');
    assert.equal(event.decision, 'allow');
  });

  it('a path refused by the claims rule: the 403 page, audited with the reason, nothing forwarded; the admin may open it', async () => {
    const jar = new Jar();
    await signIn(jar, new FormBrowser(as.issuer));
    const before = seen.length;
    const refused = await jar.get(`${other}/app/admin/`);
    assert.equal(refused.status, 403);
    const body = await refused.text();
    assert.match(body, /<h1>Access denied<\/h1>/);
    assert.match(body, /the admin area is for administrators/);
    assert.equal(seen.length, before, 'nothing forwarded');
    const event = await waitForAudit((e) => e.path === '/app/admin/' && e.status === 403, 'the refusal');
    assert.equal(event.decision, 'deny');
    assert.equal(event.rejection, 'rule_denied');
    assert.equal(event.reason, 'the admin area is for administrators');

    const admin = new Jar();
    await signIn(admin, new FormBrowser(as.issuer), { username: 'admin' });
    const allowed = await admin.get(`${other}/app/admin/`);
    assert.equal(allowed.status, 200);
    assert.equal(seen.at(-1)!.url, '/admin/');
  });

  it('sign-out ends the session in both isolates and sends the browser to the AS; the AS then ends the other session of its sign-in by back-channel logout', async () => {
    const browser = new FormBrowser(as.issuer);
    const one = new Jar();
    const two = new Jar();
    await signIn(one, browser);
    await signIn(two, browser); // the same AS session (sid): no password the second time
    assert.equal(browser.pages.filter((page) => page.html.includes('name="password"')).length, 1, 'single sign-on at the AS');
    const cookie = one.header();

    const out = await one.get(`${other}/app/logout`);
    assert.equal(out.status, 302);
    const endSession = new URL(out.headers.get('location')!);
    assert.equal(`${endSession.origin}${endSession.pathname}`, `${as.issuer}/logout`);
    assert.ok(endSession.searchParams.get('id_token_hint'));
    assert.equal(endSession.searchParams.get('client_id'), 'web-app');
    assert.equal(endSession.searchParams.get('post_logout_redirect_uri'), `${gatewayUrl}/app/signed-out`);
    assert.ok(!one.cookies.has('mandate_web'), 'the cookie is deleted');
    const signedOut = await waitForAudit((event) => event.web === 'signed_out', 'signed_out');
    assert.equal(typeof signedOut.sub, 'string');
    for (const origin of [gatewayUrl, other]) {
      const again = await fetch(`${origin}/app/`, { redirect: 'manual', headers: { cookie } });
      assert.equal(again.status, 302, 'the old cookie opens nothing, in either isolate');
      assert.equal(new URL(again.headers.get('location')!).origin, as.issuer);
    }
    assert.equal((await two.get(`${gatewayUrl}/app/`)).status, 200, 'the other session lives until the AS says');

    // RP-initiated logout at the AS: its session (sid) ends, and it tells the gateway.
    const done = await browser.open(endSession.href);
    assert.equal(done.external, `${gatewayUrl}/app/signed-out`);
    const ended = await waitForAudit((event) => event.web === 'backchannel_logout', 'the AS\'s logout token');
    assert.equal(ended.decision, 'allow');
    assert.match(String(ended.reason), /^ended 1 session\(s\) for sid /);
    assert.equal((await two.get(`${other}/app/`)).status, 302, 'ended by the back-channel logout, in every isolate');
    const page = await two.get(`${gatewayUrl}/app/signed-out`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /You are signed out/);
  });

  it('a logout token naming the subject ends all their sessions in both isolates; a replay through the other isolate and a forged token are refused (400, audited)', async () => {
    const demo = [new Jar(), new Jar()];
    await signIn(demo[0]!, new FormBrowser(as.issuer));
    await signIn(demo[1]!, new FormBrowser(as.issuer), { finishAt: other });
    const admin = new Jar();
    await signIn(admin, new FormBrowser(as.issuer), { username: 'admin' });
    // demo's subject, as the app learns it from the assertion.
    assert.equal((await demo[0]!.get(`${gatewayUrl}/app/`)).status, 200);
    const demoSub = String(decodeJwt(String(seen.at(-1)!.headers['x-mandate-identity'])).sub);
    const claims = () => ({ iss: as.issuer, aud: 'web-app', iat: Math.floor(Date.now() / 1000), jti: crypto.randomUUID(), sub: demoSub, events: { [LOGOUT_EVENT]: {} } });
    const token = await signJwt(as.ctx.keys, claims(), 'logout+jwt');
    const post = (origin: string, logoutToken: string) => fetch(`${origin}/app/backchannel-logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: logoutToken }) });

    const response = await post(gatewayUrl, token);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('cache-control'), 'no-store');
    const ended = await waitForAudit((event) => event.web === 'backchannel_logout' && String(event.reason).endsWith(`for sub ${demoSub}`), 'the logout by sub');
    assert.equal(ended.sub, demoSub);
    // These two, and demo's sessions of the tests above that are still on.
    assert.ok(Number(/^ended (\d+) session\(s\)/.exec(String(ended.reason))?.[1]) >= 2, String(ended.reason));
    for (const [jar, origin] of [[demo[0]!, other], [demo[1]!, gatewayUrl]] as const) assert.equal((await jar.get(`${origin}/app/`)).status, 302, 'ended everywhere');
    assert.equal((await admin.get(`${other}/app/`)).status, 200, 'someone else stays signed in');

    const replay = await post(other, token);
    assert.equal(replay.status, 400);
    assert.deepEqual(await replay.json(), { error: 'invalid_request', error_description: 'the logout token was refused' });
    const replayed = await waitForAudit((event) => event.rejection === 'logout_token_replayed', 'the replay');
    assert.equal(replayed.decision, 'deny');
    assert.equal(replayed.status, 400);
    assert.match(String(replayed.reason), /was already used/);

    // Signed by a key that is not the AS's: refused, nothing ended.
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', typ: 'logout+jwt', kid: 'not-the-as' }).sign(privateKey);
    const refused = await post(other, forged);
    assert.equal(refused.status, 400);
    const invalid = await waitForAudit((event) => event.rejection === 'logout_token_invalid', 'the forged token');
    assert.equal(invalid.decision, 'deny');
    assert.equal(invalid.status, 400);
    assert.match(String(invalid.reason), /^logout token refused: /);
  });
  it('an MCP route beside the web route: its requests go to the MCP chain (401 + protected resource metadata), never to the web app', async () => {
    const before = seen.length;
    const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } };
    const refused = await mcpPost(`${other}/mcp`, initialize);
    assert.equal(refused.status, 401, refused.text);
    assert.match(refused.headers.get('www-authenticate') ?? '', new RegExp(`resource_metadata="${gatewayUrl}/\\.well-known/oauth-protected-resource/mcp"`));
    const metadata = await fetch(`${gatewayUrl}/.well-known/oauth-protected-resource/mcp`);
    assert.equal(metadata.status, 200);
    assert.equal(((await metadata.json()) as { resource: string }).resource, `${gatewayUrl}/mcp`);
    assert.equal(seen.length, before, 'nothing reached the app');
    const event = await waitForAudit((e) => e.route === '/mcp' && e.status === 401, 'the MCP refusal');
    assert.equal(event.decision, 'deny');
  });

  it('a session survives a restart of workerd (the Durable Object persisted); a signed-out one stays ended', async () => {
    const kept = new Jar();
    const ended = new Jar();
    await signIn(kept, new FormBrowser(as.issuer));
    await signIn(ended, new FormBrowser(as.issuer), { username: 'admin' });
    const endedCookie = ended.header();
    assert.equal((await ended.get(`${gatewayUrl}/app/logout`)).status, 302);
    await stopWorkerd();
    await startWorkerd();
    const page = await kept.get(`${other}/app/`);
    assert.equal(page.status, 200, 'still signed in, through either isolate');
    assert.equal(await page.text(), '<h1>app page /</h1>');
    const again = await fetch(`${gatewayUrl}/app/`, { redirect: 'manual', headers: { cookie: endedCookie } });
    assert.equal(again.status, 302, 'signed out before the restart: still out');
  });
});

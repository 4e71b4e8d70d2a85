import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { gatewayConfigSchema, mcpRoute } from '../../src/config/gateway-schema.ts';
import { safeReturn, webPathMatcher } from '../../src/gateway/web/app.ts';
import { appCookies } from '../../src/gateway/web/forward.ts';
import { RelyingParty } from '../../src/gateway/web/oidc.ts';
import { compileWebRoute, cookieName, type CompiledWebRoute } from '../../src/gateway/web/route.ts';
import { CookieSealer } from '../../src/gateway/web/seal.ts';
import { startWebSso, type WebSso } from '../helpers/web-sso.ts';

const web = (route: Record<string, unknown> = {}) => ({
  kind: 'web',
  path: '/app/',
  upstream: 'http://localhost:8002/',
  public_url: 'https://apps.example.com',
  oidc: { issuer: 'https://id.example.com', client_id: 'web-app' },
  ...route,
});
const parse = (route: Record<string, unknown>) => gatewayConfigSchema.safeParse({ routes: [route] });
const issues = (route: Record<string, unknown>) => {
  const result = parse(route);
  assert.equal(result.success, false, 'refused');
  return result.error!.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('\n');
};

describe('gateway config: routes of kind web', () => {
  it('MCP routes are unchanged: kind defaults to mcp', () => {
    const config = gatewayConfigSchema.parse({ routes: [{ path: '/mcp', upstream: 'http://localhost:8000/', resource: 'http://localhost:8080/mcp', authorization_servers: ['http://localhost:9000'] }] });
    const route = mcpRoute(config.routes[0]!);
    assert.equal(route.kind, 'mcp');
    assert.equal(route.unlisted_tools, 'deny');
  });

  it('a web route gets secure defaults', () => {
    const route = gatewayConfigSchema.parse({ routes: [web()] }).routes[0]!;
    assert.equal(route.kind, 'web');
    if (route.kind !== 'web') return;
    assert.deepEqual(route.oidc.scopes, ['openid', 'profile', 'email']);
    assert.equal(route.oidc.par, 'auto');
    assert.deepEqual(route.session, { cookie_name: 'mandate_web', idle_seconds: 1800, absolute_seconds: 28_800, refresh_before_seconds: 30 });
    assert.deepEqual(route.identity, { assertion: true, header: 'X-Mandate-Identity', ttl_seconds: 60, headers: false, access_token: false }, 'an assertion, no plain headers, no token passthrough');
    assert.deepEqual(route.rules, []);
  });

  it('refuses what would weaken the route, naming the key', () => {
    assert.match(issues(web({ public_url: 'http://apps.example.com' })), /public_url: public_url must be https/);
    assert.match(issues(web({ oidc: { issuer: 'http://id.example.com', client_id: 'x' } })), /oidc\.issuer: oidc\.issuer must be https/);
    assert.match(issues(web({ path: '/app' })), /path: a path starting and ending with \//);
    assert.match(issues(web({ oidc: { issuer: 'https://id.example.com', client_id: 'x', scopes: ['profile'] } })), /oidc\.scopes: must include openid/);
    assert.match(issues(web({ oidc: { issuer: 'https://id.example.com', client_id: 'x', redirect_path: '/elsewhere/callback' } })), /oidc\.redirect_path: .*must be under the route path \/app\//);
    assert.match(issues(web({ logout: { backchannel_path: '/bcl' } })), /logout\.backchannel_path: .*must be under the route path/);
    assert.match(issues(web({ session: { cookie_name: '__Host-x' } })), /session\.cookie_name: without the __Host-\/__Secure- prefix/);
    assert.match(issues(web({ session: { idle_seconds: 9000, absolute_seconds: 3600 } })), /session\.idle_seconds: idle_seconds cannot be longer than absolute_seconds/);
    assert.match(issues(web({ resource: 'http://x' })), /Unrecognized key: "resource"/);
    assert.match(issues(web({ kind: 'webapp' })), /kind: Invalid discriminator value/);
    assert.match(issues(web({ identity: { ttl_seconds: 3600 } })), /identity\.ttl_seconds/);
  });

  it('plain http only on loopback (the demo)', () => {
    assert.equal(parse(web({ public_url: 'http://localhost:8080', oidc: { issuer: 'http://127.0.0.1:9000', client_id: 'x' } })).success, true);
  });

  it('the session cookie: Secure and the strongest prefix on https, Path = the route', () => {
    assert.equal(cookieName('s', { path: '/', public_url: 'https://a.example' }), '__Host-s');
    assert.equal(cookieName('s', { path: '/app/', public_url: 'https://a.example' }), '__Secure-s', '__Host- needs Path=/');
    assert.equal(cookieName('s', { path: '/app/', public_url: 'http://localhost:8080' }), 's');
    const route = gatewayConfigSchema.parse({ routes: [web()] }).routes[0]!;
    if (route.kind !== 'web') throw new Error('web');
    const compiled = compileWebRoute(route, 0, { env: {}, defaultSecret: new Uint8Array(32), fetch: async () => new Response(null, { status: 503 }) });
    assert.deepEqual(compiled.cookie, { session: '__Secure-mandate_web', signIn: '__Secure-mandate_web_signin', options: { path: '/app/', httpOnly: true, sameSite: 'Lax', secure: true } });
  });

  it('session.secret_env: gateways with the same secret read each other\'s cookies; a short secret is refused', async () => {
    const route = gatewayConfigSchema.parse({ routes: [web({ session: { secret_env: 'WEB_KEY' } })] }).routes[0]!;
    if (route.kind !== 'web') throw new Error('web');
    const secret = Buffer.alloc(32, 7).toString('base64');
    const one = compileWebRoute(route, 0, { env: { WEB_KEY: secret }, defaultSecret: crypto.getRandomValues(new Uint8Array(32)), fetch: async () => new Response(null, { status: 503 }) });
    const two = compileWebRoute(route, 0, { env: { WEB_KEY: secret }, defaultSecret: crypto.getRandomValues(new Uint8Array(32)), fetch: async () => new Response(null, { status: 503 }) });
    assert.equal(await two.sealer.unseal(await one.sealer.seal('id', 'session'), 'session'), 'id');
    assert.throws(() => compileWebRoute(route, 0, { env: { WEB_KEY: 'short' }, defaultSecret: new Uint8Array(32) }), /session\.secret_env: the session secret must be at least 32 bytes/);
  });

  it('a missing secret is a config error naming the variable', () => {
    const route = gatewayConfigSchema.parse({ routes: [web({ oidc: { issuer: 'https://id.example.com', client_id: 'x', client_secret_env: 'NOPE_SECRET' } })] }).routes[0]!;
    if (route.kind !== 'web') throw new Error('web');
    assert.throws(() => compileWebRoute(route, 0, { env: {}, defaultSecret: new Uint8Array(32) }), /routes\[0\] \(\/app\/\) oidc\.client_secret_env: environment variable NOPE_SECRET is not set/);
  });
});

describe('gateway web route: the pieces', () => {
  it('returns only to a path of the route on the same origin (no open redirect)', () => {
    assert.equal(safeReturn('/app/a?b=1', '/app/'), '/app/a?b=1');
    for (const bad of ['//evil.example/app/', '/\\evil.example', 'https://evil.example/app/', '/other/', '/app/../admin', '/app/\r\nx']) {
      assert.equal(safeReturn(bad, '/app/'), '/app/', bad);
    }
    assert.equal(safeReturn('//evil.example', '/'), '/', 'a root route too');
  });

  it('a web route at / leaves the MCP routes and their metadata alone', () => {
    const isWeb = webPathMatcher([{ config: { path: '/' } } as CompiledWebRoute], ['/mcp']);
    for (const path of ['/', '/app', '/mcpx', '/.well-known/mandate-gateway-jwks.json']) assert.equal(isWeb(path), true, path);
    for (const path of ['/mcp', '/mcp/x', '/.well-known/oauth-protected-resource/mcp']) assert.equal(isWeb(path), false, path);
    const app = webPathMatcher([{ config: { path: '/app/' } } as CompiledWebRoute], ['/']);
    assert.equal(app('/app/x'), true);
    assert.equal(app('/application'), false);
  });

  it("the app gets the browser's cookies minus the gateway's own", () => {
    assert.equal(appCookies('a=1; mandate_web=secret; b=2; mandate_web_signin=x', ['mandate_web', 'mandate_web_signin']), 'a=1; b=2');
    assert.equal(appCookies('mandate_web=secret', ['mandate_web']), undefined);
    assert.equal(appCookies('theme=dark; mandate_session=as-session; __Host-mandate_x=1', ['sso']), 'theme=dark', "the AS's session (same host name, another port) never reaches the app");
  });

  it('a sealed cookie cannot be read, changed, or used for another purpose or route', async () => {
    const key = crypto.getRandomValues(new Uint8Array(32));
    const sealer = new CookieSealer(key, '/app/');
    const sealed = await sealer.seal('session-id', 'session');
    assert.ok(!sealed.includes('session-id'));
    assert.equal(await sealer.unseal(sealed, 'session'), 'session-id');
    assert.equal(await sealer.unseal(sealed, 'signin'), undefined, 'another purpose');
    assert.equal(await new CookieSealer(key, '/other/').unseal(sealed, 'session'), undefined, 'another route');
    const flipped = `${sealed.slice(0, -2)}${sealed.at(-2) === 'A' ? 'B' : 'A'}${sealed.at(-1)}`;
    assert.equal(await sealer.unseal(flipped, 'session'), undefined, 'tampered');
    assert.equal(await sealer.unseal('session-id', 'session'), undefined, 'not sealed at all');
  });

  describe('PAR (RFC 9126) when the AS offers it', () => {
    let server: ReturnType<typeof createServer>;
    let issuer: string;
    const pushed: URLSearchParams[] = [];
    before(async () => {
      server = createServer((req, res) => {
        let body = '';
        req.on('data', (chunk: Buffer) => (body += chunk));
        req.on('end', () => {
          res.setHeader('content-type', 'application/json');
          if (req.url === '/.well-known/openid-configuration') {
            res.end(JSON.stringify({ issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks`, pushed_authorization_request_endpoint: `${issuer}/par`, response_types_supported: ['code'] }));
          } else if (req.url === '/par' && req.method === 'POST') {
            pushed.push(new URLSearchParams(body));
            res.statusCode = 201;
            res.end(JSON.stringify({ request_uri: 'urn:ietf:params:oauth:request_uri:abc', expires_in: 60 }));
          } else {
            res.statusCode = 404;
            res.end('{}');
          }
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it('pushes code + PKCE S256 + state + nonce; the browser gets only client_id and request_uri', async () => {
      const rp = new RelyingParty({ issuer, clientId: 'web-app', clientSecret: 's3cret', redirectUri: 'http://localhost:8080/app/callback', scopes: ['openid'], par: 'auto', userinfo: false });
      const started = await rp.startSignIn();
      const url = new URL(started.url);
      assert.deepEqual([...url.searchParams.keys()].sort(), ['client_id', 'request_uri']);
      assert.equal(url.searchParams.get('request_uri'), 'urn:ietf:params:oauth:request_uri:abc');
      const body = pushed.at(-1)!;
      assert.equal(body.get('response_type'), 'code');
      assert.equal(body.get('code_challenge_method'), 'S256');
      assert.equal(body.get('state'), started.state);
      assert.equal(body.get('nonce'), started.nonce);
      assert.equal(body.get('redirect_uri'), 'http://localhost:8080/app/callback');
      const plain = new RelyingParty({ issuer, clientId: 'web-app', redirectUri: 'http://localhost:8080/app/callback', scopes: ['openid'], par: 'off', userinfo: false });
      const front = new URL((await plain.startSignIn()).url);
      assert.equal(front.searchParams.get('code_challenge_method'), 'S256', 'par: off sends the request through the browser');
      assert.equal(front.searchParams.get('request_uri'), null);
    });
  });
});

describe('gateway web route over https: the cookies are Secure', () => {
  let sso: WebSso;
  before(async () => {
    sso = await startWebSso({ route: { public_url: 'https://apps.example.test' }, client: { redirect_uris: ['https://apps.example.test/app/callback'] } });
  });
  after(() => sso?.close());

  it('the sign-in state cookie is __Secure-, Secure, HttpOnly, SameSite=Lax, Path=/app/; the request is pushed (PAR) with the public redirect URI', async () => {
    const response = await fetch(`${sso.gatewayUrl}/app/reports?x=1`, { redirect: 'manual' });
    assert.equal(response.status, 302, 'the AS accepted the pushed request: its redirect URI is the registered https one');
    const location = new URL(response.headers.get('location')!);
    assert.equal(`${location.origin}${location.pathname}`, `${sso.as.issuer}/authorize`);
    assert.equal(location.searchParams.get('client_id'), 'web-app');
    assert.match(location.searchParams.get('request_uri') ?? '', /^urn:ietf:params:oauth:request_uri:/);
    const cookie = response.headers.get('set-cookie')!;
    assert.match(cookie, /^__Secure-mandate_web_signin=v1\.[\w-]+\.[\w-]+;/);
    for (const attribute of ['Max-Age=600', 'Path=/app/', 'HttpOnly', 'Secure', 'SameSite=Lax']) assert.ok(cookie.split('; ').includes(attribute), `${attribute} in ${cookie}`);
  });

  it('a callback that this browser did not start is refused (400 page), audited with the reason', async () => {
    const response = await fetch(`${sso.gatewayUrl}/app/callback?code=abc&state=forged&iss=${encodeURIComponent(sso.as.issuer)}`, { redirect: 'manual' });
    assert.equal(response.status, 400);
    assert.match(await response.text(), /Sign-in did not complete/);
    const event = (await sso.auditEvents()).find((e) => e.path === '/app/callback')!;
    assert.equal(event.rejection, 'signin_failed');
    assert.equal(event.reason, 'the state does not match the sign-in this browser started');
  });

  it('a form post without a session gets 401, not a redirect', async () => {
    const response = await fetch(`${sso.gatewayUrl}/app/form`, { method: 'POST', body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' }, redirect: 'manual' });
    assert.equal(response.status, 401);
    const event = (await sso.auditEvents()).find((e) => e.path === '/app/form')!;
    assert.equal(event.rejection, 'no_session');
  });

  it('serves the identity assertion keys (public only) at /.well-known/mandate-gateway-jwks.json', async () => {
    const response = await fetch(`${sso.gatewayUrl}/.well-known/mandate-gateway-jwks.json`);
    assert.equal(response.status, 200);
    const { keys } = (await response.json()) as { keys: Record<string, unknown>[] };
    assert.equal(keys.length, 1);
    assert.equal(keys[0]!.alg, 'ES256');
    assert.equal(keys[0]!.d, undefined, 'no private part');
  });

  it('the app refuses a request that did not come through the gateway', async () => {
    const response = await fetch(sso.app.url, { headers: { 'x-mandate-identity': 'forged' } });
    assert.equal(response.status, 401);
  });
});

describe('gateway web route: the AS refuses the pushed request', () => {
  let sso: WebSso;
  before(async () => {
    // The route's redirect URI (on this public URL) is not registered for the client.
    sso = await startWebSso({ route: { public_url: 'https://unregistered.example.test' } });
  });
  after(() => sso?.close());

  it('502 page, nothing stored in the browser; audited as par_failed with the AS error', async () => {
    const response = await fetch(sso.start, { redirect: 'manual' });
    assert.equal(response.status, 502);
    assert.match(await response.text(), /refused to start the sign-in/);
    assert.equal(response.headers.get('set-cookie'), null);
    const event = (await sso.auditEvents()).find((e) => e.path === '/app/')!;
    assert.equal(event.decision, 'error');
    assert.equal(event.rejection, 'par_failed');
    assert.match(String(event.reason), /^the pushed authorization request failed: invalid_\w+/);
  });
});

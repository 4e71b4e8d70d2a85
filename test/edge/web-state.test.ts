/**
 * The web routes' state at the edge, in Node (the Worker entry and GatewayState are web-standard):
 * `DurableWebSessions` on GatewayState objects over an in-memory storage (sealed records, indexes
 * for back-channel logout, single-use states and logout tokens, expiry and the alarm), the Worker
 * refusing to build web routes without their keys (500, the reason logged, never on the wire),
 * failing closed (503, the reason audited) when the Durable Object cannot be reached, and signing
 * in with the isolate's memory when there is no GATEWAY_STATE.
 * (test/edge/web-workerd.test.ts runs the real thing in workerd against a real AS.)
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it, mock } from 'node:test';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';
import worker from '../../src/gateway/workers/index.ts';
import type { DurableNamespace } from '../../src/gateway/workers/durable-state.ts';
import { DurableWebSessions } from '../../src/gateway/workers/web-sessions.ts';
import { CookieSealer, secretBytes } from '../../src/gateway/web/seal.ts';
import type { WebSession } from '../../src/gateway/web/store.ts';
import { startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { failingNamespace, localNamespace } from '../helpers/edge-worker.ts';

const session = (overrides: Partial<WebSession> = {}): WebSession => {
  const now = Math.floor(Date.now() / 1000);
  return {
    route: '/app/',
    sub: 'user-1',
    sid: 'as-session-1',
    claims: { sub: 'user-1', name: 'Demo User' },
    idToken: 'id-token-secret-value',
    accessToken: 'access-token-secret-value',
    refreshToken: 'refresh-token-secret-value',
    createdAt: now,
    lastSeenAt: now,
    expiresAt: now + 3600,
    ...overrides,
  };
};

describe('DurableWebSessions on GatewayState objects', () => {
  it('keeps a session under the hash of its id, sealed: the storage holds no token and cannot be read without the id', async () => {
    const { namespace, objects } = localNamespace();
    const store = new DurableWebSessions(namespace);
    const saved = session();
    await store.save('session-id-1', saved, 600);
    assert.deepEqual(await store.get('session-id-1'), saved);
    assert.equal(await store.get('session-id-2'), undefined);
    const names = [...objects.entries()].filter(([, entry]) => entry.memory.data.size > 0).map(([name]) => name);
    assert.equal(names.filter((name) => name.startsWith('web:session:')).length, 1);
    assert.deepEqual(names.map((name) => name.split(':').slice(0, 2).join(':')).sort(), ['web:session', 'web:sid', 'web:sub']);
    const everything = JSON.stringify([...objects.entries()].map(([name, entry]) => [name, [...entry.memory.data]]));
    // (The AS session id and the subject stay in clear beside the sealed record: back-channel logout matches them.)
    for (const secret of ['session-id-1', 'access-token-secret-value', 'refresh-token-secret-value', 'id-token-secret-value', 'Demo User']) {
      assert.ok(!everything.includes(secret), `${secret} is not in the objects' names nor storage`);
    }
    const record = [...objects.entries()].find(([name]) => name.startsWith('web:session:'))![1];
    assert.ok(record.memory.alarm()! > Date.now(), 'the object deletes itself at the record\'s expiry');
    await store.delete('session-id-1');
    assert.equal(await store.get('session-id-1'), undefined);
  });

  it('back-channel logout: by sid ends that AS session\'s sessions at that route only; by sub every session of the subject', async () => {
    const { namespace } = localNamespace();
    const store = new DurableWebSessions(namespace);
    await store.save('a', session(), 600);
    await store.save('b', session(), 600);
    await store.save('c', session({ sid: 'as-session-2' }), 600);
    await store.save('d', session({ route: '/other/' }), 600);
    await store.save('e', session({ sub: 'user-2', sid: 'as-session-3' }), 600);
    assert.equal(await store.endMatching('/app/', { sid: 'as-session-1', sub: 'user-1' }), 2);
    assert.deepEqual([await store.get('a'), await store.get('b')], [undefined, undefined]);
    assert.ok(await store.get('c'), 'another AS session of the same person');
    assert.ok(await store.get('d'), 'another route');
    assert.equal(await store.endMatching('/app/', { sid: 'as-session-2', sub: 'someone-else' }), 0, 'sid and sub must both match');
    assert.equal(await store.endMatching('/app/', { sub: 'user-1' }), 1);
    assert.equal(await store.get('c'), undefined);
    assert.ok(await store.get('e'));
    assert.equal(await store.endMatching('/app/', {}), 0);
  });

  // Security review of issue 16: a request that read the session before a sign-out or back-channel
  // logout (in another isolate) must not bring it back with its touch or refresh.
  it('renew replaces a session still stored, and never one ended meanwhile (sign-out, back-channel logout)', async () => {
    const { namespace } = localNamespace();
    const store = new DurableWebSessions(namespace);
    await store.save('s1', session(), 600);
    const read = (await store.get('s1'))!;
    assert.equal(await store.renew('s1', { ...read, accessToken: 'renewed' }, 600), true);
    assert.equal((await store.get('s1'))!.accessToken, 'renewed');
    await store.delete('s1');
    assert.equal(await store.renew('s1', read, 600), false);
    assert.equal(await store.get('s1'), undefined, 'the sign-out holds');
    await store.save('s2', session(), 600);
    const before = (await store.get('s2'))!;
    assert.equal(await store.endMatching('/app/', { sub: 'user-1' }), 1);
    assert.equal(await store.renew('s2', before, 600), false);
    assert.equal(await store.get('s2'), undefined, 'the back-channel logout holds');
  });

  it('a back-channel logout between a sign-in\'s index and its put: the session is not stored', async () => {
    const { namespace } = localNamespace();
    // Holds the session record's put until the logout has run (another isolate's request, in between).
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let held!: () => void;
    const reached = new Promise<void>((resolve) => (held = resolve));
    const gated: DurableNamespace = {
      idFromName: (name) => namespace.idFromName(name),
      get: (id) => {
        const stub = namespace.get(id);
        return {
          fetch: async (input, init) => {
            if (typeof init?.body === 'string' && (JSON.parse(init.body) as { op: string }).op === 'web-put') {
              held();
              await gate;
            }
            return stub.fetch(input, init);
          },
        };
      },
    };
    const signingIn = new DurableWebSessions(gated);
    const other = new DurableWebSessions(namespace);
    const saving = signingIn.save('s3', session({ sid: 'as-session-9' }), 600);
    await reached;
    await other.endMatching('/app/', { sid: 'as-session-9' });
    release();
    await saving;
    assert.equal(await other.get('s3'), undefined, 'the logout that came first holds');
    // Another session of the same AS session, signed in later, with no logout meanwhile: stored.
    await other.save('s4', session({ sid: 'as-session-9' }), 600);
    assert.ok(await other.get('s4'));
  });

  it('a pending sign-in is taken once; a logout token jti is first used once; both expire', async () => {
    const { namespace } = localNamespace();
    const store = new DurableWebSessions(namespace);
    const pending = { route: '/app/', codeVerifier: 'verifier-secret', nonce: 'n', returnTo: '/app/x', createdAt: 1 };
    await store.putPending('state-1', pending, 600);
    assert.deepEqual(await store.takePending('state-1'), pending);
    assert.equal(await store.takePending('state-1'), undefined, 'single use');
    assert.equal(await store.firstUse('jti-1', 600), true);
    assert.equal(await store.firstUse('jti-1', 600), false);
    assert.equal(await store.firstUse('jti-2', 600), true);

    await store.putPending('state-2', pending, 0.05);
    await store.save('short', session(), 0.05);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(await store.takePending('state-2'), undefined, 'expired');
    assert.equal(await store.get('short'), undefined, 'expired');
  });

  it('the alarm deletes a lapsed record, and keeps a live one', async () => {
    const { namespace, objects } = localNamespace();
    const store = new DurableWebSessions(namespace);
    await store.save('gone', session(), 0.05);
    await store.save('kept', session({ sid: 'other' }), 600);
    await new Promise((r) => setTimeout(r, 80));
    for (const entry of objects.values()) await entry.object.alarm();
    const left = [...objects.entries()].filter(([, entry]) => entry.memory.data.size > 0).map(([name]) => name.split(':')[1]);
    assert.deepEqual(left.sort(), ['session', 'sid', 'sid', 'sub'], 'one session, its indexes (the lapsed one\'s sid index outlives it until its absolute end)');
    assert.ok(await store.get('kept'));
  });

  it('an object that fails or cannot be reached: WebSessionStoreUnavailable, never an answer', async () => {
    const store = new DurableWebSessions(failingNamespace('throws'));
    await assert.rejects(store.get('x'), { name: 'WebSessionStoreUnavailable', message: 'web session store unavailable: the Durable Object answered 500' });
    await assert.rejects(store.firstUse('x', 60), { name: 'WebSessionStoreUnavailable' });
    await assert.rejects(store.takePending('x'), { name: 'WebSessionStoreUnavailable' });
  });
});

describe('the Worker with a web route', () => {
  let as: TestAuthServer;
  let identityKey: string;
  const logged: string[] = [];
  const errors: string[] = [];
  const cookieKey = 'edge-web-state-test-cookie-key-0123456789abcdef';

  before(async () => {
    as = await startTestAuthServer();
    identityKey = JSON.stringify(await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey));
    mock.method(console, 'log', (line: string) => void logged.push(line));
    mock.method(console, 'error', (line: string) => void errors.push(String(line)));
    mock.method(console, 'warn', () => undefined);
  });
  afterEach(() => {
    logged.length = 0;
    errors.length = 0;
  });
  after(async () => {
    mock.restoreAll();
    await as?.close();
  });

  const config = (name: string) => ({
    routes: [{ kind: 'web', path: '/app/', upstream: 'http://127.0.0.1:9/', public_url: 'http://127.0.0.1:8788', oidc: { issuer: as.issuer, client_id: name } }],
  });
  const call = (env: Record<string, unknown>, path = '/app/') => worker.fetch(new Request(`http://127.0.0.1:8788${path}`, { headers: { accept: 'text/html' } }), env, { waitUntil: () => undefined });

  for (const [missing, reason] of [
    ['MANDATE_WEB_COOKIE_KEY', /MANDATE_WEB_COOKIE_KEY is not set/],
    ['MANDATE_WEB_IDENTITY_KEY', /MANDATE_WEB_IDENTITY_KEY is not set/],
  ] as const) {
    it(`without ${missing}: the routes do not build (500, generic), the reason logged`, async () => {
      const env: Record<string, unknown> = { MANDATE_GATEWAY_CONFIG: JSON.stringify(config(`missing-${missing}`)), MANDATE_WEB_COOKIE_KEY: cookieKey, MANDATE_WEB_IDENTITY_KEY: identityKey };
      delete env[missing];
      const response = await call(env);
      assert.equal(response.status, 500);
      const body = await response.text();
      assert.match(body, /gateway not configured/);
      assert.ok(!body.includes(missing), 'the reason is not on the wire');
      assert.equal(errors.length, 1);
      assert.equal(JSON.parse(errors[0]!).msg, 'cannot build the gateway routes');
      assert.match(JSON.parse(errors[0]!).reason, reason);
    });
  }

  it('a malformed key is refused the same way: a public JWK, a short cookie key', async () => {
    const { d: _d, ...publicOnly } = JSON.parse(identityKey) as Record<string, string>;
    for (const [env, reason] of [
      [{ MANDATE_WEB_COOKIE_KEY: cookieKey, MANDATE_WEB_IDENTITY_KEY: JSON.stringify(publicOnly) }, /MANDATE_WEB_IDENTITY_KEY is not a private EC P-256 JWK/],
      [{ MANDATE_WEB_COOKIE_KEY: 'short', MANDATE_WEB_IDENTITY_KEY: identityKey }, /MANDATE_WEB_COOKIE_KEY: the session secret must be at least 32 bytes/],
    ] as const) {
      errors.length = 0;
      const response = await call({ MANDATE_GATEWAY_CONFIG: JSON.stringify(config(`malformed-${String(reason)}`)), ...env });
      assert.equal(response.status, 500);
      assert.match(JSON.parse(errors[0]!).reason, reason);
    }
  });

  it('a key of the right shape that WebCrypto refuses (a point off the curve): the requests that need it fail with 500, the reason logged', async () => {
    const offCurve = { ...(JSON.parse(identityKey) as Record<string, string>), x: 'A'.repeat(43) };
    const env = { MANDATE_GATEWAY_CONFIG: JSON.stringify(config('off-curve')), MANDATE_WEB_COOKIE_KEY: cookieKey, MANDATE_WEB_IDENTITY_KEY: JSON.stringify(offCurve) };
    const response = await call(env, '/.well-known/mandate-gateway-jwks.json');
    assert.equal(response.status, 500);
    assert.equal(await response.text(), 'internal error');
    assert.match(errors.join('\n'), /MANDATE_WEB_IDENTITY_KEY cannot be used/);
  });

  it('GATEWAY_STATE unreachable: 503, nothing assumed, the reason in the audit event; the gateway JWKS is the configured key', async () => {
    const unreachable = failingNamespace('unreachable');
    const env = { MANDATE_GATEWAY_CONFIG: JSON.stringify(config('unreachable')), MANDATE_WEB_COOKIE_KEY: cookieKey, MANDATE_WEB_IDENTITY_KEY: identityKey, GATEWAY_STATE: unreachable };
    // A well-sealed session cookie (the route's key and context): its session cannot be looked up.
    const sealer = new CookieSealer(secretBytes(cookieKey), `/app/\n${as.issuer}\nunreachable`);
    const cookie = `mandate_web=${await sealer.seal('some-session-id', 'session')}`;
    const response = await worker.fetch(new Request('http://127.0.0.1:8788/app/', { headers: { accept: 'text/html', cookie } }), env, { waitUntil: () => undefined });
    assert.equal(response.status, 503);
    assert.equal(response.headers.get('retry-after'), '1');
    assert.match(await response.text(), /<h1>Temporarily unavailable<\/h1>/);
    assert.equal(response.headers.get('set-cookie'), null, 'no sign-in started, no cookie changed');
    const events = logged.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(events.length, 1, 'one audit event');
    const event = events[0]!;
    assert.equal(event.path, '/app/');
    assert.equal(event.status, 503);
    assert.equal(event.decision, 'error');
    assert.equal(event.rejection, 'session_store_unavailable');
    assert.equal(event.reason, 'web session store unavailable: Durable Object reset because its code was updated');

    const jwks = (await (await call(env, '/.well-known/mandate-gateway-jwks.json')).json()) as { keys: Record<string, string>[] };
    const configured = JSON.parse(identityKey) as Record<string, string>;
    assert.deepEqual(jwks.keys.map((key) => [key.x, key.y, key.d]), [[configured.x, configured.y, undefined]]);
  });
});

describe('the Worker with a web route and no GATEWAY_STATE: sessions in the isolate\'s memory', () => {
  const origin = 'http://127.0.0.1:8789';
  let as: TestAuthServer;
  let app: Server;
  const seen: IncomingHttpHeaders[] = [];
  let env: Record<string, unknown>;

  before(async () => {
    process.env.WEB_STATE_CLIENT_SECRET = 'web-state-test-client-secret-0123456789abcdef';
    as = await startTestAuthServer({
      clients: [{ client_id: 'web-memory', client_name: 'Web app', client_secret_env: 'WEB_STATE_CLIENT_SECRET', redirect_uris: [`${origin}/app/callback`], first_party: true } as never],
    });
    app = createServer((request, response) => {
      seen.push(request.headers);
      response.end('app page');
    });
    await new Promise<void>((ready) => app.listen(0, '127.0.0.1', ready));
    const upstream = `http://127.0.0.1:${(app.address() as AddressInfo).port}/`;
    env = {
      MANDATE_GATEWAY_CONFIG: JSON.stringify({ routes: [{ kind: 'web', path: '/app/', upstream, public_url: origin, oidc: { issuer: as.issuer, client_id: 'web-memory', client_secret_env: 'WEB_STATE_CLIENT_SECRET' } }] }),
      WEB_STATE_CLIENT_SECRET: process.env.WEB_STATE_CLIENT_SECRET,
      MANDATE_WEB_COOKIE_KEY: 'edge-web-memory-test-cookie-key-0123456789abcdef',
      MANDATE_WEB_IDENTITY_KEY: JSON.stringify(await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey)),
    };
    mock.method(console, 'log', () => undefined);
  });
  after(async () => {
    mock.restoreAll();
    await new Promise<void>((r) => (app ? app.close(() => r()) : r()));
    await as?.close();
  });

  it('signs in, serves the app with an assertion, signs out', async () => {
    const cookies = new Map<string, string>();
    const get = async (url: string) => {
      const response = await worker.fetch(new Request(url, { headers: { accept: 'text/html', cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') } }), env, { waitUntil: () => undefined });
      for (const line of response.headers.getSetCookie()) {
        const pair = line.slice(0, line.indexOf(';'));
        if (/max-age=0/i.test(line)) cookies.delete(pair.slice(0, pair.indexOf('=')));
        else cookies.set(pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1));
      }
      return response;
    };
    const first = await get(`${origin}/app/`);
    assert.equal(first.status, 302);
    const callback = await new FormBrowser(as.issuer).authorize(first.headers.get('location')!);
    assert.equal(`${callback.origin}${callback.pathname}`, `${origin}/app/callback`);
    const back = await get(callback.href);
    assert.equal(back.status, 302);
    assert.equal(back.headers.get('location'), '/app/');
    const page = await get(`${origin}/app/`);
    assert.equal(page.status, 200);
    assert.equal(await page.text(), 'app page');
    assert.equal(decodeProtectedHeader(String(seen.at(-1)!['x-mandate-identity'])).typ, 'mandate-id+jwt');
    assert.equal(seen.at(-1)!.authorization, undefined);
    const session = cookies.get('mandate_web')!;
    assert.equal((await get(`${origin}/app/logout`)).status, 302);
    cookies.set('mandate_web', session);
    assert.equal((await get(`${origin}/app/`)).status, 302, 'signed out: the old cookie opens nothing');
  });
});

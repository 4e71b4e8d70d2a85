import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, pkcePair, postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/**
 * Attacks and mistakes that must be refused, each with the exact standard error code.
 * References: OAuth 2.1 (draft) §4.1, RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 7636, RFC 8707, RFC 9207.
 */
describe('refused requests', () => {
  let as: TestAuthServer;
  let publicClient: { client_id: string };
  let confidential: { client_id: string; client_secret?: string };
  const REDIRECT = 'http://127.0.0.1:4000/callback';

  before(async () => {
    // This suite's clients register themselves: the deployment's scope allowlist (the default grants none).
    as = await startTestAuthServer({ tokens: { refresh_reuse_grace: 0 }, registration: { allowed_scopes: ['mcp:read', 'mcp:write', 'api:read'], client_credentials: true } });
    publicClient = await registerClient(as.issuer, { redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'] });
    confidential = await registerClient(as.issuer, { redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token', 'client_credentials'] });
  });
  after(async () => as.close());

  const authorizeUrl = (params: Record<string, string | undefined>) => {
    const { challenge } = pkcePair();
    const base: Record<string, string> = {
      response_type: 'code',
      client_id: publicClient.client_id,
      redirect_uri: REDIRECT,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state: 'xyz',
      resource: as.resource,
      scope: 'mcp:read',
    };
    for (const [k, v] of Object.entries(params)) {
      if (v === undefined) delete base[k];
      else base[k] = v;
    }
    return `${as.issuer}/authorize?${new URLSearchParams(base)}`;
  };

  /** An error shown to the user (never redirected), asked for as JSON. */
  async function directError(url: string) {
    const res = await fetch(url, { redirect: 'manual', headers: { accept: 'application/json' } });
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('location'), null, 'must not redirect to an untrusted redirect URI');
    return ((await res.json()) as { error: string }).error;
  }

  /** An error redirected to the client: carries error, state and iss (RFC 9207). */
  async function redirectedError(url: string) {
    const res = await fetch(url, { redirect: 'manual' });
    assert.equal(res.status, 303);
    const location = new URL(res.headers.get('location')!);
    assert.equal(location.origin + location.pathname, REDIRECT);
    assert.equal(location.searchParams.get('state'), 'xyz');
    assert.equal(location.searchParams.get('iss'), as.issuer);
    return location.searchParams.get('error');
  }

  async function signIn(client: { client_id: string }, extra: Record<string, string> = {}) {
    const { verifier, challenge } = pkcePair();
    const back = await new FormBrowser(as.issuer).authorize(authorizeUrl({ client_id: client.client_id, code_challenge: challenge, ...extra }));
    return { code: back.searchParams.get('code')!, verifier };
  }

  const token = (form: Record<string, string>, headers: Record<string, string> = {}) => postForm(`${as.issuer}/token`, form, headers);
  const confidentialAuth = () => ({ authorization: basic(confidential.client_id, confidential.client_secret!) });

  describe('authorization endpoint, before the redirect URI is trusted', () => {
    it('missing client_id → invalid_request', async () => assert.equal(await directError(authorizeUrl({ client_id: undefined })), 'invalid_request'));
    it('unknown client → invalid_client', async () => assert.equal(await directError(authorizeUrl({ client_id: 'nobody' })), 'invalid_client'));
    it('redirect URI not registered → invalid_request, not redirected', async () =>
      assert.equal(await directError(authorizeUrl({ redirect_uri: 'https://attacker.example/cb' })), 'invalid_request'));
    it('loopback redirect with another path → invalid_request', async () =>
      assert.equal(await directError(authorizeUrl({ redirect_uri: 'http://127.0.0.1:4000/other' })), 'invalid_request'));
    it('loopback redirect on another port is accepted (RFC 8252 §7.3)', async () => {
      const res = await fetch(authorizeUrl({ redirect_uri: 'http://127.0.0.1:5999/callback' }), { redirect: 'manual' });
      assert.equal(res.status, 303);
      assert.match(res.headers.get('location')!, /^\/interaction\//);
    });
  });

  describe('authorization endpoint, errors sent back to the client', () => {
    it('missing PKCE → invalid_request', async () => assert.equal(await redirectedError(authorizeUrl({ code_challenge: undefined })), 'invalid_request'));
    it('plain PKCE → invalid_request', async () => assert.equal(await redirectedError(authorizeUrl({ code_challenge_method: 'plain' })), 'invalid_request'));
    it('response_type=token → unsupported_response_type', async () =>
      assert.equal(await redirectedError(authorizeUrl({ response_type: 'token' })), 'unsupported_response_type'));
    it('unknown resource → invalid_target', async () =>
      assert.equal(await redirectedError(authorizeUrl({ resource: 'https://unknown.example/api' })), 'invalid_target'));
    it('scope not offered by the resource → invalid_scope', async () =>
      assert.equal(await redirectedError(authorizeUrl({ scope: 'api:read' })), 'invalid_scope'));
    it('prompt=none without a session → login_required, with no page shown', async () => {
      const browser = new FormBrowser(as.issuer);
      const result = await browser.open(authorizeUrl({ prompt: 'none' }));
      assert.equal(browser.pages.length, 0);
      const back = new URL(result.external!);
      assert.equal(back.searchParams.get('error'), 'login_required');
      assert.equal(back.searchParams.get('iss'), as.issuer);
    });
    it('two resources in one request → invalid_target', async () => {
      const url = `${authorizeUrl({})}&resource=${encodeURIComponent('https://api.example.test')}`;
      assert.equal(await redirectedError(url), 'invalid_target');
    });
  });

  describe('token endpoint', () => {
    it('wrong code_verifier → invalid_grant', async () => {
      const { code } = await signIn(publicClient);
      const res = await token({ grant_type: 'authorization_code', code, code_verifier: pkcePair().verifier, redirect_uri: REDIRECT, client_id: publicClient.client_id });
      assert.equal(res.json.error, 'invalid_grant');
    });

    it('missing code_verifier → invalid_request', async () => {
      const { code } = await signIn(publicClient);
      const res = await token({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: publicClient.client_id });
      assert.equal(res.json.error, 'invalid_request');
    });

    it('code reuse → invalid_grant, and the tokens of the first use are revoked', async () => {
      const { code, verifier } = await signIn(confidential);
      const form = { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT };
      const first = await token(form, confidentialAuth());
      assert.equal(first.status, 200);
      const second = await token(form, confidentialAuth());
      assert.equal(second.json.error, 'invalid_grant');
      const introspected = await postForm(`${as.issuer}/introspect`, { token: first.json.access_token as string }, confidentialAuth());
      assert.equal(introspected.json.active, false);
      const refresh = await token({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token as string }, confidentialAuth());
      assert.equal(refresh.json.error, 'invalid_grant');
    });

    it('expired code → invalid_grant', async () => {
      const { code, verifier } = await signIn(publicClient);
      await as.store.db.updateTable('authorization_codes').set({ expires_at: 1 }).execute();
      const res = await token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT, client_id: publicClient.client_id });
      assert.equal(res.json.error, 'invalid_grant');
      assert.equal(res.json.error_description, 'the authorization code has expired');
    });

    it('redirect_uri differing from the authorization request → invalid_grant', async () => {
      const { code, verifier } = await signIn(publicClient);
      const res = await token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: 'http://127.0.0.1:4001/callback', client_id: publicClient.client_id });
      assert.equal(res.json.error, 'invalid_grant');
    });

    it('a code redeemed by another client → invalid_grant', async () => {
      const { code, verifier } = await signIn(publicClient);
      const res = await token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT }, confidentialAuth());
      assert.equal(res.json.error, 'invalid_grant');
    });

    it('unknown code → invalid_grant', async () => {
      const res = await token({ grant_type: 'authorization_code', code: 'made-up', code_verifier: pkcePair().verifier, client_id: publicClient.client_id });
      assert.equal(res.json.error, 'invalid_grant');
    });

    it('wrong client secret → invalid_client with a Basic challenge', async () => {
      const res = await token({ grant_type: 'client_credentials', resource: as.resource }, { authorization: basic(confidential.client_id, 'not-the-secret') });
      assert.equal(res.status, 401);
      assert.equal(res.json.error, 'invalid_client');
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic/);
    });

    it('secret sent with another method than registered → invalid_client', async () => {
      const res = await token({ grant_type: 'client_credentials', client_id: confidential.client_id, client_secret: confidential.client_secret! });
      assert.equal(res.json.error, 'invalid_client');
    });

    it('two authentication methods at once → invalid_request', async () => {
      const res = await token({ grant_type: 'client_credentials', client_id: confidential.client_id, client_secret: confidential.client_secret! }, confidentialAuth());
      assert.equal(res.json.error, 'invalid_request');
    });

    it('unsupported grant type → unsupported_grant_type', async () => {
      const res = await token({ grant_type: 'password', username: 'demo', password: 'demo' }, confidentialAuth());
      assert.equal(res.json.error, 'unsupported_grant_type');
    });

    it('a public client asking for client_credentials → unauthorized_client', async () => {
      const res = await token({ grant_type: 'client_credentials', client_id: publicClient.client_id });
      assert.equal(res.json.error, 'unauthorized_client');
    });

    it('client_credentials for an unknown resource → invalid_target', async () => {
      const res = await token({ grant_type: 'client_credentials', resource: 'https://nowhere.example' }, confidentialAuth());
      assert.equal(res.json.error, 'invalid_target');
    });

    it('refresh token reuse → invalid_grant, and the grant is revoked', async () => {
      const { code, verifier } = await signIn(publicClient);
      const first = await token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT, client_id: publicClient.client_id });
      const rotated = await token({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token as string, client_id: publicClient.client_id });
      assert.equal(rotated.status, 200);
      await new Promise((r) => setTimeout(r, 1100)); // past the grace window of 0 s
      const replay = await token({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token as string, client_id: publicClient.client_id });
      assert.equal(replay.json.error, 'invalid_grant');
      const successor = await token({ grant_type: 'refresh_token', refresh_token: rotated.json.refresh_token as string, client_id: publicClient.client_id });
      assert.equal(successor.json.error, 'invalid_grant', 'the whole grant is revoked');
    });

    it('refresh asking for more scope → invalid_scope', async () => {
      const { code, verifier } = await signIn(publicClient);
      const first = await token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT, client_id: publicClient.client_id });
      const res = await token({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token as string, client_id: publicClient.client_id, scope: 'mcp:read mcp:write' });
      assert.equal(res.json.error, 'invalid_scope');
    });

    it("another client's refresh token → invalid_grant", async () => {
      const { code, verifier } = await signIn(publicClient);
      const first = await token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT, client_id: publicClient.client_id });
      const res = await token({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token as string }, confidentialAuth());
      assert.equal(res.json.error, 'invalid_grant');
    });

    it('a JSON body → invalid_request', async () => {
      const res = await fetch(`${as.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/json', ...confidentialAuth() }, body: '{"grant_type":"client_credentials"}' });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_request');
    });

    it('a body over 64 KiB → 413 invalid_request, declared or chunked', async () => {
      const big = `grant_type=client_credentials&pad=${'a'.repeat(70_000)}`;
      const declared = await postForm(`${as.issuer}/token`, Object.fromEntries(new URLSearchParams(big)), confidentialAuth());
      assert.equal(declared.status, 413);
      assert.equal(declared.json.error, 'invalid_request');
      const chunked = await fetch(`${as.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...confidentialAuth() },
        body: new ReadableStream({
          start(controller) {
            controller.enqueue(new TextEncoder().encode(big));
            controller.close();
          },
        }),
        duplex: 'half',
      } as RequestInit);
      assert.equal(chunked.status, 413);
    });

    it('a client deleted through RFC 7592 cannot get tokens any more, at once', async () => {
      const doomed = await registerClient(as.issuer, { grant_types: ['client_credentials'] });
      const auth = { authorization: basic(doomed.client_id, doomed.client_secret!) };
      assert.equal((await token({ grant_type: 'client_credentials', resource: as.resource }, auth)).status, 200);
      const del = await fetch(doomed.registration_client_uri as string, { method: 'DELETE', headers: { authorization: `Bearer ${doomed.registration_access_token}` } });
      assert.equal(del.status, 204);
      const after = await token({ grant_type: 'client_credentials', resource: as.resource }, auth);
      assert.equal(after.json.error, 'invalid_client');
    });

    it('a repeated parameter → invalid_request', async () => {
      const res = await fetch(`${as.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...confidentialAuth() },
        body: 'grant_type=client_credentials&scope=a&scope=b',
      });
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_request');
    });
  });

  describe('registration', () => {
    const refused = async (metadata: Record<string, unknown>) => {
      const res = await fetch(`${as.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(metadata) });
      assert.equal(res.status, 400);
      return ((await res.json()) as { error: string }).error;
    };
    it('javascript: redirect URI → invalid_redirect_uri', async () => assert.equal(await refused({ redirect_uris: ['javascript:alert(1)'] }), 'invalid_redirect_uri'));
    it('http redirect URI that is not loopback → invalid_redirect_uri', async () =>
      assert.equal(await refused({ redirect_uris: ['http://app.example/cb'] }), 'invalid_redirect_uri'));
    it('redirect URI with a fragment → invalid_redirect_uri', async () =>
      assert.equal(await refused({ redirect_uris: ['https://app.example/cb#frag'] }), 'invalid_redirect_uri'));
    it('data: redirect URI → invalid_redirect_uri', async () => assert.equal(await refused({ redirect_uris: ['data:text/html,hi'] }), 'invalid_redirect_uri'));
    it('private_key_jwt without keys → invalid_client_metadata', async () =>
      assert.equal(await refused({ redirect_uris: ['https://app.example/cb'], token_endpoint_auth_method: 'private_key_jwt' }), 'invalid_client_metadata'));
    it('the implicit grant → invalid_client_metadata', async () =>
      assert.equal(await refused({ redirect_uris: ['https://app.example/cb'], grant_types: ['implicit'] }), 'invalid_client_metadata'));
    it('a public client with client_credentials → invalid_client_metadata', async () =>
      assert.equal(await refused({ grant_types: ['client_credentials'], token_endpoint_auth_method: 'none' }), 'invalid_client_metadata'));
    it('client_credentials through /register when the policy does not allow it → invalid_client_metadata', async () => {
      const closed = await startTestAuthServer({ registration: { client_credentials: false } });
      try {
        const res = await fetch(`${closed.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ grant_types: ['client_credentials'] }) });
        assert.equal(((await res.json()) as { error: string }).error, 'invalid_client_metadata');
      } finally {
        await closed.close();
      }
    });
    it('not JSON → invalid_client_metadata', async () => {
      const res = await fetch(`${as.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'nope' });
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_client_metadata');
    });
  });

  describe('introspection and userinfo', () => {
    it('a public client may not introspect → invalid_client', async () => {
      const res = await postForm(`${as.issuer}/introspect`, { token: 'x', client_id: publicClient.client_id });
      assert.equal(res.status, 401);
      assert.equal(res.json.error, 'invalid_client');
    });
    it('userinfo with a token for another resource → insufficient_scope', async () => {
      const { code, verifier } = await signIn(publicClient);
      const t = await token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT, client_id: publicClient.client_id });
      const res = await fetch(`${as.issuer}/userinfo`, { headers: { authorization: `Bearer ${t.json.access_token}` } });
      assert.equal(res.status, 403);
      assert.equal(((await res.json()) as { error: string }).error, 'insufficient_scope');
    });
    it('userinfo with a forged token → invalid_token', async () => {
      const res = await fetch(`${as.issuer}/userinfo`, { headers: { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' } });
      assert.equal(res.status, 401);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_token');
    });
  });

  describe('interaction pages', () => {
    it('a form post without the CSRF token is refused', async () => {
      const browser = new FormBrowser(as.issuer);
      const page = await browser.open(authorizeUrl({}));
      const action = /action="([^"]+)"/.exec(page.html)![1]!;
      const res = await browser.open(new URL(action, as.issuer).href, { method: 'POST', form: { username: 'demo', password: 'demo', csrf: 'forged' } });
      assert.equal(res.status, 403);
    });
    it('an interaction cannot be continued from another browser', async () => {
      const page = await new FormBrowser(as.issuer).open(authorizeUrl({}));
      const other = await new FormBrowser(as.issuer).open(page.url);
      assert.equal(other.status, 400);
      assert.match(other.html, /expired or belongs to another browser/);
    });
    it('a wrong password shows the login page again', async () => {
      const browser = new FormBrowser(as.issuer);
      const page = await browser.open(authorizeUrl({}));
      const retry = await browser.submit(page, { username: 'demo', password: 'wrong' });
      assert.equal(retry.status, 401);
      assert.match(retry.html, /Wrong username or password/);
    });
    it('password guessing is throttled per account, before any password check', async () => {
      const browser = new FormBrowser(as.issuer);
      let page = await browser.open(authorizeUrl({}));
      for (let i = 0; i < 10; i++) page = await browser.submit(page, { username: 'guessme', password: `wrong-${i}` });
      assert.match(page.html, /Wrong username or password/);
      page = await browser.submit(page, { username: 'guessme', password: 'wrong-again' });
      assert.match(page.html, /Too many sign-in attempts/);
      await as.ctx.audit.flush();
      assert.ok((await as.store.audit.list({ type: 'login.throttled' })).length >= 1);
    });
    it('Deny → access_denied back to the client', async () => {
      const back = await new FormBrowser(as.issuer).authorize(authorizeUrl({ scope: 'mcp:write' }), { decision: 'deny' });
      assert.equal(back.searchParams.get('error'), 'access_denied');
      assert.equal(back.searchParams.get('iss'), as.issuer);
    });
  });
});

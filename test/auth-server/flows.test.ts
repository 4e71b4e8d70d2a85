import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, decodeJwt, pkcePair, postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

describe('authorization server flows', () => {
  let as: TestAuthServer;
  before(async () => {
    // This suite's clients register themselves: the deployment's scope allowlist (the default grants none).
    as = await startTestAuthServer({ registration: { allowed_scopes: ['mcp:read', 'mcp:write', 'api:read'], client_credentials: true } });
  });
  after(async () => as.close());

  async function codeFlow(client: { client_id: string }, options: { scope?: string; resource?: string; redirect?: string; browser?: FormBrowser } = {}) {
    const { verifier, challenge } = pkcePair();
    const redirect = options.redirect ?? 'http://127.0.0.1:4000/callback';
    const url = new URL(`${as.issuer}/authorize`);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: client.client_id,
      redirect_uri: redirect,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state: 'st-1',
      scope: options.scope ?? 'mcp:read',
      ...(options.resource !== '' ? { resource: options.resource ?? as.resource } : {}),
    }).toString();
    const browser = options.browser ?? new FormBrowser(as.issuer);
    const back = await browser.authorize(url.href);
    return { back, verifier, redirect, browser };
  }

  it('runs authorization code + PKCE for a public client, with iss and state on the redirect', async () => {
    const client = await registerClient(as.issuer, {
      client_name: 'Public test app',
      redirect_uris: ['http://127.0.0.1:4000/callback'],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
    });
    const { back, verifier, redirect, browser } = await codeFlow(client);
    assert.equal(back.searchParams.get('iss'), as.issuer);
    assert.equal(back.searchParams.get('state'), 'st-1');
    const consent = browser.pages.find((p) => p.html.includes('name="decision"'))!;
    assert.match(consent.html, /Public test app/);
    assert.match(consent.html, /Test MCP server/);
    assert.match(consent.html, /mcp:read/);
    assert.equal(browser.pages.length, 2, 'a login page and a consent page');

    const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: redirect, client_id: client.client_id });
    assert.equal(token.status, 200, token.text);
    assert.equal(token.headers.get('cache-control'), 'no-store');
    const header = JSON.parse(Buffer.from(String(token.json.access_token).split('.')[0]!, 'base64url').toString());
    assert.equal(header.typ, 'at+jwt');
    assert.equal(header.alg, 'ES256');
    const claims = decodeJwt(token.json.access_token as string);
    assert.equal(claims.aud, as.resource);
    assert.equal(claims.iss, as.issuer);
    assert.equal(claims.client_id, client.client_id);
    assert.equal(claims.scope, 'mcp:read');
    assert.equal(typeof claims.auth_time, 'number');
    assert.ok(token.json.refresh_token, 'refresh token for a client registered with refresh_token');

    // Refresh rotates the refresh token.
    const refreshed = await postForm(`${as.issuer}/token`, { grant_type: 'refresh_token', refresh_token: token.json.refresh_token as string, client_id: client.client_id });
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.notEqual(refreshed.json.refresh_token, token.json.refresh_token);
    assert.equal(decodeJwt(refreshed.json.access_token as string).sub, claims.sub);

    // Consent is remembered for the same user, client, resource and scopes: no consent page now.
    const second = await codeFlow(client, { browser });
    assert.ok(second.back.searchParams.get('code'));
    assert.equal(browser.pages.length, 2, 'signed in and consented already: straight back to the client');
  });

  it('issues an ID token and serves userinfo for an openid request without a resource', async () => {
    const client = await registerClient(as.issuer, {
      redirect_uris: ['http://127.0.0.1:4000/callback'],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
    });
    const { back, verifier, redirect } = await codeFlow(client, { scope: 'openid profile email', resource: '' });
    const token = await postForm(
      `${as.issuer}/token`,
      { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: redirect },
      { authorization: basic(client.client_id, client.client_secret!) },
    );
    assert.equal(token.status, 200, token.text);
    assert.equal(token.json.refresh_token, undefined, 'no refresh_token grant registered');
    const idToken = decodeJwt(token.json.id_token as string);
    assert.equal(idToken.aud, client.client_id);
    assert.equal(idToken.preferred_username, 'demo');
    assert.equal(decodeJwt(token.json.access_token as string).aud, as.issuer);
    const userinfo = await fetch(`${as.issuer}/userinfo`, { headers: { authorization: `Bearer ${token.json.access_token}` } });
    assert.equal(userinfo.status, 200);
    const info = (await userinfo.json()) as Record<string, unknown>;
    assert.equal(info.sub, idToken.sub);
    assert.equal(info.email, 'demo@example.com');
  });

  it('client credentials, introspection, tokeninfo and revocation', async () => {
    const client = await registerClient(as.issuer, { grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_post', scope: 'api:read' });
    const token = await postForm(`${as.issuer}/token`, {
      grant_type: 'client_credentials',
      client_id: client.client_id,
      client_secret: client.client_secret!,
      resource: 'https://api.example.test',
    });
    assert.equal(token.status, 200, token.text);
    const claims = decodeJwt(token.json.access_token as string);
    assert.equal(claims.sub, client.client_id);
    assert.equal(claims.scope, 'api:read');
    assert.equal(claims.aud, 'https://api.example.test');

    const introspected = await postForm(`${as.issuer}/introspect`, { token: token.json.access_token as string, client_id: client.client_id, client_secret: client.client_secret! });
    assert.equal(introspected.json.active, true);
    assert.equal(introspected.json.client_id, client.client_id);

    const info = await fetch(`${as.issuer}/tokeninfo`, { headers: { authorization: `Bearer ${token.json.access_token}` } });
    assert.equal(info.status, 200);
    assert.equal(((await info.json()) as { aud: string }).aud, 'https://api.example.test');

    const revoked = await postForm(`${as.issuer}/revoke`, { token: token.json.access_token as string, client_id: client.client_id, client_secret: client.client_secret! });
    assert.equal(revoked.status, 200);
    const after = await postForm(`${as.issuer}/introspect`, { token: token.json.access_token as string, client_id: client.client_id, client_secret: client.client_secret! });
    assert.deepEqual(after.json, { active: false });
    const infoAfter = await fetch(`${as.issuer}/tokeninfo`, { headers: { authorization: `Bearer ${token.json.access_token}` } });
    assert.equal(infoAfter.status, 401);
  });

  it('revoking a refresh token revokes its grant and the access tokens of it', async () => {
    const client = await registerClient(as.issuer, {
      redirect_uris: ['http://127.0.0.1:4000/callback'],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
    });
    const auth = { authorization: basic(client.client_id, client.client_secret!) };
    const { back, verifier, redirect } = await codeFlow(client);
    const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: redirect }, auth);
    assert.equal((await postForm(`${as.issuer}/introspect`, { token: token.json.access_token as string }, auth)).json.active, true);
    const rt = await postForm(`${as.issuer}/introspect`, { token: token.json.refresh_token as string, token_type_hint: 'refresh_token' }, auth);
    assert.equal(rt.json.active, true);
    assert.equal(rt.json.token_type, 'refresh_token');
    assert.equal((await postForm(`${as.issuer}/revoke`, { token: token.json.refresh_token as string, token_type_hint: 'refresh_token' }, auth)).status, 200);
    assert.equal((await postForm(`${as.issuer}/introspect`, { token: token.json.access_token as string }, auth)).json.active, false);
    const refresh = await postForm(`${as.issuer}/token`, { grant_type: 'refresh_token', refresh_token: token.json.refresh_token as string }, auth);
    assert.equal(refresh.json.error, 'invalid_grant');
  });

  it('revoking an older, rotated refresh token of the client still ends the grant', async () => {
    const client = await registerClient(as.issuer, {
      client_name: 'rotated revoke',
      redirect_uris: ['http://127.0.0.1:4000/callback'],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
    });
    const { back, verifier, redirect } = await codeFlow(client);
    const first = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: redirect, client_id: client.client_id });
    const second = await postForm(`${as.issuer}/token`, { grant_type: 'refresh_token', refresh_token: first.json.refresh_token as string, client_id: client.client_id });
    assert.equal(second.status, 200);
    const other = await registerClient(as.issuer, { client_name: 'not mine', redirect_uris: ['http://127.0.0.1:4000/callback'], token_endpoint_auth_method: 'none' });
    await postForm(`${as.issuer}/revoke`, { token: first.json.refresh_token as string, client_id: other.client_id });
    const stillThere = await postForm(`${as.issuer}/token`, { grant_type: 'refresh_token', refresh_token: second.json.refresh_token as string, client_id: client.client_id });
    assert.equal(stillThere.status, 200, "another client's revocation is ignored");
    assert.equal((await postForm(`${as.issuer}/revoke`, { token: first.json.refresh_token as string, client_id: client.client_id })).status, 200);
    const after = await postForm(`${as.issuer}/token`, { grant_type: 'refresh_token', refresh_token: stillThere.json.refresh_token as string, client_id: client.client_id });
    assert.equal(after.json.error, 'invalid_grant');
  });

  it('manages a registration with the registration access token (RFC 7592)', async () => {
    const client = await registerClient(as.issuer, { client_name: 'v1', redirect_uris: ['https://app.example/cb'] });
    const uri = client.registration_client_uri as string;
    const auth = { authorization: `Bearer ${client.registration_access_token}` };
    const read = await fetch(uri, { headers: auth });
    assert.equal(read.status, 200);
    assert.equal(((await read.json()) as { client_name: string }).client_name, 'v1');
    const put = await fetch(uri, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: client.client_id, client_name: 'v2', redirect_uris: ['https://app.example/cb2'] }),
    });
    assert.equal(put.status, 200);
    assert.deepEqual(((await put.json()) as { redirect_uris: string[] }).redirect_uris, ['https://app.example/cb2']);
    const wrong = await fetch(uri, { headers: { authorization: 'Bearer wrong' } });
    assert.equal(wrong.status, 401);
    assert.equal((await fetch(uri, { method: 'DELETE', headers: auth })).status, 204);
    assert.equal((await fetch(uri, { headers: auth })).status, 401);
  });

  it('a public client gets no registration access token; deleting a client revokes its tokens', async () => {
    const pub = await registerClient(as.issuer, { client_name: 'public', redirect_uris: ['http://127.0.0.1:4000/callback'], token_endpoint_auth_method: 'none' });
    assert.equal(pub.registration_access_token, undefined);
    const svc = await registerClient(as.issuer, { grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_post' });
    const form = { client_id: svc.client_id, client_secret: svc.client_secret! };
    const token = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: as.resource, ...form });
    // Its credentials go with it, so the token's bearer asks /tokeninfo (introspection is for the token's own client or resource).
    const tokeninfo = () => fetch(`${as.issuer}/tokeninfo`, { headers: { authorization: `Bearer ${token.json.access_token as string}` } });
    assert.equal((await tokeninfo()).status, 200);
    await fetch(svc.registration_client_uri as string, { method: 'DELETE', headers: { authorization: `Bearer ${svc.registration_access_token}` } });
    assert.equal((await tokeninfo()).status, 401);
  });

  it('records audit events for issued tokens, refusals and failed client authentication', async () => {
    const client = await registerClient(as.issuer, { grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic' });
    await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: as.resource }, { authorization: basic(client.client_id, client.client_secret!) });
    await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials' }, { authorization: basic(client.client_id, 'wrong') });
    await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: 'https://unknown.example' }, { authorization: basic(client.client_id, client.client_secret!) });
    await as.ctx.audit.flush();
    const events = await as.store.audit.list({ clientId: client.client_id });
    const types = events.map((e) => `${e.type}:${e.error ?? ''}`);
    assert.ok(types.includes('token.issued:'), types.join());
    assert.ok(types.includes('client.auth_failed:invalid_client'), types.join());
    assert.ok(types.includes('token.refused:invalid_target'), types.join());
    const failed = events.find((e) => e.type === 'client.auth_failed')!;
    assert.equal(failed.reason, 'wrong client secret');
  });
});

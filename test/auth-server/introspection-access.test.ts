import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, pkcePair, postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/**
 * Issue 11 item 4: introspection (RFC 7662) and the revocation list answer only a caller with a
 * reason to see the token — its client, a resource server of its audience, or a client with
 * `introspection: allowed`; everyone else gets `{"active": false}` (§2.2) and an audit record.
 */
const SECRETS = { INTRO_RS_SECRET: 'resource-server-secret-0123456789abcdef', INTRO_AUDITOR_SECRET: 'auditor-secret-0123456789abcdef012345', INTRO_STRANGER_SECRET: 'stranger-secret-0123456789abcdef01234' };
const REDIRECT = 'http://127.0.0.1:4000/callback';

describe('who may introspect a token and read the revocation list', () => {
  let as: TestAuthServer;
  let issued: { client_id: string; client_secret?: string };
  let token: string;
  const auth = {
    rs: { authorization: basic('resource-server', SECRETS.INTRO_RS_SECRET) },
    auditor: { authorization: basic('auditor', SECRETS.INTRO_AUDITOR_SECRET) },
    stranger: { authorization: basic('stranger', SECRETS.INTRO_STRANGER_SECRET) },
  };
  const introspect = (form: Record<string, string>, headers: Record<string, string> = {}) => postForm(`${as.issuer}/introspect`, form, headers);
  const refusals = async () => {
    await as.ctx.audit.flush();
    return as.store.audit.list({ type: 'introspection.refused', limit: 50 });
  };

  before(async () => {
    Object.assign(process.env, SECRETS);
    as = await startTestAuthServer({
      clients: [
        { client_id: 'resource-server', client_secret_env: 'INTRO_RS_SECRET', grant_types: [] },
        { client_id: 'auditor', client_secret_env: 'INTRO_AUDITOR_SECRET', grant_types: [], introspection: 'allowed' },
        { client_id: 'stranger', client_secret_env: 'INTRO_STRANGER_SECRET', grant_types: ['client_credentials'] },
      ],
      resources: [
        { id: 'https://mcp.example.test/mcp', name: 'Test MCP server', scopes: [{ name: 'mcp:read' }], resource_servers: ['resource-server'] },
        { id: 'https://api.example.test', name: 'Test API', scopes: [{ name: 'api:read' }] },
      ],
      // This test's token comes from a client that registered itself for client credentials.
      registration: { client_credentials: true, allowed_scopes: ['mcp:read'] },
    });
    issued = await registerClient(as.issuer, { grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_post' });
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: as.resource, scope: 'mcp:read', client_id: issued.client_id, client_secret: issued.client_secret! });
    assert.equal(res.status, 200, res.text);
    token = res.json.access_token as string;
  });
  after(() => as.close());

  it('the client the token was issued to, the resource server of its audience and an explicitly allowed client see it', async () => {
    const own = await introspect({ token, client_id: issued.client_id, client_secret: issued.client_secret! });
    assert.equal(own.json.active, true);
    assert.equal(own.json.client_id, issued.client_id);
    assert.equal((await introspect({ token }, auth.rs)).json.active, true);
    assert.equal((await introspect({ token }, auth.auditor)).json.active, true);
  });

  it('another confidential client (configured, or one anybody can register) gets {"active": false}, and the refusal is audited', async () => {
    const stranger = await introspect({ token }, auth.stranger);
    assert.equal(stranger.status, 200);
    assert.deepEqual(stranger.json, { active: false });
    const anonymous = await registerClient(as.issuer, { grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_post' });
    const other = await introspect({ token, client_id: anonymous.client_id, client_secret: anonymous.client_secret! });
    assert.deepEqual(other.json, { active: false });
    const events = await refusals();
    const byStranger = events.find((event) => event.clientId === 'stranger')!;
    assert.equal(byStranger.outcome, 'failure');
    assert.equal(byStranger.error, 'inactive');
    assert.match(byStranger.reason!, /^not issued to stranger, nor for a resource it serves \(aud https:\/\/mcp\.example\.test\/mcp\)$/);
    assert.ok(events.some((event) => event.clientId === anonymous.client_id && /not issued to/.test(event.reason!)));
  });

  it('a resource server sees only tokens for its own resources', async () => {
    const api = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: 'https://api.example.test', scope: 'api:read' }, auth.stranger);
    assert.equal(api.status, 200, api.text);
    assert.deepEqual((await introspect({ token: api.json.access_token as string }, auth.rs)).json, { active: false });
    assert.ok((await refusals()).some((event) => event.clientId === 'resource-server' && /aud https:\/\/api\.example\.test/.test(event.reason!)));
  });

  it('a refresh token is shown to its own client only, even to a client allowed to introspect', async () => {
    const client = await registerClient(as.issuer, { redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'], token_endpoint_auth_method: 'client_secret_post' });
    const { verifier, challenge } = pkcePair();
    const back = await new FormBrowser(as.issuer).authorize(
      `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: client.client_id, redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: as.resource, scope: 'mcp:read', state: 's' })}`,
    );
    const tokens = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT, client_id: client.client_id, client_secret: client.client_secret! });
    const refresh = tokens.json.refresh_token as string;
    assert.ok(refresh, tokens.text);
    assert.equal((await introspect({ token: refresh, token_type_hint: 'refresh_token', client_id: client.client_id, client_secret: client.client_secret! })).json.active, true);
    for (const headers of [auth.auditor, auth.rs]) assert.deepEqual((await introspect({ token: refresh, token_type_hint: 'refresh_token' }, headers)).json, { active: false });
    assert.ok((await refusals()).some((event) => event.clientId === 'auditor' && event.reason === `refresh token of client ${client.client_id}`));
  });

  it('the revocation list: 403 access_denied for a client that serves no resource; incremental and ETag-cached for a resource server', async () => {
    const refused = await fetch(`${as.issuer}/revocations`, { headers: auth.stranger });
    assert.equal(refused.status, 403);
    assert.equal(((await refused.json()) as { error: string }).error, 'access_denied');
    await as.ctx.audit.flush();
    const event = (await as.store.audit.list({ type: 'revocations.refused', limit: 5 })).find((e) => e.clientId === 'stranger')!;
    assert.equal(event.error, 'access_denied');
    assert.equal(event.reason, 'stranger serves no resource and has no introspection permission');

    assert.equal((await postForm(`${as.issuer}/revoke`, { token, client_id: issued.client_id, client_secret: issued.client_secret! })).status, 200);
    const full = await fetch(`${as.issuer}/revocations`, { headers: auth.rs });
    assert.equal(full.status, 200);
    const body = (await full.json()) as { tokens: { jti: string }[]; next_since: number; grants: unknown[] };
    const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string;
    assert.ok(body.tokens.some((t) => t.jti === jti));
    assert.ok(Array.isArray(body.grants));
    const etag = full.headers.get('etag')!;
    assert.match(etag, /^"[A-Za-z0-9_-]+"$/);
    assert.equal((await fetch(`${as.issuer}/revocations`, { headers: { ...auth.rs, 'if-none-match': etag } })).status, 304, 'nothing changed: no body');
    const since = await fetch(`${as.issuer}/revocations?since=${body.next_since}`, { headers: auth.rs });
    assert.ok(((await since.json()) as { tokens: { jti: string }[] }).tokens.some((t) => t.jti === jti), 'answers overlap: a fresh revocation is in the next increment too');
    const later = await fetch(`${as.issuer}/revocations?since=${Math.floor(Date.now() / 1000) + 3600}`, { headers: auth.rs });
    assert.deepEqual(((await later.json()) as { tokens: unknown[] }).tokens, [], 'only what was revoked since');
    const posted = await postForm(`${as.issuer}/revocations`, { since: String(body.next_since) }, auth.rs);
    assert.equal(posted.status, 200, posted.text);
    assert.ok((posted.json.tokens as { jti: string }[]).some((t) => t.jti === jti), 'POST takes since as a form field');
    const bad = await fetch(`${as.issuer}/revocations?since=yesterday`, { headers: auth.rs });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: string }).error, 'invalid_request');
    assert.equal((await fetch(`${as.issuer}/revocations`, { headers: auth.auditor })).status, 200, 'introspection: allowed may read it too');
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT, generateKeyPair } from 'jose';
import { adminAccess } from '../helpers/admin.ts';
import { basic, decodeJwt, postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { ACCESS_TOKEN_TYPE, AGENT_REDIRECT, R, TOKEN_EXCHANGE, auth, exchange, startDelegationServer, userToken } from '../helpers/delegation-server.ts';

/**
 * Token exchange requests that must be refused. RFC 8693 §2.2.2: an invalid or unacceptable
 * subject or actor token is `invalid_request`; a refused target `invalid_target`; RFC 6749 §5.2
 * codes otherwise.
 */
describe('refused token exchanges', () => {
  let as: TestAuthServer & { adminToken: string };
  let mcpUserToken: string; // aud = MCP server, may_act = mcp-server, scope todo_api:read
  let agentUserToken: string; // aud = agent, may_act = sample-agent
  let agentActor: string;
  let publicClient: { client_id: string };

  before(async () => {
    // This suite's clients register themselves: the deployment's scope allowlist (the default grants none).
    as = await startDelegationServer({ registration: { allowed_scopes: ['todo_api:read', 'todo_api:write', 'banking:read'], client_credentials: true } });
    publicClient = await registerClient(as.issuer, { redirect_uris: ['http://127.0.0.1:6274/cb'], token_endpoint_auth_method: 'none', client_name: 'neg' });
    mcpUserToken = (await userToken(as, { clientId: publicClient.client_id, redirectUri: 'http://127.0.0.1:6274/cb', resource: R.mcp, scope: 'todo_api:read' })).token.access_token;
    agentUserToken = (await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent })).token
      .access_token;
    agentActor = (await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, auth.agent)).json.access_token as string;
  });
  after(async () => as.close());

  const refused = async (form: Record<string, string>, headers: Record<string, string>, code: string): Promise<void> => {
    const res = await exchange(as, form, headers);
    assert.equal(res.json.error, code, `${res.status} ${res.text}`);
    assert.ok(res.status === 400 || res.status === 401, `status ${res.status}`);
  };

  it('no may_act in the subject token → invalid_request', async () => {
    const client = await registerClient(as.issuer, { redirect_uris: ['http://127.0.0.1:6275/cb'], token_endpoint_auth_method: 'none', client_name: 'plain' });
    const plain = (await userToken(as, { clientId: client.client_id, redirectUri: 'http://127.0.0.1:6275/cb', resource: R.deep, scope: 'banking:read' })).token.access_token;
    assert.equal(decodeJwt(plain).may_act, undefined);
    await refused({ subject_token: plain, resource: R.api, scope: 'banking:read' }, auth.mcp, 'invalid_request');
  });
  it('may_act naming another client → invalid_request', () => refused({ subject_token: mcpUserToken, resource: R.api }, auth.other, 'invalid_request'));
  it("another party's token as actor token (actor laundering) → invalid_request", async () => {
    // mcp-server obtains a token whose sub is the agent (exchanging the agent's own token where may_act is not required)...
    const laundered = await exchange(as, { subject_token: agentActor, resource: R.identity }, auth.mcp);
    assert.equal(laundered.status, 200, laundered.text);
    // ...and must not be able to present it to act as the agent.
    await refused(
      { subject_token: agentUserToken, actor_token: laundered.json.access_token as string, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway },
      auth.mcp,
      'invalid_request',
    );
  });
  it('a may_act naming someone else is refused even where may_act is not required → invalid_request', () =>
    refused({ subject_token: mcpUserToken, resource: R.identity }, auth.other, 'invalid_request'));
  it('an actor token issued to another client → invalid_request', () =>
    refused({ subject_token: agentUserToken, actor_token: agentActor, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }, auth.mcp, 'invalid_request'));
  it('scope escalation beyond the subject token → invalid_scope', () =>
    refused({ subject_token: mcpUserToken, resource: R.api, scope: 'todo_api:read todo_api:write' }, auth.mcp, 'invalid_scope'));
  it('a scope the target resource does not offer → invalid_scope', () =>
    refused({ subject_token: agentUserToken, actor_token: agentActor, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway, scope: 'todo_api:read' }, auth.agent, 'invalid_scope'));
  it('no scope in common → invalid_scope', () =>
    refused({ subject_token: mcpUserToken, resource: R.deep }, auth.mcp, 'invalid_scope'));
  it('an unknown audience → invalid_target', () => refused({ subject_token: mcpUserToken, audience: 'https://nowhere.test' }, auth.mcp, 'invalid_target'));
  it('two targets → invalid_target', () => refused({ subject_token: mcpUserToken, resource: R.api, audience: R.deep }, auth.mcp, 'invalid_target'));
  it('no target → invalid_request', () => refused({ subject_token: mcpUserToken }, auth.mcp, 'invalid_request'));
  it('the authorization server itself as target → invalid_target', () => refused({ subject_token: mcpUserToken, resource: as.issuer }, auth.mcp, 'invalid_target'));
  it('an actor not allowed at the target resource → invalid_target', () =>
    refused({ subject_token: mcpUserToken, resource: R.gateway }, auth.mcp, 'invalid_target'));
  it('a public client cannot exchange → invalid_client or unauthorized_client', async () => {
    const res = await exchange(as, { subject_token: mcpUserToken, resource: R.api, client_id: publicClient.client_id }, {});
    assert.equal(res.json.error, 'unauthorized_client');
  });
  it('a client not registered for token exchange → unauthorized_client', async () => {
    const cc = await registerClient(as.issuer, { grant_types: ['client_credentials'] });
    await refused({ subject_token: mcpUserToken, resource: R.api }, { authorization: basic(cc.client_id, cc.client_secret!) }, 'unauthorized_client');
  });
  it('a revoked subject token → invalid_request', async () => {
    const { token } = await userToken(as, { clientId: publicClient.client_id, redirectUri: 'http://127.0.0.1:6274/cb', resource: R.mcp, scope: 'todo_api:read' });
    await postForm(`${as.issuer}/revoke`, { token: token.refresh_token ?? token.access_token, client_id: publicClient.client_id });
    await postForm(`${as.issuer}/revoke`, { token: token.access_token, client_id: publicClient.client_id });
    await refused({ subject_token: token.access_token, resource: R.api }, auth.mcp, 'invalid_request');
  });
  it('an expired subject token → invalid_request', async () => {
    const key = await as.ctx.keys.current();
    const expired = await new SignJWT({ ...decodeJwt(mcpUserToken), exp: Math.floor(Date.now() / 1000) - 60 })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: key.kid })
      .sign(key.privateKey);
    await refused({ subject_token: expired, resource: R.api }, auth.mcp, 'invalid_request');
  });
  it('a subject token of another issuer → invalid_request', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ ...decodeJwt(mcpUserToken), iss: 'https://evil.example' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'evil' })
      .sign(privateKey);
    await refused({ subject_token: forged, resource: R.api }, auth.mcp, 'invalid_request');
  });
  it('a subject token signed by a foreign key under our kid → invalid_request', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const key = await as.ctx.keys.current();
    const forged = await new SignJWT(decodeJwt(mcpUserToken)).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: key.kid }).sign(privateKey);
    await refused({ subject_token: forged, resource: R.api }, auth.mcp, 'invalid_request');
  });
  it('depth exceeded → invalid_request', async () => {
    const fresh = (await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent })).token.access_token;
    const actor = (await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, auth.agent)).json.access_token as string;
    const gateway = await exchange(as, { subject_token: fresh, actor_token: actor, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }, auth.agent);
    assert.equal(gateway.status, 200, gateway.text);
    // The gateway resource allows a chain of one; the MCP server exchanging back into it would make two.
    const api = await exchange(as, { subject_token: gateway.json.access_token as string, resource: R.api, scope: 'banking:read' }, auth.mcp);
    const res = await exchange(as, { subject_token: api.json.access_token as string, resource: R.deep }, auth.other);
    assert.equal(res.json.error, 'invalid_request');
  });
  it('an unsupported subject_token_type → invalid_request', () =>
    refused({ subject_token: mcpUserToken, subject_token_type: 'urn:ietf:params:oauth:token-type:saml2', resource: R.api }, auth.mcp, 'invalid_request'));
  it('a refresh token as subject_token_type → invalid_request', () =>
    refused({ subject_token: mcpUserToken, subject_token_type: 'urn:ietf:params:oauth:token-type:refresh_token', resource: R.api }, auth.mcp, 'invalid_request'));
  it('an unsupported requested_token_type → invalid_request', () =>
    refused({ subject_token: mcpUserToken, requested_token_type: 'urn:ietf:params:oauth:token-type:id_token', resource: R.api }, auth.mcp, 'invalid_request'));
  it('an unsupported actor_token_type → invalid_request', () =>
    refused({ subject_token: agentUserToken, actor_token: agentActor, actor_token_type: 'urn:ietf:params:oauth:token-type:saml1', resource: R.gateway }, auth.agent, 'invalid_request'));
  it('actor_token without actor_token_type → invalid_request', () =>
    refused({ subject_token: agentUserToken, actor_token: agentActor, resource: R.gateway }, auth.agent, 'invalid_request'));
  it('a claim mapping that would erase the delegation chain fails the request, never issuing the token', async () => {
    const res = await exchange(as, { subject_token: agentUserToken, resource: R.eraser }, auth.agent);
    assert.equal(res.status, 500);
    assert.equal(res.json.error, 'server_error');
    assert.equal(res.json.access_token, undefined);
  });
  it('missing subject_token → invalid_request', async () => {
    const res = await postForm(`${as.issuer}/token`, { grant_type: TOKEN_EXCHANGE, subject_token_type: ACCESS_TOKEN_TYPE, resource: R.api }, auth.mcp);
    assert.equal(res.json.error, 'invalid_request');
  });
  it('a garbage subject token → invalid_request', () => refused({ subject_token: 'not-a-token', resource: R.api }, auth.mcp, 'invalid_request'));
  it('a refused exchange is audited with subject, actor chain, resource, scopes and the reason', async () => {
    await exchange(as, { subject_token: mcpUserToken, resource: R.api }, auth.other);
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'token.exchange_refused', clientId: 'other-service' });
    assert.equal(event?.error, 'invalid_request');
    assert.match(event?.reason ?? '', /may_act\.sub=mcp-server, actor=other-service/);
    assert.equal(event?.data?.resource, R.api);
    assert.equal(event?.data?.decision, 'refused');
    assert.equal(event?.sub, decodeJwt(mcpUserToken).sub);
  });
  // Last: disabling the agent revokes the tokens the other tests use.
  it('a disabled agent → invalid_client, and its earlier user token is refused as subject', async () => {
    const admin = await adminAccess(as);
    assert.equal((await admin.api('PATCH', '/agents/sample-agent', { enabled: false })).status, 200);
    try {
      await refused({ subject_token: agentUserToken, actor_token: agentActor, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }, auth.agent, 'invalid_client');
    } finally {
      assert.equal((await admin.api('PATCH', '/agents/sample-agent', { enabled: true })).status, 200);
    }
    // Disabling revoked its grants: the old user token stays dead after re-enabling.
    await refused({ subject_token: agentUserToken, resource: R.api }, auth.other, 'invalid_request');
  });
});

describe('registration policy', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startTestAuthServer({ registration: { allowed_scopes: ['mcp:read'], redirect_uri_hosts: ['app.example'], rate_limit_per_minute: 12, max_clients: 4 } });
  });
  after(async () => as.close());
  const register = (metadata: Record<string, unknown>) =>
    fetch(`${as.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(metadata) });

  it('applies the scope allowlist, the redirect host rule, idempotency for public clients, the cap and the rate limit', async () => {
    // RFC 7591 §3.2.1: the server replaces what it will not grant, and the response says so.
    const outside = await register({ redirect_uris: ['https://app.example/cb'], scope: 'mcp:read mcp:write' });
    assert.equal(outside.status, 201);
    const narrowed = (await outside.json()) as { scope: string; registration_notes: string[] };
    assert.equal(narrowed.scope, 'mcp:read');
    assert.deepEqual(narrowed.registration_notes, ["scope: mcp:write withheld; not in this server's registration scope allowlist"]);
    const host = await register({ redirect_uris: ['https://elsewhere.example/cb'] });
    assert.equal(((await host.json()) as { error: string }).error, 'invalid_redirect_uri');
    const first = await register({ redirect_uris: ['http://127.0.0.1/cb'], token_endpoint_auth_method: 'none', client_name: 'same' });
    assert.equal(first.status, 201);
    const firstBody = (await first.json()) as { client_id: string; scope: string };
    assert.equal(firstBody.scope, 'mcp:read', 'no scope asked: the allowlist is granted');
    const again = await register({ redirect_uris: ['http://127.0.0.1/cb'], token_endpoint_auth_method: 'none', client_name: 'same' });
    assert.equal(again.status, 200);
    assert.equal(((await again.json()) as { client_id: string }).client_id, firstBody.client_id, 'the same registration, not a duplicate');

    let status = 0;
    for (let i = 0; i < 6 && status !== 503; i++) status = (await register({ redirect_uris: ['https://app.example/cb'], client_name: `c${i}` })).status;
    assert.equal(status, 503, 'the cap on clients');
    let limited: Response | undefined;
    for (let i = 0; i < 8 && limited?.status !== 429; i++) limited = await register({ redirect_uris: ['https://app.example/cb'] });
    assert.equal(limited?.status, 429);
    assert.ok(Number(limited?.headers.get('retry-after')) > 0);
  });
});

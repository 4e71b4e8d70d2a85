import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { adminAccess, adminApi } from '../helpers/admin.ts';
import { basic, decodeJwt, postForm, registerClient, type TestAuthServer } from '../helpers/auth-server.ts';
import { ACCESS_TOKEN_TYPE, AGENT_REDIRECT, R, auth, exchange, startDelegationServer, userToken } from '../helpers/delegation-server.ts';

/** The seeds' flows (DESIGN §2 A–D) against the authorization server alone. */
describe('delegation flows', () => {
  let as: TestAuthServer & { adminToken: string };
  before(async () => {
    // This suite's clients register themselves: the deployment's scope allowlist (the default grants none).
    as = await startDelegationServer({ registration: { allowed_scopes: ['todo_api:read', 'todo_api:write', 'banking:read'] } });
  });
  after(async () => as.close());
  /** An act entry this server writes (draft-mcguinness-oauth-actor-profile §3.4). */
  const entry = (sub: string, profile: string) => ({ sub, iss: as.issuer, sub_profile: profile, client_id: sub });

  const agentActorToken = async () => {
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent, scope: 'banking:read' }, auth.agent);
    assert.equal(res.status, 200, res.text);
    return res.json.access_token as string;
  };

  it('flow A (seed 000): the MCP server exchanges the user token for a narrower Todo API token', async () => {
    const client = await registerClient(as.issuer, { client_name: 'MCP Inspector', redirect_uris: ['http://127.0.0.1:6274/oauth/callback'], token_endpoint_auth_method: 'none' });
    const { token } = await userToken(as, { clientId: client.client_id, redirectUri: 'http://127.0.0.1:6274/oauth/callback', resource: R.mcp, scope: 'todo_api:read todo_api:write' });
    const user = decodeJwt(token.access_token);
    assert.equal(user.aud, R.mcp);
    assert.deepEqual(user.may_act, { sub: 'mcp-server' });

    const res = await exchange(as, { subject_token: token.access_token, resource: R.api, scope: 'todo_api:read' }, auth.mcp);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.issued_token_type, ACCESS_TOKEN_TYPE);
    assert.equal(res.json.token_type, 'Bearer');
    assert.equal(res.json.refresh_token, undefined);
    const api = decodeJwt(res.json.access_token as string);
    assert.equal(api.sub, user.sub);
    assert.equal(api.aud, R.api);
    assert.equal(api.scope, 'todo_api:read');
    assert.deepEqual(api.act, entry('mcp-server', 'service'));
    assert.equal(api.auth_time, user.auth_time);
    assert.ok((api.exp as number) <= (user.exp as number), 'never outlives the subject token');
    assert.deepEqual(api.may_act, { sub: 'other-service' }, 'the API resource names who may exchange it next');

    // Introspection and tokeninfo show the chain.
    const introspected = await postForm(`${as.issuer}/introspect`, { token: res.json.access_token as string }, auth.mcp);
    assert.deepEqual(introspected.json.act, entry('mcp-server', 'service'));
    const info = (await (await fetch(`${as.issuer}/tokeninfo`, { headers: { authorization: `Bearer ${token.access_token}` } })).json()) as Record<string, unknown>;
    assert.deepEqual(info.may_act, { sub: 'mcp-server' });

    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'token.issued', clientId: 'mcp-server' });
    assert.equal(event?.data?.grant_type, 'urn:ietf:params:oauth:grant-type:token-exchange');
    assert.deepEqual(event?.data?.actor_chain, ['mcp-server']);
    assert.equal(event?.data?.scope_requested, 'todo_api:read');
    assert.equal(event?.data?.scope_granted, 'todo_api:read');
    assert.equal(event?.data?.decision, 'allowed');
  });

  it("revoking the user's grant reaches the tokens exchanged from it", async () => {
    const client = await registerClient(as.issuer, { client_name: 'grant revoke', redirect_uris: ['http://127.0.0.1:6280/cb'], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'] });
    const { token } = await userToken(as, { clientId: client.client_id, redirectUri: 'http://127.0.0.1:6280/cb', resource: R.mcp, scope: 'todo_api:read' });
    const api = await exchange(as, { subject_token: token.access_token, resource: R.api }, auth.mcp);
    assert.equal(api.status, 200, api.text);
    const active = async (t: string) => (await postForm(`${as.issuer}/introspect`, { token: t }, auth.mcp)).json.active;
    assert.equal(await active(api.json.access_token as string), true);
    await postForm(`${as.issuer}/revoke`, { token: token.refresh_token!, client_id: client.client_id });
    assert.equal(await active(api.json.access_token as string), false, 'the exchanged token');
    const onward = await exchange(as, { subject_token: api.json.access_token as string, resource: R.deep }, auth.other);
    assert.equal(onward.json.error, 'invalid_request');
  });

  it('flow B (seed 001): agreement on first sign-in only, then subject + actor token → gateway token acting as the agent', async () => {
    const actor = await agentActorToken();
    assert.equal(decodeJwt(actor).sub, 'sample-agent');
    assert.equal(decodeJwt(actor).may_act, undefined, 'no may_act on a client acting for itself');

    const browser = new FormBrowser(as.issuer);
    const first = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent, browser });
    const agreementPages = () => browser.pages.filter((p) => p.html.includes('/agreement"')).length;
    assert.equal(agreementPages(), 1, 'the agreement is shown on the first sign-in');
    const consent = browser.pages.find((p) => p.html.includes('value="allow"'))!;
    assert.match(consent.html, /<dd id="actor"><strong><bdi>Sample agent<\/bdi><\/strong> <span class="badge agent" id="actor-agent">AI agent<\/span>/, 'the consent page says who will act');
    const subject = decodeJwt(first.token.access_token);
    assert.deepEqual(subject.may_act, { sub: 'sample-agent' });
    assert.equal(subject.acr, 'Agent-Consent-Login');

    await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent, browser });
    assert.equal(agreementPages(), 1, 'not on the second sign-in');

    const res = await exchange(
      as,
      { subject_token: first.token.access_token, actor_token: actor, actor_token_type: ACCESS_TOKEN_TYPE, audience: R.gateway, scope: 'banking:read' },
      auth.agent,
    );
    assert.equal(res.status, 200, res.text);
    const mandate = decodeJwt(res.json.access_token as string);
    assert.equal(mandate.aud, R.gateway);
    assert.equal(mandate.sub, subject.sub);
    assert.deepEqual(mandate.act, entry('sample-agent', 'ai_agent'));
    assert.equal(mandate.acr, 'Agent-Consent-Login');
    assert.equal(mandate.agent_owner, 'demo', 'a CEL claim mapping of the gateway resource');
  });

  it('flow B: a new agreement version, or an elapsed reconsent interval, asks again', async () => {
    const browser = new FormBrowser(as.issuer);
    const signIn = () => userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent, browser });
    const shown = () => browser.pages.filter((p) => p.html.includes('/agreement"')).length;
    await signIn();
    const before = shown();
    await as.store.db.updateTable('agreement_acceptances').set({ version: 0 }).execute(); // accepted an older version
    await signIn();
    assert.equal(shown(), before + 1, 'older version accepted: asked again');
    await signIn();
    assert.equal(shown(), before + 1);
    await as.store.db.updateTable('agreement_acceptances').set({ accepted_at: as.ctx.now() - 181 * 86_400 }).execute();
    await signIn();
    assert.equal(shown(), before + 2, '180-day reconsent interval elapsed: asked again');
  });

  it('flow B: declining the agreement returns access_denied', async () => {
    await as.store.db.deleteFrom('agreement_acceptances').execute();
    const { challenge } = (await import('../helpers/auth-server.ts')).pkcePair();
    const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'sample-agent', redirect_uri: AGENT_REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: R.agent, scope: 'banking:read' })}`;
    const back = await new FormBrowser(as.issuer).authorize(url, { agreement: 'decline' });
    assert.equal(back.searchParams.get('error'), 'access_denied');
  });

  it('flow C (seed 003): /aiagent/register → client credentials → tokeninfo', async () => {
    const res = await fetch(`${as.issuer}/aiagent/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'Onboarded agent', redirect_uris: ['https://agent.example/callback'], scopes: ['banking:read'], agent_type: 'researcher' }),
    });
    assert.equal(res.status, 201);
    const agent = (await res.json()) as Record<string, string | string[]>;
    assert.match(agent.client_id as string, /^agent_/);
    assert.ok(agent.client_secret);
    assert.equal(agent.agent_type, 'researcher');
    assert.ok((agent.grant_types as string[]).includes('urn:ietf:params:oauth:grant-type:token-exchange'));
    const token = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, { authorization: basic(agent.client_id as string, agent.client_secret as string) });
    assert.equal(token.status, 200, token.text);
    const info = (await (await fetch(`${as.issuer}/tokeninfo`, { headers: { authorization: `Bearer ${token.json.access_token}` } })).json()) as Record<string, unknown>;
    assert.equal(info.client_id, agent.client_id);
    assert.equal(info.scope, 'banking:read');
    assert.equal(info.aud, R.agent);
  });

  it('flow D: a chain gateway → MCP server → API nests act, and one hop beyond the depth limit is refused', async () => {
    const actor = await agentActorToken();
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
    const gateway = await exchange(as, { subject_token: token.access_token, actor_token: actor, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }, auth.agent);
    assert.equal(gateway.status, 200, gateway.text);
    assert.deepEqual(decodeJwt(gateway.json.access_token as string).may_act, { sub: 'mcp-server' });

    const api = await exchange(as, { subject_token: gateway.json.access_token as string, resource: R.api, scope: 'banking:read' }, auth.mcp);
    assert.equal(api.status, 200, api.text);
    const claims = decodeJwt(api.json.access_token as string);
    assert.deepEqual(claims.act, { ...entry('mcp-server', 'service'), act: entry('sample-agent', 'ai_agent') });
    assert.equal(claims.scope, 'banking:read');

    const deeper = await exchange(as, { subject_token: api.json.access_token as string, resource: R.deep }, auth.other);
    assert.equal(deeper.json.error, 'invalid_request', 'RFC 8693 §2.2.2: a subject token unacceptable by policy');
    assert.match(deeper.json.error_description as string, /too long/);
  });

  it("revoking the user's grant reaches every hop of a chain, even one exchanged a moment ago", async () => {
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
    const gateway = await exchange(as, { subject_token: token.access_token, resource: R.gateway }, auth.agent);
    const api = await exchange(as, { subject_token: gateway.json.access_token as string, resource: R.api, scope: 'banking:read' }, auth.mcp);
    assert.equal(api.status, 200, api.text);
    await postForm(`${as.issuer}/revoke`, { token: token.refresh_token! }, auth.agent);
    const active = async (t: string) => (await postForm(`${as.issuer}/introspect`, { token: t }, auth.mcp)).json.active;
    assert.equal(await active(gateway.json.access_token as string), false, 'first hop');
    assert.equal(await active(api.json.access_token as string), false, 'second hop');
  });

  it("seed 001's claim mappings are expressible in CEL: copy sub, turn may_act into act", async () => {
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
    const res = await exchange(as, { subject_token: token.access_token, resource: R.seed }, auth.agent);
    assert.equal(res.status, 200, res.text);
    const claims = decodeJwt(res.json.access_token as string);
    assert.equal(claims.sub, decodeJwt(token.access_token).sub);
    assert.deepEqual(claims.act, { sub: 'sample-agent' });
    assert.equal(claims.seen_by, 'mapping:sample-agent');
  });

  it('an ID token issued to the calling client can be the subject (resources that do not require may_act)', async () => {
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'openid banking:read', clientAuth: auth.agent });
    const idToken = (token as { id_token?: string }).id_token!;
    assert.ok(idToken);
    const form = { subject_token: idToken, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token', resource: R.identity };
    const ok = await exchange(as, form, auth.agent);
    assert.equal(ok.status, 200, ok.text);
    const claims = decodeJwt(ok.json.access_token as string);
    assert.equal(claims.sub, decodeJwt(idToken).sub);
    assert.deepEqual(claims.act, entry('sample-agent', 'ai_agent'));
    assert.equal(claims.scope, undefined);
    const refusedScope = await exchange(as, { ...form, resource: R.opaque }, auth.agent);
    assert.equal(refusedScope.json.error, 'invalid_scope', 'an ID token carries no scope to narrow from');
    const wrongClient = await exchange(as, form, auth.mcp);
    assert.equal(wrongClient.json.error, 'invalid_request', 'an ID token of another client');
    // The sign-in it came from revoked (a sign-out everywhere, a password change): the ID token no longer stands for it.
    for (const grant of await as.store.grants.listGrantsBySub(claims.sub as string)) await as.store.grants.revokeGrant(grant.id, Math.floor(Date.now() / 1000));
    const revoked = await exchange(as, form, auth.agent);
    assert.equal(revoked.status, 400, revoked.text);
    assert.equal(revoked.json.error, 'invalid_request');
    await as.ctx.audit.flush();
    const event = (await as.store.audit.query({ type: 'token.exchange_refused', limit: 5 }))[0]!;
    assert.equal(event.error, 'invalid_request');
    assert.match(String(event.reason), /no standing grant of .* to sample-agent/);
  });

  it('an opaque token is introspected, with its chain', async () => {
    const client = await registerClient(as.issuer, { redirect_uris: ['http://127.0.0.1:7000/cb'], token_endpoint_auth_method: 'none', client_name: 'opaque test' });
    const { token } = await userToken(as, { clientId: client.client_id, redirectUri: 'http://127.0.0.1:7000/cb', resource: R.mcp, scope: 'todo_api:read' });
    const res = await exchange(as, { subject_token: token.access_token, resource: R.opaque }, auth.mcp);
    assert.equal(res.status, 200, res.text);
    const opaque = res.json.access_token as string;
    assert.equal(opaque.split('.').length, 1, 'not a JWT');
    const introspected = await postForm(`${as.issuer}/introspect`, { token: opaque }, auth.mcp);
    assert.equal(introspected.json.active, true);
    assert.equal(introspected.json.aud, R.opaque);
    assert.deepEqual(introspected.json.act, entry('mcp-server', 'service'));
  });

  it('disabling an agent revokes its tokens, refuses its exchanges, cuts off tokens whose chain contains it, and lists it', async () => {
    const actor = await agentActorToken();
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
    const gateway = await exchange(as, { subject_token: token.access_token, actor_token: actor, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }, auth.agent);
    const api = await exchange(as, { subject_token: gateway.json.access_token as string, resource: R.api, scope: 'banking:read' }, auth.mcp);
    assert.equal(api.status, 200);

    const admin = await adminAccess(as);
    const disabled = await admin.api('PATCH', '/agents/sample-agent', { enabled: false });
    assert.equal(disabled.status, 200, disabled.text);
    assert.equal(disabled.json.enabled, false);

    const active = async (t: string) => (await postForm(`${as.issuer}/introspect`, { token: t }, auth.mcp)).json.active;
    assert.equal(await active(api.json.access_token as string), false, 'a token whose chain contains the agent');
    assert.equal(await active(token.access_token), false, "the user's token issued to the agent");
    assert.equal(await active(actor), false, "the agent's own token");
    const refused = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, auth.agent);
    assert.equal(refused.json.error, 'invalid_client');

    const list = await fetch(`${as.issuer}/revocations`, { headers: auth.mcp });
    const body = (await list.json()) as { clients: { client_id: string }[]; tokens: { jti: string }[] };
    assert.ok(body.clients.some((c) => c.client_id === 'sample-agent'));
    assert.ok(body.tokens.some((t) => t.jti === decodeJwt(token.access_token).jti), 'tracked tokens of its grants are listed by jti');

    const enabled = await admin.api('PATCH', '/agents/sample-agent', { enabled: true });
    assert.equal(enabled.status, 200, enabled.text);
    assert.equal(await active(api.json.access_token as string), false, 're-enabling does not revive tokens issued before the disable');
    assert.equal(await active(actor), false);
    await new Promise((r) => setTimeout(r, 1000)); // cut-off times have one-second resolution
    const again = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, auth.agent);
    assert.equal(again.status, 200);
    assert.equal(await active(again.json.access_token as string), true, 'new tokens work');
  });

  it('resources live in the store too: an administrator adds, uses and removes one at runtime', async () => {
    const admin = await adminAccess(as);
    const resource = { id: 'https://runtime.test', name: 'Added at runtime', scopes: [{ name: 'runtime:read' }], claims: { team: '"blue"' } };
    const path = `/resources/${encodeURIComponent(resource.id)}`;
    const created = await admin.api('POST', '/resources', { definition: resource });
    assert.equal(created.status, 201, created.text);
    const token = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: resource.id }, auth.mcp);
    assert.equal(token.status, 200, token.text);
    assert.equal(decodeJwt(token.json.access_token as string).team, 'blue');
    const metadata = (await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as { scopes_supported: string[] };
    assert.ok(metadata.scopes_supported.includes('runtime:read'));

    const badCel = await admin.api('PUT', path, { definition: { ...resource, claims: { x: '1 +' } } });
    assert.equal(badCel.status, 400);
    assert.equal(badCel.json.error, 'invalid_request');
    const protectedClaim = await admin.api('PUT', path, { definition: { ...resource, claims: { iss: '"x"' } } });
    assert.equal(protectedClaim.status, 400);
    assert.equal(protectedClaim.json.error, 'invalid_request');
    assert.equal((await admin.api('GET', path)).status, 200, 'still serving');
    const fromConfig = await admin.api('PUT', `/resources/${encodeURIComponent(R.api)}`, { definition: { id: R.api, name: 'hijack' } });
    assert.equal(fromConfig.status, 409);
    assert.equal(fromConfig.json.error, 'conflict');
    const unknownKey = await admin.api('PUT', path, { definition: { ...resource, scopez: [] } });
    assert.equal(unknownKey.status, 400);
    assert.equal(unknownKey.json.error, 'invalid_request');

    const removed = await admin.api('DELETE', path);
    assert.equal(removed.status, 200, removed.text);
    assert.deepEqual(removed.json, { deleted: true });
    const after = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: resource.id }, auth.mcp);
    assert.equal(after.json.error, 'invalid_target');
  });

  it('a disabled agent cannot manage (and so revive) its own registration', async () => {
    const res = await fetch(`${as.issuer}/aiagent/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'Self-managed agent', grant_types: ['client_credentials'] }),
    });
    const agent = (await res.json()) as { client_id: string; registration_client_uri: string; registration_access_token: string };
    const admin = await adminAccess(as);
    assert.equal((await admin.api('PATCH', `/agents/${agent.client_id}`, { enabled: false })).status, 200);
    const put = await fetch(agent.registration_client_uri, {
      method: 'PUT',
      headers: { authorization: `Bearer ${agent.registration_access_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: agent.client_id, client_name: 'revived?', grant_types: ['client_credentials'] }),
    });
    assert.equal(put.status, 403);
    const view = (await admin.api('GET', `/agents/${agent.client_id}`)).json;
    assert.equal(view.enabled, false);
    assert.equal(view.client_name, 'Self-managed agent');
  });

  it('an expired agent is refused, and its tokens stop working', async () => {
    const admin = await adminAccess(as);
    await new Promise((r) => setTimeout(r, 1000)); // past the previous test's cut-off second
    const before = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, auth.agent);
    assert.equal((await admin.api('PATCH', '/agents/sample-agent', { expires_at: '2020-01-01T00:00:00Z' })).status, 200);
    const refused = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, auth.agent);
    assert.equal(refused.json.error, 'invalid_client');
    assert.equal((await postForm(`${as.issuer}/introspect`, { token: before.json.access_token as string }, auth.mcp)).json.active, false);
    const list = (await (await fetch(`${as.issuer}/revocations`, { headers: auth.mcp })).json()) as { clients: { client_id: string; expired_at: number }[] };
    assert.ok(list.clients.some((c) => c.client_id === 'sample-agent' && c.expired_at > 0));
    assert.equal((await admin.api('PATCH', '/agents/sample-agent', { expires_at: null })).status, 200);
    assert.equal((await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, auth.agent)).status, 200);
    const noAdmin = await adminApi(as.issuer, 'wrong', 'GET', '/agents');
    assert.equal(noAdmin.status, 401);
  });
});

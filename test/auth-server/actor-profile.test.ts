import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { basic, decodeJwt, postForm, type TestAuthServer } from '../helpers/auth-server.ts';
import { adminAccess } from '../helpers/admin.ts';
import { ACCESS_TOKEN_TYPE, R, TOKEN_EXCHANGE, auth, exchange, startDelegationServer, userToken } from '../helpers/delegation-server.ts';
import { ACCESS_TOKEN_TYP, signJwt } from '../../src/core/jwt.ts';
import { clientProfile } from '../../src/auth-server/actor-profile.ts';
import { listedTools, mcpPost, startFakeIssuer, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';

/** draft-mcguinness-oauth-actor-profile on the AS: every act entry Mandate writes says what kind of entity acted. */
describe('actor profile: act entries with iss, sub_profile and client_id', () => {
  let as: TestAuthServer & { adminToken: string };
  before(async () => {
    as = await startDelegationServer({
      clients: [
        { client_id: 'mcp-server', client_name: 'Todo MCP server', client_secret_env: 'TEST_MCP_SECRET', grant_types: ['client_credentials', TOKEN_EXCHANGE] as never, introspection: 'allowed' },
        // The override: an administrator says this service is an AI agent.
        { client_id: 'other-service', client_name: 'Other service', client_secret_env: 'TEST_OTHER_SECRET', grant_types: ['client_credentials', TOKEN_EXCHANGE] as never, sub_profile: 'ai_agent' },
      ],
    });
  });
  after(async () => as.close());
  const entry = (sub: string, profile: string) => ({ sub, iss: as.issuer, sub_profile: profile, client_id: sub });

  it('an agent acting for a user is ai_agent; an MCP server exchanging that token is service, nested over it; introspection and the audit show both', async () => {
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: 'http://localhost:3000/callback', resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
    const gateway = await exchange(as, { subject_token: token.access_token, resource: R.gateway }, auth.agent);
    assert.equal(gateway.status, 200, gateway.text);
    assert.deepEqual(decodeJwt(gateway.json.access_token as string).act, entry('sample-agent', 'ai_agent'));

    const api = await exchange(as, { subject_token: gateway.json.access_token as string, resource: R.api, scope: 'banking:read' }, auth.mcp);
    assert.equal(api.status, 200, api.text);
    const chain = { ...entry('mcp-server', 'service'), act: entry('sample-agent', 'ai_agent') };
    assert.deepEqual(decodeJwt(api.json.access_token as string).act, chain);

    const introspected = await postForm(`${as.issuer}/introspect`, { token: api.json.access_token as string }, auth.mcp);
    assert.equal(introspected.json.active, true);
    assert.deepEqual(introspected.json.act, chain, 'introspection returns the whole chain with its profiles');

    await as.ctx.audit.flush();
    const events = await as.store.audit.list({ type: 'token.issued', clientId: 'mcp-server' });
    const issued = events.find((e) => e.data?.jti === decodeJwt(api.json.access_token as string).jti);
    assert.deepEqual(issued?.data?.act_profiles, ['service', 'ai_agent'], 'outermost first');
    assert.deepEqual(issued?.data?.actor_chain, ['mcp-server', 'sample-agent']);
  });

  it("a configured client's sub_profile overrides the default", async () => {
    const now = Math.floor(Date.now() / 1000);
    const subject = await signJwt(as.ctx.keys, { iss: as.issuer, sub: 'demo-user', aud: R.api, exp: now + 300, iat: now, jti: crypto.randomUUID(), client_id: 'some-app', scope: 'banking:read', may_act: { sub: 'other-service' } }, ACCESS_TOKEN_TYP);
    const res = await exchange(as, { subject_token: subject, resource: R.deep }, auth.other);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(decodeJwt(res.json.access_token as string).act, entry('other-service', 'ai_agent'), 'a service, configured as ai_agent');
  });

  it('the admin API sets sub_profile on a client it creates; the override shows in its act entries', async () => {
    const admin = await adminAccess(as);
    const created = await admin.api('POST', '/clients', { client_id: 'admin-made', token_endpoint_auth_method: 'client_secret_basic', grant_types: [TOKEN_EXCHANGE], sub_profile: 'service ai_agent' });
    assert.equal(created.status, 201, created.text);
    const secret = (created.json as { client_secret: string }).client_secret;
    const now = Math.floor(Date.now() / 1000);
    const subject = await signJwt(as.ctx.keys, { iss: as.issuer, sub: 'demo-user', aud: R.api, exp: now + 300, iat: now, jti: crypto.randomUUID(), client_id: 'some-app', scope: 'banking:read' }, ACCESS_TOKEN_TYP);
    const res = await exchange(as, { subject_token: subject, resource: R.identity }, { authorization: basic('admin-made', secret) });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(decodeJwt(res.json.access_token as string).act, entry('admin-made', 'service ai_agent'));
    const refused = await admin.api('POST', '/clients', { client_id: 'bad-profile', sub_profile: ' leading space' });
    assert.equal(refused.status, 400, refused.text);
  });

  it('a token minted before the actor profile keeps its bare inner entries: nested as received, never rewritten', async () => {
    const now = Math.floor(Date.now() / 1000);
    const old = await signJwt(
      as.ctx.keys,
      { iss: as.issuer, sub: 'demo-user', aud: R.api, exp: now + 300, iat: now, jti: crypto.randomUUID(), client_id: 'mcp-server', scope: 'banking:read', act: { sub: 'mcp-server' }, may_act: { sub: 'other-service' } },
      ACCESS_TOKEN_TYP,
    );
    const introspected = await postForm(`${as.issuer}/introspect`, { token: old }, auth.mcp);
    assert.equal(introspected.json.active, true, 'still valid');
    assert.deepEqual(introspected.json.act, { sub: 'mcp-server' });
    const res = await exchange(as, { subject_token: old, resource: R.deep }, auth.other);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(decodeJwt(res.json.access_token as string).act, { ...entry('other-service', 'ai_agent'), act: { sub: 'mcp-server' } });
    await as.ctx.audit.flush();
    const events = await as.store.audit.list({ type: 'token.issued', clientId: 'other-service' });
    const issued = events.find((e) => e.data?.jti === decodeJwt(res.json.access_token as string).jti);
    assert.deepEqual(issued?.data?.act_profiles, ['ai_agent', ''], 'an entry without sub_profile is audited as ""');
  });

  it('the actor token path names the same entry', async () => {
    const actor = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent, scope: 'banking:read' }, auth.agent);
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: 'http://localhost:3000/callback', resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
    const res = await exchange(as, { subject_token: token.access_token, actor_token: actor.json.access_token as string, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }, auth.agent);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(decodeJwt(res.json.access_token as string).act, entry('sample-agent', 'ai_agent'));
  });

  describe('the top-level sub_profile: what kind of entity the subject is', () => {
    const introspect = (token: string) => postForm(`${as.issuer}/introspect`, { token }, auth.mcp);

    it("a user's token says user, in the JWT, the introspection response and every token exchanged from it", async () => {
      const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: 'http://localhost:3000/callback', resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
      assert.equal(decodeJwt(token.access_token).sub_profile, 'user');
      assert.equal((await introspect(token.access_token)).json.sub_profile, 'user');
      const gateway = await exchange(as, { subject_token: token.access_token, resource: R.gateway }, auth.agent);
      const api = await exchange(as, { subject_token: gateway.json.access_token as string, resource: R.api, scope: 'banking:read' }, auth.mcp);
      assert.equal(api.status, 200, api.text);
      const claims = decodeJwt(api.json.access_token as string);
      assert.deepEqual([claims.sub, claims.sub_profile, (claims.act as { sub_profile: string }).sub_profile], [decodeJwt(token.access_token).sub, 'user', 'service'], 'the subject keeps its profile; the actor has its own');
      assert.equal((await introspect(api.json.access_token as string)).json.sub_profile, 'user');
      // A refreshed token too (another grant, the same user).
      assert.ok(token.refresh_token, 'the agent gets a refresh token');
      const refreshed = await postForm(`${as.issuer}/token`, { grant_type: 'refresh_token', refresh_token: token.refresh_token }, auth.agent);
      assert.equal(refreshed.status, 200, refreshed.text);
      assert.equal(decodeJwt(refreshed.json.access_token as string).sub_profile, 'user');
    });

    it("a client's own token (client credentials) has the client's profile: ai_agent, service, or the configured override", async () => {
      const profileOf = async (headers: Record<string, string>, resource: string) => {
        const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource }, headers);
        assert.equal(res.status, 200, res.text);
        return decodeJwt(res.json.access_token as string).sub_profile;
      };
      assert.equal(await profileOf(auth.agent, R.agent), 'ai_agent');
      assert.equal(await profileOf(auth.mcp, R.deep), 'service');
      assert.equal(await profileOf(auth.other, R.deep), 'ai_agent', 'other-service is configured as ai_agent');
    });

    it('an opaque token: introspection says the profile', async () => {
      const now = Math.floor(Date.now() / 1000);
      const subject = await signJwt(as.ctx.keys, { iss: as.issuer, sub: 'demo-user', aud: R.api, exp: now + 300, iat: now, jti: crypto.randomUUID(), client_id: 'some-app', scope: 'todo_api:read', sub_profile: 'user' }, ACCESS_TOKEN_TYP);
      const res = await exchange(as, { subject_token: subject, resource: R.opaque, scope: 'todo_api:read' }, auth.mcp);
      assert.equal(res.status, 200, res.text);
      assert.equal((await introspect(res.json.access_token as string)).json.sub_profile, 'user');
    });

    it('a subject token from before the actor profile (no sub_profile) still works: the exchanged token gets the profile it would have had', async () => {
      const now = Math.floor(Date.now() / 1000);
      const old = (claims: Record<string, unknown>) => signJwt(as.ctx.keys, { iss: as.issuer, aud: R.api, exp: now + 300, iat: now, jti: crypto.randomUUID(), scope: 'banking:read', may_act: { sub: 'other-service' }, ...claims }, ACCESS_TOKEN_TYP);
      const userOld = await old({ sub: 'demo-user', client_id: 'some-app' });
      const introspected = await introspect(userOld);
      assert.deepEqual([introspected.json.active, introspected.json.sub_profile], [true, undefined], 'valid, and nothing is made up for it');
      const fromUser = await exchange(as, { subject_token: userOld, resource: R.deep }, auth.other);
      assert.equal(fromUser.status, 200, fromUser.text);
      assert.equal(decodeJwt(fromUser.json.access_token as string).sub_profile, 'user');
      // An agent's own token (sub = client_id) of before: the agent's profile, read from the store.
      const agentOld = await old({ sub: 'sample-agent', client_id: 'sample-agent' });
      const fromAgent = await exchange(as, { subject_token: agentOld, resource: R.deep }, auth.other);
      assert.equal(fromAgent.status, 200, fromAgent.text);
      assert.equal(decodeJwt(fromAgent.json.access_token as string).sub_profile, 'ai_agent');
    });

    it("a subject token's profile is kept as it is, never recomputed from the actor", async () => {
      const now = Math.floor(Date.now() / 1000);
      const subject = await signJwt(as.ctx.keys, { iss: as.issuer, sub: 'mcp-server', aud: R.api, exp: now + 300, iat: now, jti: crypto.randomUUID(), client_id: 'mcp-server', scope: 'banking:read', may_act: { sub: 'other-service' }, sub_profile: 'service' }, ACCESS_TOKEN_TYP);
      const res = await exchange(as, { subject_token: subject, resource: R.deep }, auth.other);
      assert.equal(res.status, 200, res.text);
      const claims = decodeJwt(res.json.access_token as string);
      assert.deepEqual([claims.sub_profile, (claims.act as { sub_profile: string }).sub_profile], ['service', 'ai_agent']);
    });
  });

  it('metadata advertises the actor profile', async () => {
    const metadata = (await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.deepEqual(metadata.actor_profile_token_types_supported, [ACCESS_TOKEN_TYPE]);
    assert.deepEqual(metadata.entity_profiles_supported, { subject: ['user', 'service', 'ai_agent'], actor: ['service', 'ai_agent'] });
  });

  it("a self-registered client's own sub_profile is ignored: only an administrator sets a profile; nobody vouched for it, so it is ai_agent", () => {
    const base = { clientId: 'x', createdAt: 0, metadata: { sub_profile: 'user', redirect_uris: [], grant_types: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic' as const } };
    // Registering at /register rather than /aiagent/register does not make an agent a service.
    assert.equal(clientProfile({ ...base, source: 'dynamic' }), 'ai_agent');
    assert.equal(clientProfile({ ...base, source: 'metadata_document' }), 'ai_agent');
    assert.equal(clientProfile({ ...base, source: 'dynamic', metadata: { ...base.metadata, sub_profile: 'service' } }), 'ai_agent');
    assert.equal(clientProfile({ ...base, source: 'config', metadata: { ...base.metadata, sub_profile: undefined } } as never), 'service');
    assert.equal(clientProfile({ ...base, source: 'admin', metadata: { ...base.metadata, sub_profile: undefined } } as never), 'service');
    assert.equal(clientProfile({ ...base, source: 'dynamic', agent: { agentType: 'assistant' } } as never), 'ai_agent');
    assert.equal(clientProfile({ ...base, source: 'config' }), 'user');
    assert.equal(clientProfile({ ...base, source: 'admin' }), 'user');
  });
});

/** The gateway's side: CEL sees act[i].sub_profile (and '' on old tokens); the audit log records it. */
describe('actor profile at the gateway', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let resource: string;
  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    gateway = await startTestGateway((url) => [
      {
        path: '/mcp',
        upstream: upstream.url,
        resource: `${url}/mcp`,
        authorization_servers: [issuer.issuer],
        identity_headers: true,
        tools: {
          read_balance: {},
          // An AI agent anywhere in the chain may not write; old tokens (sub_profile '') may.
          transfer: { allow: "act.all(a, a.sub_profile != 'ai_agent')", reason: 'AI agents may not transfer' },
          echo: { allow: "size(act) == 0 || (act[0].sub_profile == '' && act[0].iss == '') || act[0].iss == claims.iss" },
          // The top-level sub_profile: a person's token only (has(): tokens from before lack it).
          statement: { allow: "has(claims.sub_profile) && claims.sub_profile == 'user'", reason: 'statements are for people' },
          // The same through the sub_profile variable ('' for a token without one: never an error).
          summary: { allow: "sub_profile == 'user'", reason: 'summaries are for people' },
        },
      },
      { path: '/strict', upstream: upstream.url, resource: `${url}/strict`, authorization_servers: [issuer.issuer], tools: listedTools(['echo']), actor_profile: { required: true, authorization_required: true } },
    ]);
    resource = `${gateway.url}/mcp`;
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await issuer.close();
  });
  const bearer = async (act: unknown) => ({ authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1', scope: 'banking:read', act })}` });
  const agentEntry = () => ({ sub: 'agent-1', iss: issuer.issuer, sub_profile: 'ai_agent', client_id: 'agent-1' });

  it('a CEL rule on act[i].sub_profile refuses an AI agent, audited with the profile', async () => {
    const res = await mcpPost(resource, toolCall('transfer', { amount: 5 }), await bearer({ sub: 'gw', iss: issuer.issuer, sub_profile: 'service', client_id: 'gw', act: agentEntry() }));
    assert.equal(res.status, 403);
    const event = (await gateway.auditEvents()).findLast((e) => e.tool === 'transfer')!;
    assert.equal(event.rejection, 'tool_denied');
    assert.equal(event.reason, 'AI agents may not transfer');
    assert.deepEqual(event.act, [{ sub: 'gw', client_id: 'gw', sub_profile: 'service', iss: issuer.issuer }, agentEntry()]);
  });

  it('a service chain passes the same rule', async () => {
    const res = await mcpPost(resource, toolCall('transfer', { amount: 5 }), await bearer({ sub: 'gw', iss: issuer.issuer, sub_profile: 'service', client_id: 'gw' }));
    assert.equal(res.status, 200, res.text);
  });

  it("an old token's act (no iss, no sub_profile) still passes; CEL sees '' and the audit omits the missing members", async () => {
    const transfer = await mcpPost(resource, toolCall('transfer', { amount: 5 }), await bearer({ sub: 'agent-1', client_id: 'agent-1' }));
    assert.equal(transfer.status, 200, transfer.text);
    const echo = await mcpPost(resource, toolCall('echo'), await bearer({ sub: 'agent-1' }));
    assert.equal(echo.status, 200, echo.text);
    const event = (await gateway.auditEvents()).findLast((e) => e.tool === 'echo')!;
    assert.deepEqual(event.act, [{ sub: 'agent-1' }]);
    assert.deepEqual(JSON.parse(upstream.requests.at(-1)!.headers['x-mandate-act'] as string), [{ sub: 'agent-1', client_id: '', sub_profile: '', iss: '' }]);
  });

  it('CEL sees the top-level claims.sub_profile; a token without it is judged by has()', async () => {
    const call = async (extra: Record<string, unknown>) =>
      mcpPost(resource, toolCall('statement'), { authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: resource, client_id: 'app', scope: 'banking:read', ...extra })}` });
    assert.equal((await call({ sub_profile: 'user' })).status, 200);
    for (const extra of [{ sub_profile: 'ai_agent' }, {}]) {
      const res = await call(extra);
      assert.equal(res.status, 403, JSON.stringify(extra));
      const event = (await gateway.auditEvents()).findLast((e) => e.tool === 'statement')!;
      assert.deepEqual([event.rejection, event.reason], ['tool_denied', 'statements are for people']);
    }
  });

  it("CEL's sub_profile variable is the top-level claim, '' for a token without one (the rule says no, it does not error)", async () => {
    const call = async (extra: Record<string, unknown>) =>
      mcpPost(resource, toolCall('summary'), { authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: resource, client_id: 'app', scope: 'banking:read', ...extra })}` });
    assert.equal((await call({ sub_profile: 'user' })).status, 200);
    for (const extra of [{ sub_profile: 'service' }, {}]) {
      const res = await call(extra);
      assert.equal(res.status, 403, JSON.stringify(extra));
      const event = (await gateway.auditEvents()).findLast((e) => e.tool === 'summary')!;
      assert.deepEqual([event.rejection, event.reason], ['tool_denied', 'summaries are for people']);
    }
  });

  it('actor_profile.required: a delegated token whose act entries lack iss is refused 401 invalid_token; the PRM says so', async () => {
    const strict = `${gateway.url}/strict`;
    const sign = (act: unknown) => issuer.sign({ sub: 'alice', aud: strict, client_id: 'agent-1', scope: 'banking:read', act });
    const old = await mcpPost(strict, toolCall('echo'), { authorization: `Bearer ${await sign({ sub: 'gw', iss: issuer.issuer, sub_profile: 'service', act: { sub: 'agent-1' } })}` });
    assert.equal(old.status, 401);
    assert.match(old.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    const event = (await gateway.auditEvents()).findLast((e) => e.route === '/strict')!;
    assert.equal(event.rejection, 'actor_profile_required');
    const full = await mcpPost(strict, toolCall('echo'), { authorization: `Bearer ${await sign({ sub: 'gw', iss: issuer.issuer, sub_profile: 'service', act: agentEntry() })}` });
    assert.equal(full.status, 200, full.text);
    const direct = await mcpPost(strict, toolCall('echo'), { authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: strict, client_id: 'app', scope: 'banking:read' })}` });
    assert.equal(direct.status, 200, 'a token without act is not delegated: nothing to require');
    const prm = (await (await fetch(`${gateway.url}/.well-known/oauth-protected-resource/strict`)).json()) as Record<string, unknown>;
    assert.deepEqual([prm.actor_profile_required, prm.actor_authorization_required], [true, true]);
    const plain = (await (await fetch(`${gateway.url}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
    assert.equal(plain.actor_profile_required, undefined);
  });
});

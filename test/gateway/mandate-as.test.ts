import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { adminAccess } from '../helpers/admin.ts';
import { decodeJwt, postForm } from '../helpers/auth-server.ts';
import { ACCESS_TOKEN_TYPE, AGENT_REDIRECT, R, auth, exchange, startDelegationServer, userToken } from '../helpers/delegation-server.ts';
import { mcpPost, startScriptedUpstream, startTestGateway, toolCall, listedTools, type TestGateway } from '../helpers/gateway.ts';

/**
 * Flow B against Mandate's own authorization server: the agent's actor token, the user's subject
 * token, the exchange for the gateway's resource, and the gateway checking it with the AS's JWKS —
 * then token mediation, where the gateway exchanges the token again for the upstream.
 */
describe('gateway in front of an upstream, tokens from the Mandate authorization server', () => {
  let as: Awaited<ReturnType<typeof startDelegationServer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let delegated: string;

  before(async () => {
    as = await startDelegationServer();
    upstream = await startScriptedUpstream();
    gateway = await startTestGateway(() => [
      {
        path: '/mcp',
        upstream: upstream.url,
        resource: R.gateway,
        authorization_servers: [as.issuer],
        tools: { read_balance: { scopes: ['banking:read'] }, transfer: { scopes: ['banking:transfer'], allow: "act.exists(a, a.sub == 'sample-agent')" } },
        unlisted_tools: 'deny',
      },
      {
        path: '/mediated',
        upstream: upstream.url,
        resource: R.gateway,
        authorization_servers: [as.issuer],
        // The gateway acts as the Todo MCP server's client here: R.gateway tokens name it in may_act.
        tools: listedTools(),
        mediation: { client_id: 'mcp-server', client_secret_env: 'TEST_MCP_SECRET', resource: R.api, scope: 'banking:read' },
      },
      {
        path: '/revocable',
        upstream: upstream.url,
        resource: R.gateway,
        authorization_servers: [as.issuer],
        tools: listedTools(),
        token: { revocation_list: { client_id: 'mcp-server', client_secret_env: 'TEST_MCP_SECRET', poll_seconds: 1 } },
      },
    ]);
    const actor = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent, scope: 'banking:read' }, auth.agent);
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
    const res = await exchange(as, { subject_token: token.access_token, actor_token: actor.json.access_token as string, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway, scope: 'banking:read' }, auth.agent);
    assert.equal(res.status, 200, res.text);
    delegated = res.json.access_token as string;
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await as.close();
  });

  it('read_balance with banking:read goes through, audited with the act chain', async () => {
    const res = await mcpPost(`${gateway.url}/mcp`, toolCall('read_balance', {}, 201), { authorization: `Bearer ${delegated}` });
    assert.equal(res.status, 200, res.text);
    const event = (await gateway.auditEvents()).find((e) => e.jsonrpc_id === 201)!;
    assert.equal(event.sub, decodeJwt(delegated).sub);
    assert.deepEqual(event.act, [{ sub: 'sample-agent', client_id: 'sample-agent', sub_profile: 'ai_agent', iss: as.issuer }]);
    assert.equal(event.decision, 'allow');
  });

  it('transfer without banking:transfer: 403 insufficient_scope', async () => {
    const res = await mcpPost(`${gateway.url}/mcp`, toolCall('transfer', { amount: 5 }), { authorization: `Bearer ${delegated}` });
    assert.equal(res.status, 403);
    assert.match(res.headers.get('www-authenticate')!, /error="insufficient_scope"/);
    assert.match(res.headers.get('www-authenticate')!, /scope="banking:transfer"/);
  });

  it('the agent own token (aud = the agent) is refused: wrong audience', async () => {
    const own = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent, scope: 'banking:read' }, auth.agent);
    assert.equal((await mcpPost(`${gateway.url}/mcp`, toolCall('read_balance'), { authorization: `Bearer ${own.json.access_token}` })).status, 401);
  });

  it('token mediation: the upstream gets a token exchanged for its own audience, never the caller token', async () => {
    const res = await mcpPost(`${gateway.url}/mediated`, toolCall('echo', {}, 202), { authorization: `Bearer ${delegated}` });
    assert.equal(res.status, 200, res.text);
    const seen = upstream.requests.at(-1)!;
    const forwarded = seen.headers.authorization!.replace(/^Bearer /, '');
    assert.notEqual(forwarded, delegated);
    const claims = decodeJwt(forwarded);
    assert.equal(claims.aud, R.api);
    assert.equal(claims.sub, decodeJwt(delegated).sub);
    assert.deepEqual(
      claims.act,
      { sub: 'mcp-server', iss: as.issuer, sub_profile: 'service', client_id: 'mcp-server', act: { sub: 'sample-agent', iss: as.issuer, sub_profile: 'ai_agent', client_id: 'sample-agent' } },
      'the gateway joins the chain as the newest actor, a service over the AI agent (actor profile)',
    );
    assert.equal(claims.scope, 'banking:read');
    await mcpPost(`${gateway.url}/mediated`, toolCall('echo', {}, 203), { authorization: `Bearer ${delegated}` });
    assert.equal(upstream.requests.at(-1)!.headers.authorization, seen.headers.authorization, 'the exchanged token is reused until near expiry');
  });

  it('token mediation refused by the AS (a client token of its own: no may_act names the gateway): 403, nothing forwarded', async () => {
    const count = upstream.requests.length;
    const own = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.gateway, scope: 'banking:read' }, auth.other);
    assert.equal(own.status, 200, own.text);
    const res = await mcpPost(`${gateway.url}/mediated`, toolCall('echo'), { authorization: `Bearer ${own.json.access_token}` });
    assert.equal(res.status, 403, res.text);
    assert.equal(upstream.requests.length, count);
    const event = (await gateway.auditEvents()).at(-1)!;
    assert.equal(event.rejection, 'mediation_failed');
    assert.match(String(event.reason), /token exchange refused: invalid_request/);
  });

  const delegatedToken = async () => {
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
    const res = await exchange(as, { subject_token: token.access_token, resource: R.gateway, scope: 'banking:read' }, auth.agent);
    assert.equal(res.status, 200, res.text);
    return res.json.access_token as string;
  };
  const eventually401 = async (token: string) => {
    for (let i = 0; i < 60; i++) {
      const res = await mcpPost(`${gateway.url}/revocable`, toolCall('echo'), { authorization: `Bearer ${token}` });
      if (res.status === 401) return res;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.fail('the gateway kept accepting the token');
  };

  it('revocation list: a revoked JWT stops working at the gateway within the poll interval', async () => {
    const token = await delegatedToken();
    assert.equal((await mcpPost(`${gateway.url}/revocable`, toolCall('echo'), { authorization: `Bearer ${token}` })).status, 200);
    const revoked = await postForm(`${as.issuer}/revoke`, { token }, auth.agent);
    assert.equal(revoked.status, 200);
    await eventually401(token);
    const event = (await gateway.auditEvents()).at(-1)!;
    assert.equal(event.reason, 'the token was revoked');
  });

  it('revocation list: disabling the agent cuts off every token whose act chain names it', async () => {
    const token = await delegatedToken();
    assert.equal((await mcpPost(`${gateway.url}/revocable`, toolCall('echo'), { authorization: `Bearer ${token}` })).status, 200);
    const disable = await (await adminAccess(as)).api('PATCH', '/agents/sample-agent', { enabled: false });
    assert.equal(disable.status, 200, disable.text);
    await eventually401(token);
    // The AS also revokes the agent's recorded tokens; either entry of the list refuses it.
    assert.match(String((await gateway.auditEvents()).at(-1)!.reason), /client sample-agent is disabled|the token was revoked/);
  });
});

/**
 * The gateway as a black box, on the Node gateway and on the Worker in workerd (issue 16), in front
 * of Mandate's own authorization server (in this process, loopback): a delegated token (the user's
 * token exchanged by the agent for the gateway's resource), checked with the AS's JWKS; token
 * mediation (RFC 8693), where the gateway exchanges it again for the upstream's audience and joins
 * the `act` chain — the upstream never sees the caller's token; and the AS refusing the exchange.
 * One gateway per target for the whole file.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBlackboxUpstream } from '../../helpers/blackbox-upstream.ts';
import { decodeJwt, postForm } from '../../helpers/auth-server.ts';
import { ACCESS_TOKEN_TYPE, AGENT_REDIRECT, R, SECRETS, auth, exchange, startDelegationServer, userToken } from '../../helpers/delegation-server.ts';
import { listedTools, mcpPost, toolCall } from '../../helpers/gateway.ts';
import { assertRefused, onTarget, startGatewayOn, targets, type TargetGateway } from '../../helpers/gateway-targets.ts';

for (const target of targets) {
  describe(`black box [${target}]: tokens from the Mandate AS, token mediation`, onTarget(target), () => {
    let as: Awaited<ReturnType<typeof startDelegationServer>>;
    let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
    let gateway: TargetGateway;
    let delegated: string;

    before(async () => {
      as = await startDelegationServer();
      upstream = await startBlackboxUpstream();
      // The tokens' audience is R.gateway whatever the gateway's loopback address.
      gateway = await startGatewayOn(
        target,
        () => [
          {
            path: '/mcp',
            upstream: upstream.url,
            resource: R.gateway,
            authorization_servers: [as.issuer],
            tools: { read_balance: { scopes: ['banking:read'] }, transfer: { scopes: ['banking:transfer'] } },
          },
          {
            path: '/mediated',
            upstream: upstream.url,
            resource: R.gateway,
            authorization_servers: [as.issuer],
            tools: listedTools(['echo']),
            // The gateway acts as the `mcp-server` client, which R.gateway tokens name in may_act.
            mediation: { client_id: 'mcp-server', client_secret_env: 'TEST_MCP_SECRET', resource: R.api, scope: 'banking:read' },
          },
          {
            path: '/revocable',
            upstream: upstream.url,
            resource: R.gateway,
            authorization_servers: [as.issuer],
            tools: listedTools(['echo']),
            token: { revocation_list: { client_id: 'mcp-server', client_secret_env: 'TEST_MCP_SECRET', poll_seconds: 1 } },
          },
        ],
        { secrets: { TEST_MCP_SECRET: SECRETS.mcp } },
      );
      const actor = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent, scope: 'banking:read' }, auth.agent);
      const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
      const res = await exchange(as, { subject_token: token.access_token, actor_token: actor.json.access_token as string, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway, scope: 'banking:read' }, auth.agent);
      assert.equal(res.status, 200, res.text);
      delegated = res.json.access_token as string;
    });
    after(async () => {
      await gateway?.stop();
      await upstream?.close();
      await as?.close();
    });

    it('a delegated token from the AS goes through, audited with its act chain', async () => {
      const res = await mcpPost(`${gateway.url}/mcp`, toolCall('read_balance', {}, 201), { authorization: `Bearer ${delegated}` });
      assert.equal(res.status, 200, res.text);
      const event = await gateway.waitForAudit((e) => e.request_id === res.headers.get('x-request-id'));
      assert.equal(event.sub, decodeJwt(delegated).sub);
      assert.deepEqual(event.act, [{ sub: 'sample-agent', client_id: 'sample-agent', sub_profile: 'ai_agent', iss: as.issuer }]);
      assert.equal(event.decision, 'allow');
      assert.equal(upstream.requests.at(-1)!.headers.authorization, undefined, 'no mediation: no token upstream at all');
    });

    it("the agent's own token (aud = the agent): 401, audited with the audience failure", async () => {
      const own = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent, scope: 'banking:read' }, auth.agent);
      const res = await mcpPost(`${gateway.url}/mcp`, toolCall('read_balance'), { authorization: `Bearer ${own.json.access_token}` });
      await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'invalid_token', reason: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
    });

    it('token mediation: the upstream gets a token exchanged for its audience, with the gateway in act, never the caller token', async () => {
      const res = await mcpPost(`${gateway.url}/mediated`, toolCall('echo', {}, 202), { authorization: `Bearer ${delegated}` });
      assert.equal(res.status, 200, res.text);
      const seen = upstream.requests.at(-1)!;
      const forwarded = seen.headers.authorization!.replace(/^Bearer /, '');
      assert.notEqual(forwarded, delegated);
      const claims = decodeJwt(forwarded);
      assert.equal(claims.iss, as.issuer);
      assert.equal(claims.aud, R.api);
      assert.equal(claims.sub, decodeJwt(delegated).sub);
      assert.deepEqual(
        claims.act,
        { sub: 'mcp-server', iss: as.issuer, sub_profile: 'service', client_id: 'mcp-server', act: { sub: 'sample-agent', iss: as.issuer, sub_profile: 'ai_agent', client_id: 'sample-agent' } },
        'the gateway joins the chain as the newest actor (a service over the AI agent)',
      );
      assert.equal(claims.scope, 'banking:read');
      const event = await gateway.waitForAudit((e) => e.request_id === res.headers.get('x-request-id'));
      assert.equal(event.decision, 'allow');
      assert.equal(event.route, '/mediated');
      await mcpPost(`${gateway.url}/mediated`, toolCall('echo', {}, 203), { authorization: `Bearer ${delegated}` });
      assert.equal(upstream.requests.at(-1)!.headers.authorization, seen.headers.authorization, 'the exchanged token is reused until near expiry');
      for (const request of upstream.requests) assert.ok(!JSON.stringify(request.headers).includes(delegated), "the caller's token never reaches the upstream");
    });

    it('revocation list: a token revoked at the AS is refused within the poll interval, audited with the reason', async () => {
      const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
      const exchanged = await exchange(as, { subject_token: token.access_token, resource: R.gateway, scope: 'banking:read' }, auth.agent);
      assert.equal(exchanged.status, 200, exchanged.text);
      const revocable = exchanged.json.access_token as string;
      const call = () => mcpPost(`${gateway.url}/revocable`, toolCall('echo'), { authorization: `Bearer ${revocable}` });
      // The first check starts the feed: 503 until the first list is in, then 200.
      let res = await call();
      for (let i = 0; i < 60 && res.status === 503; i++) {
        await new Promise((r) => setTimeout(r, 100));
        res = await call();
      }
      assert.equal(res.status, 200, res.text);
      assert.equal((await postForm(`${as.issuer}/revoke`, { token: revocable }, auth.agent)).status, 200);
      for (let i = 0; i < 60 && res.status === 200; i++) {
        await new Promise((r) => setTimeout(r, 100));
        res = await call();
      }
      await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'invalid_token', reason: 'the token was revoked' });
    });

    it('the AS refuses the exchange (no may_act names the gateway): 403, nothing forwarded, audited mediation_failed', async () => {
      const count = upstream.requests.length;
      const own = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.gateway, scope: 'banking:read' }, auth.other);
      assert.equal(own.status, 200, own.text);
      const res = await mcpPost(`${gateway.url}/mediated`, toolCall('echo'), { authorization: `Bearer ${own.json.access_token}` });
      await assertRefused(gateway, res, { status: 403, code: -32003, rejection: 'mediation_failed', reason: /^token exchange refused: invalid_request/ });
      assert.equal(upstream.requests.length, count);
    });
  });
}

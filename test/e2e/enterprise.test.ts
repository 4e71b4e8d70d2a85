import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { basic, decodeJwt, freePort, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { userToken } from '../helpers/delegation-server.ts';
import { resourceServer } from '../../src/gateway/resource-server.ts';
import { listedTools, mcpPost, startScriptedUpstream, startTestGateway, toolCall } from '../helpers/gateway.ts';
import { createDpopProof, generateDpopKey, jwkThumbprint } from '../../src/core/dpop.ts';

/**
 * Enterprise-managed authorization (MCP EMA, ID-JAG) with two real Mandate authorization servers:
 * one is the enterprise IdP (the person signs in there, once, in a browser), the other the MCP
 * server's AS (`trusted_idps` names the IdP, found by its RFC 8414 metadata). The client does the
 * chain by raw HTTP: ID token at the IdP → token exchange at the IdP for an ID-JAG with
 * `audience` = the MCP AS issuer (from its metadata) and `resource` = the MCP server → jwt-bearer
 * at the MCP AS with its own credentials → an access token the MCP server accepts. No browser
 * ever reaches the MCP AS: its audit log has no authorization or sign-in event.
 * (WP-E adds the agent SDK doing the same chain.)
 */
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const ID_JAG = 'urn:ietf:params:oauth:token-type:id-jag';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const MCP = 'https://mcp.example.test/mcp';
const CB = 'http://127.0.0.1:7788/cb';
const SECRETS = { idp: 'enterprise-agent-at-idp-secret-0123456789ab', mcp: 'enterprise-agent-at-mcp-secret-0123456789ab' };

describe('enterprise-managed authorization: IdP and MCP AS, both Mandate', () => {
  let idp: TestAuthServer;
  let mcpAs: TestAuthServer;
  let mcpIssuer: string;

  before(async () => {
    process.env.ENTERPRISE_IDP_SECRET = SECRETS.idp;
    process.env.ENTERPRISE_MCP_SECRET = SECRETS.mcp;
    // The MCP AS's issuer is known before either starts: each names the other.
    const mcpPort = await freePort();
    mcpIssuer = `http://127.0.0.1:${mcpPort}`;
    idp = await startTestAuthServer({
      dpop: { enabled: true },
      clients: [
        { client_id: 'agent-at-idp', client_secret_env: 'ENTERPRISE_IDP_SECRET', redirect_uris: [CB], first_party: true, grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE] },
      ],
      id_jag: {
        audiences: [{ audience: mcpIssuer, resources: [MCP], clients: ['agent-at-idp'], client_id: { 'agent-at-idp': 'agent-at-mcp' }, scopes: ['mcp:read', 'mcp:write'], include_email: true }],
      },
    });
    mcpAs = await startTestAuthServer({
      issuer: mcpIssuer,
      dpop: { enabled: true },
      listen: { host: '127.0.0.1', port: mcpPort },
      clients: [{ client_id: 'agent-at-mcp', client_secret_env: 'ENTERPRISE_MCP_SECRET', grant_types: [JWT_BEARER] }],
      // The IdP's keys by discovery (its RFC 8414 metadata), over loopback http in the test.
      // Both servers' demo users are one person: the IdP speaks for example.com, configured users included.
      trusted_idps: [{ issuer: idp.issuer, allow_loopback: true, link: { claims: ['email'], email_domains: ['example.com'], local_users: true } }],
    });
  });
  after(async () => {
    await mcpAs?.close();
    await idp?.close();
  });

  it('the whole chain without a browser at the MCP AS; the MCP server accepts the token; audited on both sides', async () => {
    const mcpStart = Math.floor(Date.now() / 1000) - 1;
    // 1. The person signs in at the IdP (the only browser step): an ID token for the agent.
    const signIn = await userToken(idp, { clientId: 'agent-at-idp', redirectUri: CB, resource: idp.issuer, scope: 'openid email', clientAuth: { authorization: basic('agent-at-idp', SECRETS.idp) }, browser: new FormBrowser(idp.issuer) });
    const idToken = (signIn.token as unknown as { id_token: string }).id_token;
    assert.ok(idToken);

    // 2. The MCP AS, from its metadata: issuer (the ID-JAG audience), token endpoint, the grant profile.
    const metadata = (await (await fetch(`${mcpIssuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.equal(metadata.issuer, mcpIssuer);
    assert.deepEqual(metadata.authorization_grant_profiles_supported, ['urn:ietf:params:oauth:grant-profile:id-jag']);
    assert.ok((metadata.grant_types_supported as string[]).includes(JWT_BEARER));
    const idpMetadata = (await (await fetch(`${idp.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.deepEqual(idpMetadata.identity_chaining_requested_token_types_supported, [ID_JAG]);

    // 3. Token exchange at the IdP: ID token → ID-JAG for the MCP AS and the MCP server.
    const exchanged = await postForm(
      idpMetadata.token_endpoint as string,
      { grant_type: TOKEN_EXCHANGE, requested_token_type: ID_JAG, subject_token: idToken, subject_token_type: ID_TOKEN, audience: metadata.issuer as string, resource: MCP, scope: 'mcp:read' },
      { authorization: basic('agent-at-idp', SECRETS.idp) },
    );
    assert.equal(exchanged.status, 200, exchanged.text);
    assert.equal(exchanged.json.issued_token_type, ID_JAG);
    assert.equal(exchanged.json.token_type, 'N_A');
    const idJag = exchanged.json.access_token as string;
    assert.equal(decodeJwt(idJag).client_id, 'agent-at-mcp');

    // 4. jwt-bearer at the MCP AS, authenticated as the agent's client there.
    const granted = await postForm(metadata.token_endpoint as string, { grant_type: JWT_BEARER, assertion: idJag }, { authorization: basic('agent-at-mcp', SECRETS.mcp) });
    assert.equal(granted.status, 200, granted.text);
    assert.equal(granted.json.token_type, 'Bearer');
    assert.equal(granted.json.scope, 'mcp:read');
    assert.equal(granted.json.refresh_token, undefined);
    const accessToken = granted.json.access_token as string;
    const mcpDemo = (await mcpAs.store.users.findByUsername('demo'))!;
    const claims = decodeJwt(accessToken);
    assert.equal(claims.iss, mcpIssuer);
    assert.equal(claims.aud, MCP);
    assert.equal(claims.sub, mcpDemo.sub, "the MCP AS's own account, linked by email");
    assert.equal(claims.client_id, 'agent-at-mcp');
    assert.equal(claims.idp, idp.issuer);

    // 5. The MCP server (protecting itself as the Todo MCP server does) accepts it.
    const rs = resourceServer({ resource: MCP, issuer: mcpIssuer });
    try {
      const check = await rs.check(`Bearer ${accessToken}`, ['mcp:read']);
      assert.equal(check.ok, true, JSON.stringify(check));
      const more = await rs.check(`Bearer ${accessToken}`, ['mcp:write']);
      assert.equal(more.ok, false);
      assert.equal(!more.ok && more.status, 403);
    } finally {
      rs.close();
    }

    // 6. The ID-JAG is single use.
    const again = await postForm(metadata.token_endpoint as string, { grant_type: JWT_BEARER, assertion: idJag }, { authorization: basic('agent-at-mcp', SECRETS.mcp) });
    assert.equal(again.status, 400);
    assert.equal(again.json.error, 'invalid_grant');

    // 7. Audit: the IdP issued an ID-JAG; the MCP AS saw no authorization, sign-in or consent, only the grant.
    await idp.ctx.audit.flush();
    await mcpAs.ctx.audit.flush();
    const [issuedAtIdp] = await idp.store.audit.list({ type: 'token.issued', limit: 1 });
    assert.equal(issuedAtIdp?.data?.issued_token_type, ID_JAG);
    assert.equal(issuedAtIdp?.data?.audience, mcpIssuer);
    const events = await mcpAs.store.audit.query({ since: mcpStart, limit: 200 });
    const types = new Set(events.map((e) => e.type));
    const interactive = /^(authorize|interaction|login|consent|agreement|par|device|totp)\./;
    for (const type of types) assert.doesNotMatch(type, interactive, `no ${type} at the MCP AS`);
    // ...while the IdP saw the person sign in (the same pattern matches there).
    const idpTypes = (await idp.store.audit.query({ since: mcpStart, limit: 200 })).map((e) => e.type);
    assert.ok(idpTypes.includes('login.succeeded') && idpTypes.includes('authorize.code_issued'), idpTypes.join(' '));
    const issued = events.find((e) => e.type === 'token.issued');
    assert.equal(issued?.data?.profile, 'id-jag');
    assert.equal(issued?.data?.grant_type, JWT_BEARER);
    assert.equal(issued?.data?.idp, idp.issuer);
    assert.ok(types.has('federation.user_linked'));
    assert.ok(types.has('token.jwt_bearer_refused'), 'the replay');
  });

  it('the token from the chain calls a tool through the Mandate gateway; the gateway audit shows the call', async () => {
    const signIn = await userToken(idp, { clientId: 'agent-at-idp', redirectUri: CB, resource: idp.issuer, scope: 'openid email', clientAuth: { authorization: basic('agent-at-idp', SECRETS.idp) } });
    const idToken = (signIn.token as unknown as { id_token: string }).id_token;
    const exchanged = await postForm(`${idp.issuer}/token`, { grant_type: TOKEN_EXCHANGE, requested_token_type: ID_JAG, subject_token: idToken, subject_token_type: ID_TOKEN, audience: mcpIssuer, resource: MCP }, { authorization: basic('agent-at-idp', SECRETS.idp) });
    assert.equal(exchanged.status, 200, exchanged.text);
    const granted = await postForm(`${mcpIssuer}/token`, { grant_type: JWT_BEARER, assertion: exchanged.json.access_token as string }, { authorization: basic('agent-at-mcp', SECRETS.mcp) });
    assert.equal(granted.status, 200, granted.text);
    const upstream = await startScriptedUpstream();
    const gateway = await startTestGateway(() => [{ path: '/mcp', upstream: upstream.url, resource: MCP, authorization_servers: [mcpIssuer], tools: listedTools() }]);
    try {
      const res = await mcpPost(`${gateway.url}/mcp`, toolCall('echo', { from: 'enterprise' }), { authorization: `Bearer ${granted.json.access_token as string}`, 'mcp-protocol-version': '2025-11-25' });
      assert.equal(res.status, 200, res.text);
      assert.match(res.text, /enterprise/);
      assert.equal(upstream.requests.filter((r) => r.body.includes('"tools/call"')).length, 1);
      const mcpDemo = (await mcpAs.store.users.findByUsername('demo'))!;
      const call = (await gateway.auditEvents()).find((e) => e.tool === 'echo');
      assert.ok(call, 'the call is in the gateway audit');
      assert.equal(call.sub, mcpDemo.sub);
      assert.equal(call.client_id, 'agent-at-mcp');
      // Without a token the gateway challenges with its resource metadata (the discovery that leads to the MCP AS).
      const anonymous = await mcpPost(`${gateway.url}/mcp`, toolCall('echo', {}), { 'mcp-protocol-version': '2025-11-25' });
      assert.equal(anonymous.status, 401);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });

  it('with DPoP: one key binds the ID-JAG at the IdP and the access token at the MCP AS', async () => {
    const key = await generateDpopKey();
    const jkt = await jwkThumbprint(key.publicJwk);
    const signIn = await userToken(idp, { clientId: 'agent-at-idp', redirectUri: CB, resource: idp.issuer, scope: 'openid email', clientAuth: { authorization: basic('agent-at-idp', SECRETS.idp) } });
    const idToken = (signIn.token as unknown as { id_token: string }).id_token;
    const exchanged = await postForm(
      `${idp.issuer}/token`,
      { grant_type: TOKEN_EXCHANGE, requested_token_type: ID_JAG, subject_token: idToken, subject_token_type: ID_TOKEN, audience: mcpIssuer, resource: MCP },
      { authorization: basic('agent-at-idp', SECRETS.idp), dpop: await createDpopProof(key, { htm: 'POST', htu: `${idp.issuer}/token` }) },
    );
    assert.equal(exchanged.status, 200, exchanged.text);
    const idJag = exchanged.json.access_token as string;
    assert.deepEqual(decodeJwt(idJag).cnf, { jkt });
    // Stolen on the way, the ID-JAG is useless without the key.
    const thief = await postForm(`${mcpIssuer}/token`, { grant_type: JWT_BEARER, assertion: idJag }, { authorization: basic('agent-at-mcp', SECRETS.mcp), dpop: await createDpopProof(await generateDpopKey(), { htm: 'POST', htu: `${mcpIssuer}/token` }) });
    assert.equal(thief.status, 400);
    assert.equal(thief.json.error, 'invalid_grant');
    const granted = await postForm(`${mcpIssuer}/token`, { grant_type: JWT_BEARER, assertion: idJag }, { authorization: basic('agent-at-mcp', SECRETS.mcp), dpop: await createDpopProof(key, { htm: 'POST', htu: `${mcpIssuer}/token` }) });
    assert.equal(granted.status, 200, granted.text);
    assert.equal(granted.json.token_type, 'DPoP');
    assert.deepEqual(decodeJwt(granted.json.access_token as string).cnf, { jkt });
  });

  it('the MCP AS refuses an ID-JAG the IdP issued for another client of the MCP AS', async () => {
    const signIn = await userToken(idp, { clientId: 'agent-at-idp', redirectUri: CB, resource: idp.issuer, scope: 'openid', clientAuth: { authorization: basic('agent-at-idp', SECRETS.idp) } });
    const idToken = (signIn.token as unknown as { id_token: string }).id_token;
    const exchanged = await postForm(`${idp.issuer}/token`, { grant_type: TOKEN_EXCHANGE, requested_token_type: ID_JAG, subject_token: idToken, subject_token_type: ID_TOKEN, audience: mcpIssuer }, { authorization: basic('agent-at-idp', SECRETS.idp) });
    assert.equal(exchanged.status, 200, exchanged.text);
    // The client_id inside is agent-at-mcp: presented by the IdP client's own id and secret, the MCP AS does not know it.
    const res = await postForm(`${mcpIssuer}/token`, { grant_type: JWT_BEARER, assertion: exchanged.json.access_token as string }, { authorization: basic('agent-at-idp', SECRETS.idp) });
    assert.equal(res.status, 401);
    assert.equal(res.json.error, 'invalid_client');
  });
});

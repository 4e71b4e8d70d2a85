import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { SignJWT, generateKeyPair } from 'jose';
import { adminAccess } from '../helpers/admin.ts';
import { basic, decodeJwt, postForm, registerClient, type TestAuthServer } from '../helpers/auth-server.ts';
import { ACCESS_TOKEN_TYPE, AGENT_REDIRECT, R, TOKEN_EXCHANGE, auth, exchange, startDelegationServer, userToken } from '../helpers/delegation-server.ts';
import { AS_DEFAULTS, asAudit, runCases, type AttackCase, type Outcome } from './runner.ts';

/**
 * Token exchange (RFC 8693 §2.2.2): an unacceptable subject or actor token is `invalid_request`, a
 * refused target `invalid_target`, a widened scope `invalid_scope`. Refusals are audited as
 * `token.exchange_refused` with the cause (may_act, depth, allowed actors...).
 */
describe('security: token exchange', () => {
  let as: TestAuthServer & { adminToken: string };
  let mcpUserToken: string; // aud = MCP server, may_act = mcp-server, scope todo_api:read
  let agentUserToken: string; // aud = agent, may_act = sample-agent
  let agentActor: string; // the agent's own client-credentials token
  let plainToken: string; // no may_act

  before(async () => {
    as = await startDelegationServer(AS_DEFAULTS);
    mcpUserToken = (await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.mcp, scope: 'todo_api:read', clientAuth: auth.agent })).token.access_token;
    agentUserToken = (await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent })).token.access_token;
    plainToken = (await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.deep, scope: 'banking:read', clientAuth: auth.agent })).token.access_token;
    agentActor = (await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent }, auth.agent)).json.access_token as string;
  });
  after(async () => as.close());

  const send = (form: () => Record<string, string>, headers: Record<string, string>) => async (): Promise<Outcome> => {
    const res = await exchange(as, form(), headers);
    return { status: res.status, error: res.json.error as string | undefined };
  };
  const ex = (name: string, form: () => Record<string, string>, headers: Record<string, string>, error: string, auditReason: string | RegExp, status = 400): AttackCase => ({
    name,
    attack: send(form, headers),
    status,
    error,
    auditReason,
  });
  const forged = async (claims: Record<string, unknown>, options: { foreignKey?: boolean; typ?: string } = {}) => {
    const key = await as.ctx.keys.current();
    const signer = options.foreignKey ? (await generateKeyPair('ES256')).privateKey : key.privateKey;
    return new SignJWT({ ...decodeJwt(mcpUserToken), ...claims }).setProtectedHeader({ alg: 'ES256', typ: options.typ ?? 'at+jwt', kid: key.kid }).sign(signer);
  };
  const INVALID_SUBJECT = 'the subject token is invalid, expired or revoked';

  const cases: AttackCase[] = [
    ex('no may_act in the subject token', () => ({ subject_token: plainToken, resource: R.api, scope: 'banking:read' }), auth.mcp, 'invalid_request', 'subject token has no may_act; actor=mcp-server'),
    ex('may_act names another client', () => ({ subject_token: mcpUserToken, resource: R.api }), auth.other, 'invalid_request', 'may_act.sub=mcp-server, actor=other-service'),
    ex('may_act names another client, where may_act is not required', () => ({ subject_token: mcpUserToken, resource: R.identity }), auth.other, 'invalid_request', 'may_act.sub=mcp-server, actor=other-service'),
    ex('an actor not allowed at the target', () => ({ subject_token: mcpUserToken, resource: R.gateway }), auth.mcp, 'invalid_target', `actor mcp-server not allowed for ${R.gateway}`),
    ex('scope widening beyond the subject token', () => ({ subject_token: mcpUserToken, resource: R.api, scope: 'todo_api:read todo_api:write' }), auth.mcp, 'invalid_scope', 'scope todo_api:write is not in the subject token'),
    ex('a scope the target does not offer', () => ({ subject_token: agentUserToken, actor_token: agentActor, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway, scope: 'todo_api:read' }), auth.agent, 'invalid_scope', 'scope todo_api:read is not in the subject token'),
    ex('no scope in common with the target', () => ({ subject_token: mcpUserToken, resource: R.deep }), auth.mcp, 'invalid_scope', 'the subject token has no scope this resource offers'),
    ex('audience widening: an unknown audience', () => ({ subject_token: mcpUserToken, audience: 'https://attacker.test' }), auth.mcp, 'invalid_target', 'target=https://attacker.test'),
    ex('audience widening: two targets', () => ({ subject_token: mcpUserToken, resource: R.api, audience: R.deep }), auth.mcp, 'invalid_target', 'exchange for one resource at a time'),
    ex('audience widening: the authorization server itself', () => ({ subject_token: mcpUserToken, resource: as.issuer }), auth.mcp, 'invalid_target', /^target=http:\/\/127\.0\.0\.1:\d+$/),
    ex('no target', () => ({ subject_token: mcpUserToken }), auth.mcp, 'invalid_request', 'name the target with resource or audience'),
    ex("another party's token as actor token", () => ({ subject_token: agentUserToken, actor_token: agentActor, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }), auth.mcp, 'invalid_request', 'actor token client_id=sample-agent'),
    ex('a user token as actor token', () => ({ subject_token: agentUserToken, actor_token: agentUserToken, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }), auth.agent, 'invalid_request', /^actor token sub=/),
    ex('actor_token without actor_token_type', () => ({ subject_token: agentUserToken, actor_token: agentActor, resource: R.gateway }), auth.agent, 'invalid_request', 'actor_token_type is required with actor_token'),
    ex('actor_token_type without actor_token', () => ({ subject_token: agentUserToken, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }), auth.agent, 'invalid_request', 'actor_token_type without actor_token'),
    ex('an unsupported actor_token_type', () => ({ subject_token: agentUserToken, actor_token: agentActor, actor_token_type: 'urn:ietf:params:oauth:token-type:saml1', resource: R.gateway }), auth.agent, 'invalid_request', 'actor_token_type urn:ietf:params:oauth:token-type:saml1 is not supported'),
    ex('a garbage actor token', () => ({ subject_token: agentUserToken, actor_token: 'garbage', actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }), auth.agent, 'invalid_request', 'the actor token is invalid, expired or revoked'),
    ex('an unsupported subject_token_type', () => ({ subject_token: mcpUserToken, subject_token_type: 'urn:ietf:params:oauth:token-type:saml2', resource: R.api }), auth.mcp, 'invalid_request', 'subject_token_type urn:ietf:params:oauth:token-type:saml2 is not supported'),
    ex('a refresh token type as subject', () => ({ subject_token: mcpUserToken, subject_token_type: 'urn:ietf:params:oauth:token-type:refresh_token', resource: R.api }), auth.mcp, 'invalid_request', 'subject_token_type urn:ietf:params:oauth:token-type:refresh_token is not supported'),
    ex('an ID token that is really an access token', () => ({ subject_token: mcpUserToken, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token', resource: R.api }), auth.mcp, 'invalid_request', 'the subject ID token is invalid, expired, or not issued to this client'),
    ex('an unsupported requested_token_type', () => ({ subject_token: mcpUserToken, requested_token_type: 'urn:ietf:params:oauth:token-type:id_token', resource: R.api }), auth.mcp, 'invalid_request', 'requested_token_type urn:ietf:params:oauth:token-type:id_token is not supported; ask for an access token'),
    ex('a garbage subject token', () => ({ subject_token: 'not-a-token', resource: R.api }), auth.mcp, 'invalid_request', INVALID_SUBJECT),
    {
      name: 'an expired subject token',
      attack: async () => send(() => ({ subject_token: expired, resource: R.api }), auth.mcp)(),
      status: 400,
      error: 'invalid_request',
      auditReason: INVALID_SUBJECT,
    },
    {
      name: 'a subject token signed by a foreign key under our kid',
      attack: async () => send(() => ({ subject_token: foreign, resource: R.api }), auth.mcp)(),
      status: 400,
      error: 'invalid_request',
      auditReason: INVALID_SUBJECT,
    },
    {
      name: 'a subject token with may_act rewritten (signature broken)',
      attack: async () => {
        const [h, , s] = mcpUserToken.split('.');
        const payload = Buffer.from(JSON.stringify({ ...decodeJwt(mcpUserToken), may_act: { sub: 'other-service' } })).toString('base64url');
        return send(() => ({ subject_token: `${h}.${payload}.${s}`, resource: R.api }), auth.other)();
      },
      status: 400,
      error: 'invalid_request',
      auditReason: INVALID_SUBJECT,
    },
    {
      name: 'the chain made too deep',
      attack: async () => {
        const gateway = await exchange(as, { subject_token: agentUserToken, actor_token: agentActor, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }, auth.agent);
        if (gateway.status !== 200) return { status: gateway.status, error: 'setup: gateway exchange' };
        const api = await exchange(as, { subject_token: gateway.json.access_token as string, resource: R.api, scope: 'banking:read' }, auth.mcp);
        if (api.status !== 200) return { status: api.status, error: 'setup: api exchange' };
        return send(() => ({ subject_token: api.json.access_token as string, resource: R.deep }), auth.other)();
      },
      status: 400,
      error: 'invalid_request',
      auditReason: 'depth 3 > 2',
    },
    { name: 'a public client exchanging', attack: send(() => ({ subject_token: mcpUserToken, resource: R.api, client_id: 'nobody-public' }), {}), status: 401, error: 'invalid_client', auditReason: 'unknown client_id' },
    {
      name: 'a client not registered for token exchange',
      attack: async () => send(() => ({ subject_token: mcpUserToken, resource: R.api }), { authorization: basic(codeOnly.client_id, codeOnly.client_secret!) })(),
      status: 400,
      error: 'unauthorized_client',
      auditReason: `the client is not registered for ${TOKEN_EXCHANGE}`,
    },
    {
      // Last: disabling the agent revokes the tokens the other cases use.
      name: 'a disabled actor',
      attack: async () => {
        const admin = await adminAccess(as);
        assert.equal((await admin.api('PATCH', '/agents/sample-agent', { enabled: false })).status, 200);
        try {
          return await send(() => ({ subject_token: agentUserToken, actor_token: agentActor, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway }), auth.agent)();
        } finally {
          assert.equal((await admin.api('PATCH', '/agents/sample-agent', { enabled: true })).status, 200);
        }
      },
      status: 401,
      error: 'invalid_client',
      auditReason: 'client is disabled',
    },
  ];
  let expired: string;
  let foreign: string;
  let codeOnly: { client_id: string; client_secret?: string };
  before(async () => {
    codeOnly = await registerClient(as.issuer, { redirect_uris: ['https://code-only.example/cb'] });
    expired = await forged({ exp: Math.floor(Date.now() / 1000) - 60 });
    foreign = await forged({}, { foreignKey: true });
  });
  runCases(cases, asAudit(() => as));
});

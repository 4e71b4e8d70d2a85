import { after, before, describe } from 'node:test';
import { basic, pkcePair, postForm, type TestAuthServer } from '../helpers/auth-server.ts';
import { LOOPBACK_REDIRECT, SECRETS, WEB_REDIRECT, clientAuth, freshCode, freshTokens, startSuiteServer } from './fixture.ts';
import { asAudit, runCases, type AttackCase, type Outcome } from './runner.ts';

/**
 * The token endpoint (OAuth 2.1 §3.2, §4.1.3, §4.3; RFC 6749 §2.3, §5.2; RFC 7636 §4.6): client
 * authentication with exactly the registered method, and every grant's own checks.
 */
describe('security: token', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startSuiteServer();
  });
  after(async () => as.close());

  const token = async (form: Record<string, string>, headers: Record<string, string> = {}): Promise<Outcome> => {
    const res = await postForm(`${as.issuer}/token`, form, headers);
    return { status: res.status, error: res.json.error as string | undefined };
  };
  const redeem = (extra: Record<string, string>, headers: Record<string, string> = clientAuth.web) => async () => {
    const { code, verifier } = await freshCode(as);
    return token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: WEB_REDIRECT, ...extra }, headers);
  };
  const refresh = (extra: Record<string, string>, headers: Record<string, string> = clientAuth.web) => async () => {
    const { refresh_token } = await freshTokens(as);
    return token({ grant_type: 'refresh_token', refresh_token, ...extra }, headers);
  };
  const cc = { grant_type: 'client_credentials', resource: 'https://mcp.example.test/mcp' };
  const rawBasic = (value: string) => ({ authorization: `Basic ${Buffer.from(value).toString('base64')}` });
  const unsignedAssertion = (sub: string) =>
    `${Buffer.from(JSON.stringify({ alg: 'ES256' })).toString('base64url')}.${Buffer.from(JSON.stringify({ sub, iss: sub, aud: as.issuer })).toString('base64url')}.c2ln`;

  const cases: AttackCase[] = [
    // Grant type.
    { name: 'password grant', attack: () => token({ grant_type: 'password', username: 'demo', password: 'demo' }, clientAuth.web), status: 400, error: 'unsupported_grant_type', auditReason: 'grant_type password is not supported' },
    { name: 'implicit as a grant', attack: () => token({ grant_type: 'implicit' }, clientAuth.web), status: 400, error: 'unsupported_grant_type', auditReason: 'grant_type implicit is not supported' },
    { name: 'no grant_type', attack: () => token({}, clientAuth.web), status: 400, error: 'invalid_request', auditReason: 'parameter grant_type is required' },
    {
      name: 'grant_type repeated',
      attack: async () => {
        const res = await fetch(`${as.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...clientAuth.machine }, body: 'grant_type=client_credentials&grant_type=password' });
        return { status: res.status, error: ((await res.json()) as { error: string }).error };
      },
      status: 400,
      error: 'invalid_request',
      auditReason: 'parameter grant_type is repeated',
    },
    {
      name: 'a JSON body',
      attack: async () => {
        const res = await fetch(`${as.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/json', ...clientAuth.machine }, body: JSON.stringify(cc) });
        return { status: res.status, error: ((await res.json()) as { error: string }).error };
      },
      status: 400,
      error: 'invalid_request',
      auditReason: 'the body must be application/x-www-form-urlencoded',
    },
    { name: 'a grant the client is not registered for', attack: () => token(cc, clientAuth.web), status: 400, error: 'unauthorized_client', auditReason: 'the client is not registered for client_credentials' },
    { name: 'client_credentials asking for openid', attack: () => token({ grant_type: 'client_credentials', resource: as.issuer, scope: 'openid' }, clientAuth.machine), status: 400, error: 'invalid_scope', auditReason: 'openid needs a user; client_credentials has none' },
    { name: 'client_credentials with a relative resource', attack: () => token({ ...cc, resource: '/mcp' }, clientAuth.machine), status: 400, error: 'invalid_target', auditReason: 'resource=/mcp' },
    { name: 'client_credentials for an unknown resource', attack: () => token({ ...cc, resource: 'https://attacker.test' }, clientAuth.machine), status: 400, error: 'invalid_target', auditReason: 'resource=https://attacker.test' },
    {
      name: 'client_credentials for two resources at once',
      attack: async () => {
        const body = new URLSearchParams([['grant_type', 'client_credentials'], ['resource', 'https://mcp.example.test/mcp'], ['resource', 'https://api.example.test']]);
        const res = await fetch(`${as.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...clientAuth.machine }, body });
        return { status: res.status, error: ((await res.json()) as { error: string }).error };
      },
      status: 400,
      error: 'invalid_target',
      auditReason: 'request one resource per token',
    },
    { name: 'client_credentials with a scope the resource lacks', attack: () => token({ ...cc, scope: 'api:read' }, clientAuth.machine), status: 400, error: 'invalid_scope', auditReason: 'scope api:read is not offered by https://mcp.example.test/mcp' },
    // Client authentication (RFC 6749 §2.3): exactly one method, the registered one.
    { name: 'no client authentication', attack: () => token(cc), status: 401, error: 'invalid_client', auditReason: 'client authentication is required' },
    { name: 'wrong secret', attack: () => token(cc, { authorization: basic('machine', 'not-the-secret') }), status: 401, error: 'invalid_client', auditReason: 'wrong client secret' },
    { name: 'the secret of another client', attack: () => token(cc, { authorization: basic('machine', SECRETS.web) }), status: 401, error: 'invalid_client', auditReason: 'wrong client secret' },
    { name: 'unknown client', attack: () => token(cc, { authorization: basic('nobody', 'x') }), status: 401, error: 'invalid_client', auditReason: 'unknown client_id' },
    { name: 'empty secret', attack: () => token(cc, rawBasic('machine:')), status: 401, error: 'invalid_client', auditReason: 'wrong client secret' },
    { name: 'Basic without a colon', attack: () => token(cc, rawBasic('machine')), status: 401, error: 'invalid_client', auditReason: 'malformed Basic credentials' },
    { name: 'Basic with bad percent-encoding', attack: () => token(cc, rawBasic('machine:%zz')), status: 401, error: 'invalid_client', auditReason: 'malformed Basic credentials' },
    { name: 'secret in the body for a Basic client', attack: () => token({ ...cc, client_id: 'machine', client_secret: SECRETS.machine }), status: 401, error: 'invalid_client', auditReason: 'used client_secret_post, registered client_secret_basic' },
    { name: 'Basic for a client_secret_post client', attack: () => token({ grant_type: 'authorization_code', code: 'x' }, { authorization: basic('post', SECRETS.post) }), status: 401, error: 'invalid_client', auditReason: 'used client_secret_basic, registered client_secret_post' },
    { name: 'secret in both header and body', attack: () => token({ ...cc, client_id: 'machine', client_secret: SECRETS.machine }, clientAuth.machine), status: 400, error: 'invalid_request', auditReason: 'use exactly one client authentication method' },
    { name: 'body client_id differs from the Basic one', attack: () => token({ ...cc, client_id: 'web' }, clientAuth.machine), status: 400, error: 'invalid_request', auditReason: 'client_id does not match the authenticated client' },
    { name: 'a confidential client posing as public', attack: () => token({ ...cc, client_id: 'machine' }), status: 401, error: 'invalid_client', auditReason: 'used none, registered client_secret_basic' },
    { name: 'client_assertion of an unknown type', attack: () => token({ ...cc, client_assertion: unsignedAssertion('machine'), client_assertion_type: 'urn:example:saml' }), status: 401, error: 'invalid_client', auditReason: 'unsupported client_assertion_type' },
    {
      name: 'a malformed client_assertion',
      attack: () => token({ ...cc, client_assertion: 'not.a.jwt', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' }),
      status: 401,
      error: 'invalid_client',
      auditReason: 'malformed client assertion',
    },
    {
      name: 'a client_assertion for a secret client',
      attack: () => token({ ...cc, client_assertion: unsignedAssertion('machine'), client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' }),
      status: 401,
      error: 'invalid_client',
      auditReason: 'used private_key_jwt, registered client_secret_basic',
    },
    // Authorization code (OAuth 2.1 §4.1.3, RFC 7636 §4.6).
    { name: 'unknown code', attack: () => token({ grant_type: 'authorization_code', code: 'made-up', code_verifier: pkcePair().verifier, redirect_uri: WEB_REDIRECT }, clientAuth.web), status: 400, error: 'invalid_grant', auditReason: 'unknown code' },
    {
      name: 'code replay',
      attack: async () => {
        const { code, verifier } = await freshCode(as);
        const form = { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: WEB_REDIRECT };
        const first = await token(form, clientAuth.web);
        if (first.status !== 200) return first;
        return token(form, clientAuth.web);
      },
      status: 400,
      error: 'invalid_grant',
      auditReason: /^code replay; grant \S+ revoked$/,
    },
    {
      name: 'a code redeemed by another client',
      attack: async () => {
        const { code, verifier } = await freshCode(as, { client_id: 'spa' });
        return token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: WEB_REDIRECT }, clientAuth.web);
      },
      status: 400,
      error: 'invalid_grant',
      auditReason: 'code of spa',
    },
    { name: 'PKCE verifier mismatch', attack: redeem({ code_verifier: pkcePair().verifier }), status: 400, error: 'invalid_grant', auditReason: 'code_verifier does not match code_challenge' },
    { name: 'PKCE verifier missing', attack: redeem({ code_verifier: '' }), status: 400, error: 'invalid_request', auditReason: 'code_verifier is required' },
    { name: 'PKCE verifier too short', attack: redeem({ code_verifier: 'short' }), status: 400, error: 'invalid_grant', auditReason: 'code_verifier is malformed' },
    { name: 'PKCE: the challenge sent as verifier', attack: redeem({ code_verifier: pkcePair().challenge }), status: 400, error: 'invalid_grant', auditReason: 'code_verifier does not match code_challenge' },
    { name: 'redirect_uri differs from the authorization request', attack: redeem({ redirect_uri: LOOPBACK_REDIRECT }), status: 400, error: 'invalid_grant', auditReason: 'redirect_uri does not match the authorization request' },
    { name: 'resource differs from the authorization request', attack: redeem({ resource: 'https://api.example.test' }), status: 400, error: 'invalid_target', auditReason: 'resource differs from the authorization request' },
    {
      name: 'expired code',
      attack: async () => {
        const { code, verifier } = await freshCode(as);
        await as.store.db.updateTable('authorization_codes').set({ expires_at: 1 }).execute();
        return token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: WEB_REDIRECT }, clientAuth.web);
      },
      status: 400,
      error: 'invalid_grant',
      auditReason: 'the authorization code has expired',
    },
    // Refresh (OAuth 2.1 §4.3, rotation with replay detection).
    { name: 'unknown refresh token', attack: () => token({ grant_type: 'refresh_token', refresh_token: 'made-up' }, clientAuth.web), status: 400, error: 'invalid_grant', auditReason: 'unknown refresh token' },
    { name: 'refresh token of another client', attack: refresh({ client_id: 'post', client_secret: SECRETS.post }, {}), status: 400, error: 'invalid_grant', auditReason: 'token of web' },
    { name: 'refresh widening the scope', attack: refresh({ scope: 'mcp:read mcp:write' }), status: 400, error: 'invalid_scope', auditReason: 'a refresh may only narrow the scope' },
    { name: 'refresh for another resource', attack: refresh({ resource: 'https://api.example.test' }), status: 400, error: 'invalid_target', auditReason: 'the refresh token is bound to another resource' },
    {
      name: 'refresh token replay after the grace window',
      attack: async () => {
        const { refresh_token } = await freshTokens(as);
        const first = await token({ grant_type: 'refresh_token', refresh_token }, clientAuth.web);
        if (first.status !== 200) return first;
        // As if the rotation happened a minute ago: past refresh_reuse_grace (10 s by default).
        await as.store.db.updateTable('refresh_tokens').set({ rotated_at: Math.floor(Date.now() / 1000) - 60 }).where('rotated_at', 'is not', null).execute();
        return token({ grant_type: 'refresh_token', refresh_token }, clientAuth.web);
      },
      status: 400,
      error: 'invalid_grant',
      auditReason: /^refresh token replay; grant \S+ revoked$/,
    },
    {
      name: 'a refresh token after the grant was revoked',
      attack: async () => {
        const { refresh_token } = await freshTokens(as);
        const revoked = await postForm(`${as.issuer}/revoke`, { token: refresh_token }, clientAuth.web);
        if (revoked.status !== 200) return { status: revoked.status, error: 'revoke failed' };
        return token({ grant_type: 'refresh_token', refresh_token }, clientAuth.web);
      },
      status: 400,
      error: 'invalid_grant',
      auditReason: 'the refresh token has been revoked',
    },
  ];
  runCases(cases, asAudit(() => as));
});

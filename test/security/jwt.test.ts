import { after, before, describe } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { createHmac, createPublicKey } from 'node:crypto';
import { mcpPost, startFakeIssuer, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';
import { decodeJwt, type TestAuthServer } from '../helpers/auth-server.ts';
import { freshTokens, startSuiteServer } from './fixture.ts';
import { asAudit, gatewayAudit, oauth, rpc, runCases, type AttackCase } from './runner.ts';

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/**
 * Access tokens (RFC 9068 §4, RFC 8725): forged, altered and misdirected JWTs presented to the
 * gateway, which validates them locally against the issuer's JWKS. Every one is 401 with JSON-RPC
 * -32001 and the jose/validator cause as the audit reason.
 */
describe('security: JWT access tokens', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let resource: string;
  let attacker: CryptoKey;
  let attackerJwk: Record<string, unknown>;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    gateway = await startTestGateway((url) => [
      { path: '/mcp', upstream: upstream.url, resource: `${url}/mcp`, authorization_servers: [issuer.issuer], tools: { echo: {} }, unlisted_tools: 'deny' },
    ]);
    resource = `${gateway.url}/mcp`;
    const pair = await generateKeyPair('ES256', { extractable: true });
    attacker = pair.privateKey;
    attackerJwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1' };
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await issuer.close();
  });

  const now = () => Math.floor(Date.now() / 1000);
  const good = (claims: Record<string, unknown> = {}) => ({ iss: issuer.issuer, sub: 'alice', aud: resource, client_id: 'app', scope: 'mcp', iat: now(), exp: now() + 300, jti: crypto.randomUUID(), ...claims });
  const signed = (claims: Record<string, unknown> = {}, options: { kid?: string; typ?: string; key?: CryptoKey } = {}) => issuer.sign(good(claims), options);
  /** Signs any header the library would refuse to write (crit, jku, none...) with ES256 over WebCrypto. */
  const rawSigned = async (header: Record<string, unknown>, claims: Record<string, unknown> = {}, key?: CryptoKey) => {
    const input = `${b64({ alg: 'ES256', kid: 'k1', typ: 'at+jwt', ...header })}.${b64(good(claims))}`;
    const signature = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key ?? issuer.keys[0]!.privateKey, new TextEncoder().encode(input));
    return `${input}.${Buffer.from(signature).toString('base64url')}`;
  };
  const present = (token: string | Promise<string>, scheme = 'Bearer') => async () =>
    rpc(await mcpPost(resource, toolCall('echo'), { authorization: `${scheme} ${await token}` }));
  const refused = (name: string, token: () => Promise<string> | string, auditReason: string | RegExp): AttackCase => ({
    name,
    attack: async () => present(await token())(),
    status: 401,
    error: -32001,
    auditReason,
    auditKind: 'invalid_token',
  });
  const flip = (token: string, part: number) => {
    const parts = token.split('.');
    const bytes = Buffer.from(parts[part]!, 'base64url');
    bytes[bytes.length - 1]! ^= 1;
    parts[part] = bytes.toString('base64url');
    return parts.join('.');
  };

  const cases: AttackCase[] = [
    { name: 'no token', attack: async () => rpc(await mcpPost(resource, toolCall('echo'))), status: 401, error: -32001, auditReason: 'no Authorization header', auditKind: 'no_token' },
    { name: 'Basic credentials instead of a bearer token', attack: present(b64('alice:pw'), 'Basic'), status: 401, error: -32001, auditReason: 'Authorization is not a Bearer token', auditKind: 'invalid_token' },
    { name: 'an empty bearer token', attack: present('', 'Bearer'), status: 401, error: -32001, auditReason: 'Authorization is not a Bearer token', auditKind: 'invalid_token' },
    refused('alg none', () => `${b64({ alg: 'none', kid: 'k1', typ: 'at+jwt' })}.${b64(good())}.`, 'ERR_JOSE_ALG_NOT_ALLOWED'),
    refused('alg None (case variant)', () => `${b64({ alg: 'None', kid: 'k1', typ: 'at+jwt' })}.${b64(good())}.`, 'ERR_JOSE_ALG_NOT_ALLOWED'),
    refused('HS256 signed with the public key as the secret', () => {
      const pem = createPublicKey({ key: issuer.keys[0]!.jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
      const input = `${b64({ alg: 'HS256', kid: 'k1', typ: 'at+jwt' })}.${b64(good())}`;
      return `${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`;
    }, 'ERR_JOSE_ALG_NOT_ALLOWED'),
    refused('ES384 header on an ES256 key', () => rawSigned({ alg: 'ES384' }), 'ERR_JOSE_ALG_NOT_ALLOWED'),
    refused('RS256 header', () => rawSigned({ alg: 'RS256' }), 'ERR_JOSE_ALG_NOT_ALLOWED'),
    refused('unknown kid', () => rawSigned({ kid: 'k9' }), 'kid=k9'),
    refused('no kid', () => rawSigned({ kid: undefined }), 'kid=undefined'),
    refused("a foreign key under the issuer's kid", () => signed({}, { key: attacker }), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'),
    refused('jku pointing at an attacker JWKS', () => rawSigned({ jku: 'https://attacker.test/jwks' }, {}, attacker), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'),
    refused('x5u pointing at an attacker certificate', () => rawSigned({ x5u: 'https://attacker.test/cert.pem' }, {}, attacker), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'),
    refused('an embedded jwk header with the attacker key', () => rawSigned({ jwk: attackerJwk }, {}, attacker), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'),
    refused('a crit header', () => rawSigned({ crit: ['exp'] }), 'ERR_JOSE_NOT_SUPPORTED'),
    refused('a tampered payload (sub changed)', async () => {
      const [h, , s] = (await signed()).split('.');
      return `${h}.${b64(good({ sub: 'admin' }))}.${s}`;
    }, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'),
    refused('a tampered payload (scope widened)', async () => {
      const [h, , s] = (await signed()).split('.');
      return `${h}.${b64(good({ scope: 'mcp admin' }))}.${s}`;
    }, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'),
    refused('a tampered signature', async () => flip(await signed(), 2), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'),
    refused('the signature stripped', async () => `${(await signed()).split('.').slice(0, 2).join('.')}.`, /^ERR_JWS_(INVALID|SIGNATURE_VERIFICATION_FAILED)$/),
    refused('two segments only', async () => (await signed()).split('.').slice(0, 2).join('.'), 'ERR_JWS_INVALID'),
    refused('four segments', async () => `${await signed()}.e30`, 'ERR_JWS_INVALID'),
    refused('a header that is not JSON', async () => `${b64('not json')}.${b64(good())}.c2ln`, 'ERR_JWS_INVALID'),
    refused('not a JWT at all', () => 'opaque-random-string', 'ERR_JWS_INVALID'),
    refused('an oversized token with a bogus signature', async () => signed({ pad: 'x'.repeat(6000) }, { key: attacker }), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'),
    refused('expired', () => signed({ exp: now() - 3600 }), 'ERR_JWT_EXPIRED'),
    refused('nbf in the future', () => signed({ nbf: now() + 3600 }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'),
    refused('exp as a string', () => signed({ exp: String(now() + 300) }), 'ERR_JWT_EXPIRED'),
    refused('no exp', () => signed({ exp: undefined }), 'no exp'),
    // Refused before any key fetch, by the issuer choice (docs/gateway.md "Several authorization servers").
    { ...refused('another issuer', () => signed({ iss: 'https://attacker.test' }), 'iss "https://attacker.test" is not a trusted issuer of this route'), auditKind: 'unknown_issuer' },
    { ...refused('issuer with a trailing slash', () => signed({ iss: `${issuer.issuer}/` }), /^iss "http:\/\/127\.0\.0\.1:\d+\/" is not a trusted issuer of this route$/), auditKind: 'unknown_issuer' },
    refused('another audience', () => signed({ aud: 'https://other.test/mcp' }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'),
    refused('audience list without this resource', () => signed({ aud: ['https://other.test/mcp', `${resource}/`] }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'),
    refused('no audience', () => signed({ aud: undefined }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'),
    refused('typ JWT (an ID token or other JWT)', () => signed({}, { typ: 'JWT' }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'),
    refused('no typ', () => rawSigned({ typ: undefined }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'),
    refused('no sub', () => signed({ sub: undefined }), 'the token has no sub'),
  ];
  runCases(cases, gatewayAudit(() => gateway));
});

/**
 * The authorization server's own bearer endpoints (`/userinfo`, `/tokeninfo`) verify its access
 * tokens the same way: an ID token, a forged, altered or expired token is `invalid_token`.
 */
describe('security: JWT access tokens at the authorization server', () => {
  let as: TestAuthServer;
  let tokens: { access_token: string; id_token?: string };
  before(async () => {
    as = await startSuiteServer();
    tokens = await freshTokens(as, { resource: undefined, scope: 'openid' });
    if (!tokens.id_token || decodeJwt(tokens.access_token).aud !== as.issuer) throw new Error('setup: an openid sign-in gives an ID token and a token for the AS');
  });
  after(async () => as.close());

  const INVALID = 'the access token is invalid, expired or revoked';
  const present = (path: string, token: () => Promise<string> | string) => async () => oauth(await fetch(`${as.issuer}${path}`, { headers: { authorization: `Bearer ${await token()}` } }));
  const resign = async (claims: Record<string, unknown>, header: Record<string, unknown> = {}) => {
    const key = await as.ctx.keys.current();
    const input = `${b64({ alg: 'ES256', typ: 'at+jwt', kid: key.kid, ...header })}.${b64({ ...decodeJwt(tokens.access_token), ...claims })}`;
    const signature = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key.privateKey, new TextEncoder().encode(input));
    return `${input}.${Buffer.from(signature).toString('base64url')}`;
  };
  const refused = (name: string, path: string, token: () => Promise<string> | string): AttackCase => ({ name, attack: present(path, token), status: 401, error: 'invalid_token', auditReason: INVALID });

  const cases: AttackCase[] = [
    { name: 'userinfo without a token', attack: async () => oauth(await fetch(`${as.issuer}/userinfo`)), status: 401, error: 'invalid_token', auditReason: 'a bearer token is required' },
    refused('an ID token as access token (typ JWT)', '/userinfo', () => tokens.id_token!),
    refused('alg none', '/userinfo', () => `${b64({ alg: 'none', typ: 'at+jwt' })}.${tokens.access_token.split('.')[1]}.`),
    refused('a tampered payload (sub changed)', '/userinfo', () => {
      const [h, , s] = tokens.access_token.split('.');
      return `${h}.${b64({ ...decodeJwt(tokens.access_token), sub: 'someone-else' })}.${s}`;
    }),
    refused('expired', '/tokeninfo', () => resign({ exp: Math.floor(Date.now() / 1000) - 3600 })),
    refused('another issuer', '/tokeninfo', () => resign({ iss: 'https://attacker.test' })),
    refused('a crit header', '/tokeninfo', () => resign({}, { crit: ['exp'] })),
    {
      name: 'a token for another resource at userinfo',
      attack: async () => {
        const other = await freshTokens(as, { scope: 'openid mcp:read' }).catch(() => undefined);
        return other ? present('/userinfo', () => other.access_token)() : { status: 0, error: 'setup' };
      },
      status: 403,
      error: 'insufficient_scope',
      auditReason: 'userinfo needs a token for this server with the openid scope',
    },
  ];
  runCases(cases, asAudit(() => as));
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, decodeJwt, pkcePair, postForm, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { createDpopProof, generateDpopKey, jwkThumbprint, type DpopKey } from '../../src/core/dpop.ts';

/**
 * DPoP at the authorization server (RFC 9449 §5, §6.2, §8, §10), black box: proofs at /token for
 * every grant, each §4.3 check as its own refusal, jti replay, the client and resource policies,
 * code binding (dpop_jkt at /authorize and /par), public clients' bound refresh tokens, bound
 * subject tokens in token exchange, introspection, server nonces and CORS. Every refusal asserts
 * status, error code and the audit event's reason.
 */
const REDIRECT = 'http://127.0.0.1:4000/callback';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const SECRET = 'dpop-conf-secret-0123456789abcdef0123';
const RS_SECRET = 'dpop-rs-secret-0123456789abcdef012345';
const STRICT = 'https://strict.example.test/api';
const ORIGIN = 'http://127.0.0.1:5173';
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

async function lastAudit(as: TestAuthServer, type: string) {
  await as.ctx.audit.flush();
  return (await as.store.audit.list({ type }))[0];
}

const now = () => Math.floor(Date.now() / 1000);

/** A proof built by hand, so each field can be wrong. */
async function forged(key: DpopKey, htu: string, opts: { header?: Record<string, unknown>; claims?: Record<string, unknown>; drop?: string[] } = {}) {
  const claims: Record<string, unknown> = { jti: crypto.randomUUID(), htm: 'POST', htu, iat: now(), ...opts.claims };
  for (const name of opts.drop ?? []) delete claims[name];
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.publicJwk, ...opts.header }).sign(key.privateKey);
}

describe('DPoP at the authorization server (RFC 9449)', () => {
  let as: TestAuthServer;
  let key: DpopKey;
  let other: DpopKey;
  let tokenUrl: string;
  const conf = { authorization: basic('conf', SECRET) };
  const rs = { authorization: basic('rs', RS_SECRET) };
  const proof = (k: DpopKey, extra: { nonce?: string; htu?: string } = {}) => createDpopProof(k, { htm: 'POST', htu: extra.htu ?? tokenUrl, ...(extra.nonce ? { nonce: extra.nonce } : {}) });
  const cc = async (headers: Record<string, string>, form: Record<string, string> = {}) => postForm(tokenUrl, { grant_type: 'client_credentials', resource: as.resource, scope: 'mcp:read', ...form }, { ...conf, ...headers });

  before(async () => {
    process.env.TEST_DPOP_CONF_SECRET = SECRET;
    process.env.TEST_DPOP_RS_SECRET = RS_SECRET;
    as = await startTestAuthServer({
      dpop: { enabled: true },
      cors: { allowed_origins: [ORIGIN] },
      registration: { allowed_scopes: ['mcp:read'] },
      clients: [
        { client_id: 'pub', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'] },
        { client_id: 'conf', client_secret_env: 'TEST_DPOP_CONF_SECRET', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token', 'client_credentials', TOKEN_EXCHANGE, DEVICE_CODE_GRANT] },
        { client_id: 'rs', client_secret_env: 'TEST_DPOP_RS_SECRET', grant_types: [TOKEN_EXCHANGE] },
        { client_id: 'bound', client_secret_env: 'TEST_DPOP_CONF_SECRET', grant_types: ['client_credentials'], dpop_bound_access_tokens: true },
      ] as never,
      resources: [
        { id: 'https://mcp.example.test/mcp', name: 'Test MCP server', scopes: [{ name: 'mcp:read' }], resource_servers: ['rs'], exchange: { require_may_act: false } },
        { id: 'https://api.example.test', name: 'Test API', scopes: [{ name: 'api:read' }], exchange: { require_may_act: false } },
        { id: STRICT, name: 'DPoP only', scopes: [{ name: 'strict:read' }], require_dpop: true },
      ] as never,
    });
    tokenUrl = `${as.issuer}/token`;
    key = await generateDpopKey('ES256');
    other = await generateDpopKey('ES256');
  });
  after(async () => as?.close());

  it('advertises dpop_signing_alg_values_supported (§5.1)', async () => {
    const metadata = (await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.deepEqual(metadata.dpop_signing_alg_values_supported, ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA']);
  });

  it('client_credentials with a proof: token_type DPoP, cnf.jkt, introspection says DPoP (§5, §6.1, §6.2); without one: Bearer', async () => {
    const res = await cc({ dpop: await proof(key) });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.token_type, 'DPoP');
    const jkt = await jwkThumbprint(key.publicJwk);
    assert.deepEqual(decodeJwt(res.json.access_token as string).cnf, { jkt });
    const intro = await postForm(`${as.issuer}/introspect`, { token: res.json.access_token as string }, rs);
    assert.equal(intro.json.active, true, intro.text);
    assert.equal(intro.json.token_type, 'DPoP');
    assert.deepEqual(intro.json.cnf, { jkt });
    const issued = await lastAudit(as, 'token.issued');
    assert.equal(issued?.data?.dpop_jkt, jkt);

    const plain = await cc({});
    assert.equal(plain.json.token_type, 'Bearer');
    assert.equal(decodeJwt(plain.json.access_token as string).cnf, undefined);
  });

  it('refuses each failed §4.3 check with 400 invalid_dpop_proof, audited token.dpop_refused with the check', async () => {
    const pair = await import('jose').then((j) => j.generateKeyPair('ES256', { extractable: true }));
    const privateJwk = await import('jose').then((j) => j.exportJWK(pair.privateKey));
    const cases: { name: string; dpop: () => Promise<string>; reason: RegExp }[] = [
      { name: 'two DPoP headers', dpop: async () => `${await proof(key)}, ${await proof(key)}`, reason: /more than one DPoP header/ },
      { name: 'not a JWT', dpop: async () => 'not-a-jwt', reason: /not a JWT/ },
      ...['jti', 'htm', 'htu', 'iat'].map((claim) => ({ name: `no ${claim}`, dpop: () => forged(key, tokenUrl, { drop: [claim] }), reason: new RegExp(`no ${claim}`) })),
      { name: 'typ JWT', dpop: () => forged(key, tokenUrl, { header: { typ: 'JWT' } }), reason: /typ is not dpop\+jwt/ },
      { name: 'alg not in the list', dpop: async () => forged(await generateDpopKey('ES512'), tokenUrl), reason: /alg ES512 is not accepted/ },
      {
        name: 'alg none',
        dpop: async () => {
          const h = Buffer.from(JSON.stringify({ alg: 'none', typ: 'dpop+jwt', jwk: key.publicJwk })).toString('base64url');
          const b = Buffer.from(JSON.stringify({ jti: 'n', htm: 'POST', htu: tokenUrl, iat: now() })).toString('base64url');
          return `${h}.${b}.AAAA`;
        },
        reason: /alg none is not accepted/,
      },
      { name: 'bad signature', dpop: () => forged({ ...key, privateKey: other.privateKey }, tokenUrl), reason: /signature does not verify/ },
      { name: 'private jwk', dpop: () => forged({ ...key, privateKey: pair.privateKey }, tokenUrl, { header: { jwk: privateJwk } }), reason: /private key members/ },
      { name: 'htm GET', dpop: () => forged(key, tokenUrl, { claims: { htm: 'GET' } }), reason: /htm GET is not POST/ },
      { name: 'htu of /par', dpop: () => forged(key, `${as.issuer}/par`), reason: /htu does not match/ },
      { name: 'htu with a query', dpop: () => forged(key, `${tokenUrl}?a=1`), reason: /query or fragment/ },
      { name: 'iat 301 s ago', dpop: () => forged(key, tokenUrl, { claims: { iat: now() - 301 } }), reason: /iat is outside/ },
      { name: 'iat 301 s ahead', dpop: () => forged(key, tokenUrl, { claims: { iat: now() + 301 } }), reason: /iat is outside/ },
    ];
    for (const c of cases) {
      const res = await cc({ dpop: await c.dpop() });
      assert.equal(res.status, 400, c.name);
      assert.equal(res.json.error, 'invalid_dpop_proof', c.name);
      const event = await lastAudit(as, 'token.dpop_refused');
      assert.match(event?.reason ?? '', c.reason, c.name);
      assert.equal(event?.clientId, 'conf', c.name);
    }
  });

  it('refuses a proof used twice (jti, §11.1)', async () => {
    const once = await proof(key);
    assert.equal((await cc({ dpop: once })).status, 200);
    const again = await cc({ dpop: once });
    assert.equal(again.status, 400);
    assert.equal(again.json.error, 'invalid_dpop_proof');
    assert.match((await lastAudit(as, 'token.dpop_refused'))?.reason ?? '', /jti was used before/);
  });

  it('dpop_bound_access_tokens (static and RFC 7591): no proof → invalid_request', async () => {
    const res = await postForm(tokenUrl, { grant_type: 'client_credentials', resource: as.resource, scope: 'mcp:read' }, { authorization: basic('bound', SECRET) });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_request');
    assert.match((await lastAudit(as, 'token.refused'))?.reason ?? '', /no DPoP proof from a dpop_bound_access_tokens client/);
    const ok = await postForm(tokenUrl, { grant_type: 'client_credentials', resource: as.resource, scope: 'mcp:read' }, { authorization: basic('bound', SECRET), dpop: await proof(key) });
    assert.equal(ok.json.token_type, 'DPoP', ok.text);

    const registered = await registerClient(as.issuer, { redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], dpop_bound_access_tokens: true });
    assert.equal(registered.dpop_bound_access_tokens, true);
    const dyn = await postForm(tokenUrl, { grant_type: 'authorization_code', code: 'any', code_verifier: pkcePair().verifier, client_id: registered.client_id });
    assert.equal(dyn.status, 400);
    assert.equal(dyn.json.error, 'invalid_request');
    const bad = await fetch(`${as.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: [REDIRECT], dpop_bound_access_tokens: 'yes' }) });
    assert.equal(bad.status, 400);
  });

  it('resources[].require_dpop: no proof → invalid_request; with one → a bound token', async () => {
    const res = await cc({}, { resource: STRICT, scope: 'strict:read' });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_request');
    assert.match((await lastAudit(as, 'token.refused'))?.reason ?? '', /require_dpop; no DPoP proof/);
    const ok = await cc({ dpop: await proof(key) }, { resource: STRICT, scope: 'strict:read' });
    assert.equal(ok.json.token_type, 'DPoP', ok.text);
  });

  /** Signs the demo user in and returns the code. */
  async function code(clientId: string, extra: Record<string, string> = {}) {
    const { verifier, challenge } = pkcePair();
    const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: as.resource, scope: 'mcp:read', state: 's', ...extra });
    const back = await new FormBrowser(as.issuer).authorize(`${as.issuer}/authorize?${query}`);
    return { code: back.searchParams.get('code')!, verifier };
  }
  const redeem = (c: { code: string; verifier: string }, headers: Record<string, string>, clientId = 'pub') =>
    postForm(tokenUrl, { grant_type: 'authorization_code', code: c.code, code_verifier: c.verifier, redirect_uri: REDIRECT, ...(clientId === 'pub' ? { client_id: 'pub' } : {}) }, clientId === 'pub' ? headers : { ...conf, ...headers });

  it('dpop_jkt at /authorize binds the code (§10): another key or no proof → invalid_grant, and the code is spent', async () => {
    const jkt = await jwkThumbprint(key.publicJwk);
    const first = await code('pub', { dpop_jkt: jkt });
    const wrong = await redeem(first, { dpop: await proof(other) });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.json.error, 'invalid_grant');
    assert.match((await lastAudit(as, 'token.refused'))?.reason ?? '', /authorization code bound to jkt .*; proof of/);
    const after = await redeem(first, { dpop: await proof(key) });
    assert.equal(after.json.error, 'invalid_grant', 'spent');

    const second = await code('pub', { dpop_jkt: jkt });
    const none = await redeem(second, {});
    assert.equal(none.json.error, 'invalid_grant');
    assert.match((await lastAudit(as, 'token.refused'))?.reason ?? '', /authorization code bound to a DPoP key; no proof/);

    const third = await code('pub', { dpop_jkt: jkt });
    const ok = await redeem(third, { dpop: await proof(key) });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.token_type, 'DPoP');
  });

  it('refuses a malformed dpop_jkt at /authorize with invalid_request', async () => {
    const res = await postForm(`${as.issuer}/par`, { response_type: 'code', client_id: 'pub', redirect_uri: REDIRECT, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: as.resource, scope: 'mcp:read', dpop_jkt: 'short' });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_request');
    assert.match((await lastAudit(as, 'par.refused'))?.reason ?? '', /dpop_jkt must be/);
  });

  it("a public client's refresh token is bound (§5): no proof / another key → invalid_grant; the same key rotates and stays bound", async () => {
    const c = await code('pub');
    const issued = await redeem(c, { dpop: await proof(key) });
    assert.equal(issued.json.token_type, 'DPoP', issued.text);
    const refresh = (token: string, headers: Record<string, string>) => postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: token, client_id: 'pub' }, headers);
    const none = await refresh(issued.json.refresh_token as string, {});
    assert.equal(none.status, 400);
    assert.equal(none.json.error, 'invalid_grant');
    assert.match((await lastAudit(as, 'token.refused'))?.reason ?? '', /refresh token bound to a DPoP key; no proof/);
    const wrong = await refresh(issued.json.refresh_token as string, { dpop: await proof(other) });
    assert.equal(wrong.json.error, 'invalid_grant');
    assert.match((await lastAudit(as, 'token.refused'))?.reason ?? '', /refresh token bound to jkt/);
    const ok = await refresh(issued.json.refresh_token as string, { dpop: await proof(key) });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.token_type, 'DPoP');
    const rotatedWrong = await refresh(ok.json.refresh_token as string, { dpop: await proof(other) });
    assert.equal(rotatedWrong.json.error, 'invalid_grant', 'rotation keeps the binding');
  });

  it("a confidential client's refresh token is not bound: another key, or none, works", async () => {
    const c = await code('conf');
    const issued = await redeem(c, { dpop: await proof(key) }, 'conf');
    assert.equal(issued.json.token_type, 'DPoP', issued.text);
    const viaOther = await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: issued.json.refresh_token as string }, { ...conf, dpop: await proof(other) });
    assert.equal(viaOther.status, 200, viaOther.text);
    assert.deepEqual(decodeJwt(viaOther.json.access_token as string).cnf, { jkt: await jwkThumbprint(other.publicJwk) });
    const plain = await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: viaOther.json.refresh_token as string }, conf);
    assert.equal(plain.json.token_type, 'Bearer', plain.text);
  });

  it('PAR (§10.1): a proof at /par binds the code; a dpop_jkt that differs from the proof → invalid_request', async () => {
    const parUrl = `${as.issuer}/par`;
    const { verifier, challenge } = pkcePair();
    const form = { response_type: 'code', client_id: 'pub', redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: as.resource, scope: 'mcp:read' };
    const mismatch = await postForm(parUrl, { ...form, dpop_jkt: await jwkThumbprint(other.publicJwk) }, { dpop: await proof(key, { htu: parUrl }) });
    assert.equal(mismatch.status, 400);
    assert.equal(mismatch.json.error, 'invalid_request');
    assert.match((await lastAudit(as, 'par.refused'))?.reason ?? '', /dpop_jkt .* proof of/);
    const badProof = await postForm(parUrl, form, { dpop: await proof(key) });
    assert.equal(badProof.json.error, 'invalid_dpop_proof', 'htu of /token at /par');
    assert.match((await lastAudit(as, 'par.dpop_refused'))?.reason ?? '', /htu does not match/);

    const pushed = await postForm(parUrl, form, { dpop: await proof(key, { htu: parUrl }) });
    assert.equal(pushed.status, 201, pushed.text);
    const back = await new FormBrowser(as.issuer).authorize(`${as.issuer}/authorize?client_id=pub&request_uri=${encodeURIComponent(pushed.json.request_uri as string)}`);
    const c = { code: back.searchParams.get('code')!, verifier };
    const wrong = await redeem(c, { dpop: await proof(other) });
    assert.equal(wrong.json.error, 'invalid_grant');

    const again = await postForm(parUrl, form, { dpop: await proof(key, { htu: parUrl }) });
    const back2 = await new FormBrowser(as.issuer).authorize(`${as.issuer}/authorize?client_id=pub&request_uri=${encodeURIComponent(again.json.request_uri as string)}`);
    const ok = await redeem({ code: back2.searchParams.get('code')!, verifier }, { dpop: await proof(key) });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.token_type, 'DPoP');
  });

  it('token exchange: a bound subject token is exchanged by its key holder or its resource server, a stranger → invalid_request', async () => {
    const subject = (await cc({ dpop: await proof(key) })).json.access_token as string;
    const ex = (headers: Record<string, string>) => postForm(tokenUrl, { grant_type: TOKEN_EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, resource: as.resource, scope: 'mcp:read' }, headers);
    const stranger = await ex(conf);
    assert.equal(stranger.status, 400);
    assert.equal(stranger.json.error, 'invalid_request');
    assert.match((await lastAudit(as, 'token.exchange_refused'))?.reason ?? '', /subject token bound to jkt .*; no proof, and conf does not serve its audience/);
    const otherKey = await ex({ ...conf, dpop: await proof(other) });
    assert.equal(otherKey.json.error, 'invalid_request');
    const holder = await ex({ ...conf, dpop: await proof(key) });
    assert.equal(holder.status, 200, holder.text);
    assert.equal(holder.json.token_type, 'DPoP');
    const gateway = await ex(rs);
    assert.equal(gateway.status, 200, gateway.text);
    assert.equal(gateway.json.token_type, 'Bearer');
  });

  it('device code: the polling proof binds the tokens', async () => {
    const started = await postForm(`${as.issuer}/device_authorization`, { resource: as.resource, scope: 'mcp:read' }, conf);
    assert.equal(started.status, 200, started.text);
    const device = started.json as { device_code: string; user_code: string };
    await new FormBrowser(as.issuer).approveDevice(device.user_code);
    const res = await postForm(tokenUrl, { grant_type: DEVICE_CODE_GRANT, device_code: device.device_code }, { ...conf, dpop: await proof(key) });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.token_type, 'DPoP');
    assert.deepEqual(decodeJwt(res.json.access_token as string).cnf, { jkt: await jwkThumbprint(key.publicJwk) });
  });

  it('CORS: browser clients may send DPoP and read DPoP-Nonce', async () => {
    const pre = await fetch(tokenUrl, { method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'dpop, content-type' } });
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /DPoP/);
    const res = await fetch(tokenUrl, { method: 'POST', headers: { origin: ORIGIN, 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' });
    assert.match(res.headers.get('access-control-expose-headers') ?? '', /DPoP-Nonce/);
  });
});

describe('DPoP server nonces at the authorization server (RFC 9449 §8)', () => {
  let as: TestAuthServer;
  let key: DpopKey;
  const conf = { authorization: basic('conf', SECRET) };
  before(async () => {
    process.env.TEST_DPOP_CONF_SECRET = SECRET;
    as = await startTestAuthServer({
      dpop: { enabled: true, require_nonce: true },
      clients: [{ client_id: 'conf', client_secret_env: 'TEST_DPOP_CONF_SECRET', redirect_uris: [REDIRECT], grant_types: ['client_credentials', 'authorization_code'] }] as never,
    });
    key = await generateDpopKey('ES256');
  });
  after(async () => as?.close());

  it('a nonce-less proof → 400 use_dpop_nonce with DPoP-Nonce; the retry with it succeeds and gets the next nonce', async () => {
    const tokenUrl = `${as.issuer}/token`;
    const form = { grant_type: 'client_credentials', resource: as.resource, scope: 'mcp:read' };
    const first = await postForm(tokenUrl, form, { ...conf, dpop: await createDpopProof(key, { htm: 'POST', htu: tokenUrl }) });
    assert.equal(first.status, 400);
    assert.equal(first.json.error, 'use_dpop_nonce');
    const nonce = first.headers.get('dpop-nonce');
    assert.match(nonce ?? '', /^[A-Za-z0-9_-]+$/);
    const event = await lastAudit(as, 'token.dpop_refused');
    assert.equal(event?.error, 'use_dpop_nonce');
    assert.match(event?.reason ?? '', /no server nonce/);

    const retry = await postForm(tokenUrl, form, { ...conf, dpop: await createDpopProof(key, { htm: 'POST', htu: tokenUrl, nonce: nonce! }) });
    assert.equal(retry.status, 200, retry.text);
    assert.equal(retry.json.token_type, 'DPoP');
    assert.ok(retry.headers.get('dpop-nonce'), 'the next nonce on a 200 (§8.2)');

    const stale = await postForm(tokenUrl, form, { ...conf, dpop: await createDpopProof(key, { htm: 'POST', htu: tokenUrl, nonce: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }) });
    assert.equal(stale.status, 400);
    assert.equal(stale.json.error, 'use_dpop_nonce');
    assert.match((await lastAudit(as, 'token.dpop_refused'))?.reason ?? '', /stale or not ours/);

    // Without a proof at all, nonces do not apply: the request is a Bearer request.
    const bearer = await postForm(tokenUrl, form, conf);
    assert.equal(bearer.json.token_type, 'Bearer', bearer.text);
  });

  it('/par asks for the nonce too', async () => {
    const parUrl = `${as.issuer}/par`;
    const form = { response_type: 'code', client_id: 'conf', redirect_uri: REDIRECT, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: as.resource, scope: 'mcp:read' };
    const first = await postForm(parUrl, form, { ...conf, dpop: await createDpopProof(key, { htm: 'POST', htu: parUrl }) });
    assert.equal(first.status, 400);
    assert.equal(first.json.error, 'use_dpop_nonce');
    const retry = await postForm(parUrl, form, { ...conf, dpop: await createDpopProof(key, { htm: 'POST', htu: parUrl, nonce: first.headers.get('dpop-nonce')! }) });
    assert.equal(retry.status, 201, retry.text);
  });
});

describe('DPoP off (the default)', () => {
  let as: TestAuthServer;
  before(async () => {
    process.env.TEST_DPOP_CONF_SECRET = SECRET;
    as = await startTestAuthServer({ clients: [{ client_id: 'conf', client_secret_env: 'TEST_DPOP_CONF_SECRET', grant_types: ['client_credentials'] }] as never });
  });
  after(async () => as?.close());

  it('a DPoP header is ignored and metadata does not advertise DPoP', async () => {
    const key = await generateDpopKey();
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: as.resource, scope: 'mcp:read' }, { authorization: basic('conf', SECRET), dpop: 'garbage' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.token_type, 'Bearer');
    void key;
    const metadata = (await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.equal(metadata.dpop_signing_alg_values_supported, undefined);
  });
});

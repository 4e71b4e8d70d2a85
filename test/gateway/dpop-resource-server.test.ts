/**
 * DPoP in the resource server helper (`resourceServer().check`, RFC 9449 §7), used by MCP servers
 * that protect themselves: the object form checks the proof; the positional form takes Bearer
 * tokens only and still refuses a bound token sent as Bearer. Every refusal: status, the body's
 * error, the challenge exactly, and the rejection (what a server logs).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createDpopProof, generateDpopKey, jwkThumbprint, type DpopKey } from '../../src/core/dpop.ts';
import { resourceServer, type BearerCheck, type ResourceServer } from '../../src/gateway/resource-server.ts';
import { startFakeIssuer } from '../helpers/gateway.ts';

const RESOURCE = 'https://todo.example.test/mcp';
const PRM = 'https://todo.example.test/.well-known/oauth-protected-resource/mcp';
const ALGS = 'ES256 ES384 PS256 RS256 EdDSA';
const body = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}';

function refused(check: BearerCheck, status: number, error: string, rejection: string, challenge: string, reason?: string | RegExp) {
  assert.equal(check.ok, false, JSON.stringify(check));
  if (check.ok) return;
  assert.equal(check.status, status);
  assert.equal(check.body.error, error);
  assert.equal(check.rejection, rejection);
  assert.equal(check.headers['WWW-Authenticate'], challenge);
  if (typeof reason === 'string') assert.equal(check.reason, reason);
  else if (reason) assert.match(String(check.reason), reason);
}

describe('resource server helper: DPoP (RFC 9449 §7)', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let allow: ResourceServer;
  let require: ResourceServer;
  let nonce: ResourceServer;
  let off: ResourceServer;
  let key: DpopKey;
  let jkt: string;

  before(async () => {
    issuer = await startFakeIssuer();
    key = await generateDpopKey();
    jkt = await jwkThumbprint(key.publicJwk);
    const base = { resource: RESOURCE, issuer: issuer.issuer, scopesSupported: ['todo:read', 'todo:write'] };
    allow = resourceServer({ ...base, dpop: { mode: 'allow' } });
    require = resourceServer({ ...base, dpop: { mode: 'require', content_digest: 'require' } });
    nonce = resourceServer({ ...base, dpop: { mode: 'allow', require_nonce: true }, dpopNonceKey: new TextEncoder().encode('a-nonce-key-of-32-characters-or-more') });
    off = resourceServer(base);
  });
  after(async () => {
    for (const rs of [allow, require, nonce, off]) rs?.close();
    await issuer?.close();
  });

  const token = (bound = true, scope = 'todo:read') => issuer.sign({ sub: 'alice', aud: RESOURCE, client_id: 'agent-1', scope, ...(bound ? { cnf: { jkt } } : {}) });
  const request = async (t: string, o: { proof?: string; nonce?: string; withKey?: DpopKey } = {}) => ({
    authorization: `DPoP ${t}`,
    dpop: o.proof ?? (await createDpopProof(o.withKey ?? key, { htm: 'POST', htu: RESOURCE, accessToken: t, nonce: o.nonce, body: new TextEncoder().encode(body) })),
    method: 'POST',
    url: RESOURCE,
    body,
  });
  const dpopChallenge = (error: string, scope = 'todo:read') => `DPoP algs="${ALGS}", resource_metadata="${PRM}", scope="${scope}", error="${error}"`;

  it('publishes the DPoP metadata by mode', () => {
    assert.deepEqual((allow.metadata as Record<string, unknown>).dpop_signing_alg_values_supported, ALGS.split(' '));
    assert.equal((allow.metadata as Record<string, unknown>).dpop_bound_access_tokens_required, undefined);
    assert.equal((require.metadata as Record<string, unknown>).dpop_bound_access_tokens_required, true);
    assert.equal((off.metadata as Record<string, unknown>).dpop_signing_alg_values_supported, undefined);
  });

  it('accepts a bound token with a valid proof, and says so (scheme, jkt)', async () => {
    const check = await allow.check(await request(await token()), ['todo:read']);
    assert.equal(check.ok, true, JSON.stringify(check));
    assert.ok(check.ok);
    assert.equal(check.scheme, 'DPoP');
    assert.equal(check.jkt, jkt);
  });

  it('no credentials: Bearer then DPoP challenge without error; require: DPoP only', async () => {
    refused(await allow.check({ authorization: undefined, method: 'POST', url: RESOURCE }, ['todo:read']), 401, 'invalid_request', 'no_token', `Bearer resource_metadata="${PRM}", scope="todo:read", DPoP algs="${ALGS}", resource_metadata="${PRM}", scope="todo:read"`);
    refused(await require.check(undefined, ['todo:read']), 401, 'invalid_request', 'no_token', `DPoP algs="${ALGS}", resource_metadata="${PRM}", scope="todo:read"`);
  });

  it('a bound token sent as Bearer is refused, also by the positional form and with DPoP off', async () => {
    const t = await token();
    const expected = `Bearer resource_metadata="${PRM}", scope="todo:read", error="invalid_token", error_description="the access token is DPoP-bound: present it with the DPoP scheme and a proof"`;
    refused(await allow.check(`Bearer ${t}`, ['todo:read']), 401, 'invalid_token', 'dpop_downgrade', expected, 'a DPoP-bound access token (cnf.jkt) was presented with the Bearer scheme');
    refused(await off.check(`Bearer ${t}`, ['todo:read']), 401, 'invalid_token', 'dpop_downgrade', expected);
  });

  it('mode require: an unbound Bearer token is refused (dpop_required)', async () => {
    refused(await require.check(`Bearer ${await token(false)}`, ['todo:read']), 401, 'invalid_token', 'dpop_required', `DPoP algs="${ALGS}", resource_metadata="${PRM}", scope="todo:read", error="invalid_token", error_description="this resource requires a DPoP-bound access token"`);
  });

  it('the positional form cannot check a proof: the DPoP scheme is refused there', async () => {
    refused(await allow.check(`DPoP ${await token()}`, ['todo:read']), 401, 'invalid_request', 'invalid_token', `Bearer resource_metadata="${PRM}", scope="todo:read", error="invalid_request"`);
  });

  it('another key than cnf.jkt: invalid_token, dpop_binding_mismatch', async () => {
    const t = await token();
    refused(await allow.check(await request(t, { withKey: await generateDpopKey() }), ['todo:read']), 401, 'invalid_token', 'dpop_binding_mismatch', `${dpopChallenge('invalid_token')}, error_description="the access token is not bound to the key of this proof"`);
  });

  it('a replayed proof: invalid_dpop_proof, dpop_replay', async () => {
    const t = await token();
    const once = await request(t);
    assert.equal((await allow.check(once, ['todo:read'])).ok, true);
    refused(await allow.check(once, ['todo:read']), 401, 'invalid_dpop_proof', 'dpop_replay', `${dpopChallenge('invalid_dpop_proof')}, error_description="the DPoP proof is invalid"`, 'the DPoP proof jti was used before');
  });

  it('content_digest required: a proof over another body is refused', async () => {
    const t = await token();
    const proof = await createDpopProof(key, { htm: 'POST', htu: RESOURCE, accessToken: t, body: new TextEncoder().encode('{}') });
    refused(await require.check({ ...(await request(t)), dpop: proof }, ['todo:read']), 401, 'invalid_dpop_proof', 'invalid_dpop_proof', `${dpopChallenge('invalid_dpop_proof')}, error_description="the DPoP proof is invalid"`, 'the DPoP proof content_digest does not match the body');
  });

  it('require_nonce: use_dpop_nonce with a DPoP-Nonce; the retry with it passes', async () => {
    const t = await token();
    const first = await nonce.check(await request(t), ['todo:read']);
    refused(first, 401, 'use_dpop_nonce', 'use_dpop_nonce', `${dpopChallenge('use_dpop_nonce')}, error_description="use the DPoP nonce this response carries"`, 'the DPoP proof has no server nonce');
    const given = first.ok ? undefined : first.headers['DPoP-Nonce'];
    assert.ok(given);
    assert.equal((await nonce.check(await request(t, { nonce: given }), ['todo:read'])).ok, true);
  });

  it('insufficient scope with a DPoP token: 403 with a DPoP challenge', async () => {
    refused(await allow.check(await request(await token()), ['todo:write']), 403, 'insufficient_scope', 'insufficient_scope', `${dpopChallenge('insufficient_scope', 'todo:write')}, error_description="this needs todo:write"`);
  });

  it('Bearer-only callers are unchanged: an unbound Bearer token passes the positional form', async () => {
    const check = await off.check(`Bearer ${await token(false)}`, ['todo:read']);
    assert.equal(check.ok, true, JSON.stringify(check));
  });
});

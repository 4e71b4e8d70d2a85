import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import {
  createDpopProof,
  DpopError,
  DpopNonces,
  generateDpopKey,
  jwkThumbprint,
  normalizeHtu,
  verifyDpopProof,
  type DpopCheck,
  type DpopKey,
} from '../../src/core/dpop.ts';

const URL_ = 'https://as.example.com/token';
const NOW = 1_800_000_000;
const ALGS = ['ES256', 'RS256', 'EdDSA', 'PS256'];
const b64url = (data: string | Uint8Array) => createHash('sha256').update(data).digest('base64url');

function check(extra: Partial<DpopCheck> = {}): DpopCheck {
  return { method: 'POST', url: URL_, algorithms: ALGS, maxAgeSeconds: 300, now: NOW, ...extra };
}

async function refused(header: string | string[] | undefined, c: DpopCheck, reason: RegExp, code = 'invalid_dpop_proof') {
  await assert.rejects(verifyDpopProof(header, c), (e: unknown) => {
    assert.ok(e instanceof DpopError, String(e));
    assert.equal(e.code, code);
    assert.match(e.reason, reason);
    return true;
  });
}

/** A proof built by hand, so every field can be wrong. */
async function forged(
  key: DpopKey,
  opts: { header?: Record<string, unknown>; claims?: Record<string, unknown>; drop?: string[] } = {},
): Promise<string> {
  const claims: Record<string, unknown> = { jti: crypto.randomUUID(), htm: 'POST', htu: URL_, iat: NOW, ...opts.claims };
  for (const name of opts.drop ?? []) delete claims[name];
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.publicJwk, ...opts.header }).sign(key.privateKey);
}

describe('core DPoP (RFC 9449)', async () => {
  const key = await generateDpopKey('ES256');

  it('a proof made by createDpopProof verifies; jkt is the RFC 7638 thumbprint', async () => {
    const proof = await createDpopProof(key, { htm: 'post', htu: `${URL_}?x=1#f`, iat: NOW });
    const out = await verifyDpopProof(proof, check());
    assert.equal(out.jkt, await jwkThumbprint(key.publicJwk));
    // RFC 7638 by hand: SHA-256 of the required members in lexicographic order.
    const { crv, kty, x, y } = key.publicJwk as Required<Pick<JWK, 'crv' | 'kty' | 'x' | 'y'>>;
    assert.equal(out.jkt, b64url(JSON.stringify({ crv, kty, x, y })));
    assert.equal(out.jwk.d, undefined);
    assert.equal(typeof out.jti, 'string');
  });

  it('works with RSA, RSA-PSS and EdDSA keys', async () => {
    for (const alg of ['RS256', 'PS256', 'EdDSA'] as const) {
      const k = await generateDpopKey(alg);
      const out = await verifyDpopProof(await createDpopProof(k, { htm: 'POST', htu: URL_, iat: NOW }), check());
      assert.equal(out.jkt, await jwkThumbprint(k.publicJwk));
    }
  });

  it('(1) refuses no header and more than one', async () => {
    const proof = await createDpopProof(key, { htm: 'POST', htu: URL_, iat: NOW });
    await refused(undefined, check(), /no DPoP proof/);
    await refused('', check(), /no DPoP proof/);
    await refused([proof, proof], check(), /more than one/);
    await refused(`${proof}, ${proof}`, check(), /more than one/);
  });

  it('(2) refuses what is not a JWT', async () => {
    await refused('not-a-jwt', check(), /not a JWT/);
    await refused('a.b.c', check(), /not a JWT/);
    await refused(`${'A'.repeat(9000)}.b.c`, check(), /too large/);
  });

  it('(3) refuses a proof missing jti, htm, htu or iat', async () => {
    for (const claim of ['jti', 'htm', 'htu', 'iat']) {
      await refused(await forged(key, { drop: [claim] }), check(), new RegExp(`no ${claim}`));
    }
    await refused(await forged(key, { claims: { iat: '1800000000' } }), check(), /no iat/);
  });

  it('(4) refuses another typ', async () => {
    await refused(await forged(key, { header: { typ: 'JWT' } }), check(), /typ/);
    await refused(await forged(key, { header: { typ: undefined } }), check(), /typ/);
  });

  it('(5) refuses none, HMAC and algorithms not in the list', async () => {
    const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'dpop+jwt', jwk: key.publicJwk })).toString('base64url');
    const body = Buffer.from(JSON.stringify({ jti: 'x', htm: 'POST', htu: URL_, iat: NOW })).toString('base64url');
    await refused(`${header}.${body}.`, check(), /not a JWT/);
    await refused(`${header}.${body}.AAAA`, check(), /alg none/);
    const secret = new TextEncoder().encode('0123456789abcdef0123456789abcdef');
    const hs = await new SignJWT({ jti: 'x', htm: 'POST', htu: URL_, iat: NOW })
      .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: Buffer.from(secret).toString('base64url') } as unknown as JWK })
      .sign(secret);
    await refused(hs, check({ algorithms: [...ALGS, 'HS256'] }), /alg HS256/);
    await refused(await createDpopProof(key, { htm: 'POST', htu: URL_, iat: NOW }), check({ algorithms: ['RS256'] }), /alg ES256/);
  });

  it('(6) refuses a bad signature and a signature by another key', async () => {
    const proof = await createDpopProof(key, { htm: 'POST', htu: URL_, iat: NOW });
    const [h, p, s] = proof.split('.');
    const flipped = `${h}.${p}.${s!.slice(0, -2)}${s!.endsWith('AA') ? 'BB' : 'AA'}`;
    await refused(flipped, check(), /signature/);
    const other = await generateDpopKey('ES256');
    await refused(await forged({ ...key, privateKey: other.privateKey }), check(), /signature/);
    await refused(await forged(key, { header: { jwk: undefined } }), check(), /no jwk/);
  });

  it('(7) refuses a jwk with private members', async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    const priv = await exportJWK(pair.privateKey);
    await refused(await forged({ ...key, privateKey: pair.privateKey }, { header: { jwk: priv } }), check(), /private key members/);
  });

  it('(8) refuses another method', async () => {
    await refused(await forged(key, { claims: { htm: 'GET' } }), check(), /htm GET is not POST/);
  });

  it('(9) compares htu after normalisation, without query and fragment', async () => {
    const ok = ['HTTPS://AS.Example.com:443/token', 'https://as.example.com/%74oken', 'https://as.example.com/a/../token'];
    for (const htu of ok) await verifyDpopProof(await forged(key, { claims: { htu } }), check());
    await refused(await forged(key, { claims: { htu: 'https://as.example.com/par' } }), check(), /htu does not match/);
    await refused(await forged(key, { claims: { htu: 'https://as.example.com/token?x=1' } }), check(), /query or fragment/);
    await refused(await forged(key, { claims: { htu: 'https://as.example.com/token#f' } }), check(), /query or fragment/);
    await refused(await forged(key, { claims: { htu: 'https://as.example.com:8443/token' } }), check(), /htu does not match/);
    await refused(await forged(key, { claims: { htu: 'http://as.example.com/token' } }), check(), /htu does not match/);
    await refused(await forged(key, { claims: { htu: 'not a url' } }), check(), /not a URL/);
  });

  it('normalizeHtu', () => {
    assert.equal(normalizeHtu('HTTPS://Example.COM:443'), 'https://example.com/');
    assert.equal(normalizeHtu('http://example.com:80/a?b#c'), 'http://example.com/a');
    assert.equal(normalizeHtu('http://example.com:8080/%7euser/%2f'), 'http://example.com:8080/~user/%2F');
    assert.equal(normalizeHtu('https://example.com/a/./b/../c'), 'https://example.com/a/c');
    assert.throws(() => normalizeHtu('urn:x:y'));
  });

  it('(11) refuses iat outside ±maxAge', async () => {
    await verifyDpopProof(await forged(key, { claims: { iat: NOW - 300 } }), check());
    await verifyDpopProof(await forged(key, { claims: { iat: NOW + 300 } }), check());
    await refused(await forged(key, { claims: { iat: NOW - 301 } }), check(), /iat/);
    await refused(await forged(key, { claims: { iat: NOW + 301 } }), check(), /iat/);
  });

  it('ath: required and equal to SHA-256 of the presented token', async () => {
    const token = 'eyJ.access.token';
    const proof = await createDpopProof(key, { htm: 'POST', htu: URL_, accessToken: token, iat: NOW });
    await verifyDpopProof(proof, check({ accessToken: token }));
    await refused(proof, check({ accessToken: 'another' }), /ath does not match/);
    await refused(await forged(key), check({ accessToken: token }), /no ath/);
    await verifyDpopProof(await forged(key, { claims: { ath: b64url(token) } }), check({ accessToken: token }));
  });

  it('content_digest: verify when present, require, ignore', async () => {
    const body = new TextEncoder().encode('{"jsonrpc":"2.0"}');
    const proof = await createDpopProof(key, { htm: 'POST', htu: URL_, body, iat: NOW });
    await verifyDpopProof(proof, check({ body, contentDigest: 'verify' }));
    await verifyDpopProof(proof, check({ body, contentDigest: 'require' }));
    const expected = `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
    await verifyDpopProof(await forged(key, { claims: { content_digest: expected } }), check({ body, contentDigest: 'require' }));
    const other = new TextEncoder().encode('{"jsonrpc":"2.0","x":1}');
    await refused(proof, check({ body: other, contentDigest: 'verify' }), /content_digest does not match/);
    await verifyDpopProof(proof, check({ body: other, contentDigest: 'ignore' }));
    await verifyDpopProof(await forged(key), check({ body, contentDigest: 'verify' }));
    await refused(await forged(key), check({ body, contentDigest: 'require' }), /no content_digest/);
    await refused(await forged(key, { claims: { content_digest: 'sha-512=:AAAA:' } }), check({ body, contentDigest: 'verify' }), /no sha-256/);
  });

  it('jti single use through the replay hook, keyed by thumbprint and hashed jti; a refused proof burns nothing', async () => {
    const seen = new Map<string, number>();
    const replay = async (k: string, ttl: number) => {
      if (seen.has(k)) return false;
      seen.set(k, ttl);
      return true;
    };
    const proof = await forged(key, { claims: { jti: 'one' } });
    await verifyDpopProof(proof, check({ replay }));
    const [storedKey, ttl] = [...seen][0]!;
    assert.equal(storedKey, `dpop:${await jwkThumbprint(key.publicJwk)}:${b64url('one')}`);
    assert.equal(ttl, 601);
    await refused(proof, check({ replay }), /jti was used before/);
    await refused(await forged(key, { claims: { jti: 'two', htm: 'GET' } }), check({ replay }), /htm/);
    assert.equal(seen.size, 1);
    await assert.rejects(verifyDpopProof(await forged(key), check({ replay: () => Promise.reject(new Error('redis down')) })), /redis down/);
  });

  it('(10) server nonces: missing and stale → use_dpop_nonce; ok within the lifetime, on any instance with the key', async () => {
    const secret = crypto.getRandomValues(new Uint8Array(32));
    const nonces = new DpopNonces(secret, 300);
    const nonce = await nonces.issue(NOW);
    assert.match(nonce, /^[A-Za-z0-9_-]+$/);
    assert.equal(await new DpopNonces(secret, 300).check(nonce, NOW + 300), 'ok');
    assert.equal(await nonces.check(nonce, NOW + 301), 'stale');
    assert.equal(await nonces.check(undefined, NOW), 'missing');
    assert.equal(await new DpopNonces(crypto.getRandomValues(new Uint8Array(32)), 300).check(nonce, NOW), 'stale');
    assert.equal(await nonces.check('garbage!', NOW), 'stale');
    assert.equal(await nonces.check(await nonces.issue(NOW + 3600), NOW), 'stale');

    await refused(await forged(key), check({ nonces }), /no server nonce/, 'use_dpop_nonce');
    await refused(await forged(key, { claims: { nonce: 'abc' } }), check({ nonces }), /stale/, 'use_dpop_nonce');
    await verifyDpopProof(await createDpopProof(key, { htm: 'POST', htu: URL_, nonce, iat: NOW }), check({ nonces }));
    // A bad signature is invalid_dpop_proof even without a nonce: the nonce is checked after the signature.
    await refused(await forged({ ...key, privateKey: (await generateDpopKey()).privateKey }), check({ nonces }), /signature/);
  });
});

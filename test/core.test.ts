import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { assertValidRedirectUri, matchRedirectUri } from '../src/core/redirect-uri.ts';
import { checkCodeChallenge, verifyCodeVerifier } from '../src/core/pkce.ts';
import { base64url, constantTimeEqual, sha256 } from '../src/core/encoding.ts';
import { randomBytes } from 'node:crypto';
import { OAuthError } from '../src/core/errors.ts';
import { VerifiedTokenCache, keyOf } from '../src/core/verified-cache.ts';
import { isPublicAddress } from '../src/auth-server/network-guard.ts';

describe('core', () => {
  it('matches redirect URIs exactly, except the port of a loopback URI (RFC 8252 §7.3)', () => {
    const registered = ['http://127.0.0.1/cb', 'https://app.example/cb?x=1', 'http://localhost:3000/callback'];
    assert.ok(matchRedirectUri('http://127.0.0.1:51234/cb', registered));
    assert.ok(matchRedirectUri('http://localhost:4999/callback', registered));
    assert.ok(matchRedirectUri('https://app.example/cb?x=1', registered));
    assert.ok(!matchRedirectUri('https://app.example/cb?x=2', registered));
    assert.ok(!matchRedirectUri('https://app.example:444/cb?x=1', registered), 'no port flexibility for https');
    assert.ok(!matchRedirectUri('http://127.0.0.1:5000/cb/', registered));
    assert.ok(!matchRedirectUri('http://user@127.0.0.1:5000/cb', registered));
    assert.ok(!matchRedirectUri('HTTPS://APP.EXAMPLE/cb?x=1', ['https://app.example/CB?x=1']));
  });

  it('validates redirect URIs at registration', () => {
    for (const ok of ['https://app.example/cb', 'http://127.0.0.1:8080/cb', 'http://[::1]/cb', 'com.example.app:/oauth']) assertValidRedirectUri(ok);
    for (const bad of ['javascript:alert(1)', 'http://evil.example/cb', 'https://a.example/cb#x', 'myapp:/cb', 'file:///etc/passwd', '/relative']) {
      assert.throws(() => assertValidRedirectUri(bad), (e: OAuthError) => e.code === 'invalid_redirect_uri', bad);
    }
  });

  it('accepts S256 PKCE only and checks the verifier', async () => {
    const verifier = 'a'.repeat(43);
    const challenge = await sha256(verifier);
    assert.equal(checkCodeChallenge(challenge, 'S256'), challenge);
    assert.throws(() => checkCodeChallenge(verifier, 'plain'), { code: 'invalid_request' });
    assert.throws(() => checkCodeChallenge(undefined, 'S256'), { code: 'invalid_request' });
    await verifyCodeVerifier(verifier, challenge);
    await assert.rejects(verifyCodeVerifier('b'.repeat(43), challenge), { code: 'invalid_grant' });
    await assert.rejects(verifyCodeVerifier('short', challenge), { code: 'invalid_grant' });
  });

  it('encodes base64url exactly as Node does, for every length remainder', () => {
    for (let length = 0; length < 70; length++) {
      const bytes = randomBytes(length);
      assert.equal(base64url(bytes), bytes.toString('base64url'), `length ${length}`);
    }
  });

  it('remembers verified tokens until they expire, within a bound', () => {
    const cache = new VerifiedTokenCache<{ exp?: number }>(2);
    cache.set('a', { exp: 100 });
    assert.deepEqual(cache.get('a', 99), { exp: 100 });
    assert.equal(cache.get('a', 100), undefined, 'expired at exp');
    cache.set('b', { exp: 200 });
    cache.set('c', { exp: 200 });
    cache.set('d', { exp: 200 });
    assert.equal(cache.get('b', 1), undefined, 'the oldest went first');
    assert.ok(cache.get('d', 1));
  });

  it('finds a verified token by its signature, but only the very token stored', () => {
    const cache = new VerifiedTokenCache<{ exp?: number; sub?: string }>(10);
    const signature = 'S'.repeat(86);
    const token = `eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.${signature}`;
    cache.set(token, { exp: 100, sub: 'alice' });
    // A new string with the same text (as every request brings it) is found.
    assert.deepEqual(cache.get(`${token.slice(0, 10)}${token.slice(10)}`, 1), { exp: 100, sub: 'alice' });
    // Another payload under the same signature (a forgery) is not, and does not evict the real one.
    const forged = `eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.${signature}`;
    assert.equal(cache.get(forged, 1), undefined);
    assert.deepEqual(cache.get(token, 1), { exp: 100, sub: 'alice' });
    // Tokens without a signature-length last segment are keyed whole (opaque tokens, short tails).
    cache.set('opaque-token-1', { exp: 100 });
    assert.equal(cache.get('opaque-token-2', 1), undefined);
    assert.deepEqual(cache.get('opaque-token-1', 1), { exp: 100 });
    cache.set('a.b', { exp: 100 });
    assert.equal(cache.get('c.b', 1), undefined);
    assert.equal(keyOf(token), signature);
    assert.equal(keyOf('a.b'), 'a.b');
  });

  it('compares secrets in constant time by value', () => {
    assert.ok(constantTimeEqual('abc', 'abc'));
    assert.ok(!constantTimeEqual('abc', 'abd'));
    assert.ok(!constantTimeEqual('abc', 'abcd'));
  });

  it('classifies addresses for the SSRF guard', () => {
    for (const a of ['10.1.2.3', '127.0.0.1', '169.254.169.254', '192.168.0.1', '172.20.0.1', '100.64.0.1', '::1', 'fe80::1', 'fd12::1', '::ffff:10.0.0.1', '0.0.0.0']) {
      assert.equal(isPublicAddress(a), false, a);
    }
    for (const a of ['93.184.216.34', '2606:4700::1111', '8.8.8.8']) assert.equal(isPublicAddress(a), true, a);
  });

  it('keeps src/core runtime-neutral: no node: imports, no HTTP framework or database', () => {
    const dir = 'src/core';
    for (const file of readdirSync(dir)) {
      const text = readFileSync(join(dir, file), 'utf8');
      assert.doesNotMatch(text, /from ['"](node:|hono|kysely|libsql|pg['"])/, file);
    }
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { signingKeyFile } from '../../src/gateway/node/key-file.ts';
import { SigningKeys } from '../../src/gateway/signing-keys.ts';

describe('gateway signing keys kept across restarts (data_dir)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mandate-keys-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('saves public keys only, whole, and reads them back', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const pub = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    const priv = { ...(await exportJWK(privateKey)), kid: 'k2', alg: 'ES256' };
    const file = signingKeyFile(join(dir, 'data'));
    file.save({ 'https://as.example': [pub, priv] });
    const text = readFileSync(file.file, 'utf8');
    assert.ok(!text.includes('"d"'), 'no private member written');
    assert.equal(statSync(join(dir, 'data')).mode & 0o777, 0o700);
    assert.deepEqual(file.load(), { 'https://as.example': [pub] });
  });

  it('starts with none from a missing or unreadable file, and says so for the latter', () => {
    const file = signingKeyFile(join(dir, 'other'));
    const errors: Error[] = [];
    assert.deepEqual(file.load((e) => errors.push(e)), {});
    assert.equal(errors.length, 0, 'a missing file is no error');
    file.save({});
    writeFileSync(file.file, '{ not json');
    assert.deepEqual(file.load((e) => errors.push(e)), {});
    assert.equal(errors.length, 1);
  });

  it('serves the keys it was given before any fetch, and answers 503 for an unknown kid while the JWKS is unreachable', async () => {
    const { publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    const keys = new SigningKeys({ initial: { 'http://127.0.0.1:9/jwks': [jwk] } });
    const unreachable = (() => Promise.reject(new Error('connect ECONNREFUSED'))) as typeof fetch;
    const jwks = keys.jwks('http://127.0.0.1:9/jwks', { jwksUri: 'http://127.0.0.1:9/jwks', refreshMs: 60_000, minRefreshMs: 0, fetch: unreachable });
    try {
      assert.equal((await jwks.byKid('k1'))?.kid, 'k1');
      await assert.rejects(jwks.byKid('unknown'), { code: 'temporarily_unavailable', status: 503 });
      assert.equal(keys.jwks('http://127.0.0.1:9/jwks', { jwksUri: 'http://127.0.0.1:9/jwks', refreshMs: 60_000, minRefreshMs: 0, fetch: unreachable }), jwks, 'the same set for the next build');
    } finally {
      keys.close();
    }
  });
});

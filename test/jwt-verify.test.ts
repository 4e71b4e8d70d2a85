import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CompactSign, generateKeyPair } from 'jose';
import { KeyManager } from '../src/auth-server/keys.ts';
import { signJwt, verifyJwt, type KeySource } from '../src/core/jwt.ts';

/**
 * Our tokens are verified by node:crypto when the key offers it, by jose otherwise. Both paths
 * must accept and refuse exactly the same tokens.
 */
describe('JWT verification: node:crypto fast path and jose agree', () => {
  let dir: string;
  let fast: KeySource;
  let joseOnly: KeySource;
  const issuer = 'https://as.test';
  const now = () => Math.floor(Date.now() / 1000);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mandate-jwt-'));
    const manager = new KeyManager({ dataDir: dir, maxTokenTtl: 900 });
    await manager.init();
    fast = manager;
    joseOnly = {
      current: async () => ({ ...(await manager.current()), verify: undefined, sign: undefined }),
      byKid: async (kid) => {
        const key = await manager.byKid(kid);
        return key && { ...key, verify: undefined, sign: undefined };
      },
    };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const raw = async (header: Record<string, unknown>, payload: Record<string, unknown>, signer?: CryptoKey) => {
    const key = await fast.current();
    return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
      .setProtectedHeader({ alg: 'ES256', kid: key.kid, ...header } as never)
      .sign(signer ?? key.privateKey, header.crit ? { crit: { x: true } } : undefined);
  };
  const claims = (extra: Record<string, unknown> = {}) => ({ iss: issuer, sub: 'u', aud: 'https://api.test', exp: now() + 60, iat: now(), ...extra });

  const outcome = async (keys: KeySource, token: string) => {
    try {
      await verifyJwt(keys, token, { issuer, typ: 'at+jwt', audience: 'https://api.test' });
      return 'ok';
    } catch (error) {
      return (error as { code: string }).code;
    }
  };

  it('accepts a good token and refuses every kind of bad one, the same way on both paths', async () => {
    const { privateKey: foreign } = await generateKeyPair('ES256');
    const good = await signJwt(fast, claims(), 'at+jwt');
    const cases: [string, string, string][] = [
      ['good (node:crypto signed)', good, 'ok'],
      ['good (jose signed)', await signJwt(joseOnly, claims(), 'at+jwt'), 'ok'],
      ['application/at+jwt typ', await raw({ typ: 'application/at+jwt' }, claims()), 'ok'],
      ['AT+JWT typ, any case', await raw({ typ: 'AT+JWT' }, claims()), 'ok'],
      ['wrong typ', await raw({ typ: 'JWT' }, claims()), 'invalid_token'],
      ['no typ', await raw({}, claims()), 'invalid_token'],
      ['crit header', await raw({ typ: 'at+jwt', crit: ['x'], x: 1 }, claims()), 'invalid_token'],
      ['expired', await raw({ typ: 'at+jwt' }, claims({ exp: now() - 60 })), 'invalid_token'],
      ['not yet valid', await raw({ typ: 'at+jwt' }, claims({ nbf: now() + 60 })), 'invalid_token'],
      ['wrong issuer', await raw({ typ: 'at+jwt' }, claims({ iss: 'https://evil.test' })), 'invalid_token'],
      ['wrong audience', await raw({ typ: 'at+jwt' }, claims({ aud: 'https://other.test' })), 'invalid_token'],
      ['audience in a list', await raw({ typ: 'at+jwt' }, claims({ aud: ['https://x.test', 'https://api.test'] })), 'ok'],
      ['foreign key under our kid', await raw({ typ: 'at+jwt' }, claims(), foreign), 'invalid_token'],
      ['tampered payload', `${good.split('.')[0]}.${Buffer.from(JSON.stringify(claims({ sub: 'admin' }))).toString('base64url')}.${good.split('.')[2]}`, 'invalid_token'],
      ['alg none', `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt', kid: (await fast.current()).kid })).toString('base64url')}.${good.split('.')[1]}.`, 'invalid_token'],
      ['garbage', 'a.b.c', 'invalid_token'],
      ['iat not a number', await raw({ typ: 'at+jwt' }, claims({ iat: 'yesterday' })), 'invalid_token'],
    ];
    for (const [name, token, expected] of cases) {
      assert.equal(await outcome(fast, token), expected, `node:crypto path: ${name}`);
      assert.equal(await outcome(joseOnly, token), expected, `jose path: ${name}`);
    }
  });
});

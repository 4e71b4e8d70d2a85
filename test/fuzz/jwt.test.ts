import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { CompactSign, exportJWK, generateKeyPair, type JWK } from 'jose';
import { OAuthError } from '../../src/core/errors.ts';
import { verifyJwt, type VerificationKey, type VerificationKeySource } from '../../src/core/jwt.ts';
import { nodeVerifier } from '../../src/gateway/node/verifier.ts';
import { jwtValidator, type TokenValidator } from '../../src/gateway/token-validator.ts';
import { freePort } from '../helpers/auth-server.ts';
import { counted } from './count.ts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const ISSUER = 'https://as.example.test';
const AUDIENCE = 'https://rs.example.test/mcp';
const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

/**
 * Mandate's JWT verifier (src/core/jwt.ts, both its node:crypto path and the jose path) and the
 * gateway's local validator: random and mutated compact JWTs are never accepted, and every
 * failure is the one OAuth error type (`invalid_token`), never another exception.
 */
describe('fuzz: JWT parser and verifier', () => {
  let privateKey: CryptoKey;
  let otherKey: CryptoKey;
  let jwk: JWK;
  let fast: VerificationKeySource;
  let slow: VerificationKeySource;
  let gateway: TokenValidator;
  let close: () => void;

  before(async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    privateKey = pair.privateKey;
    otherKey = (await generateKeyPair('ES256')).privateKey;
    jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    const key: VerificationKey = { kid: 'k1', alg: 'ES256', publicKey: pair.publicKey };
    fast = { byKid: async (kid) => (kid === 'k1' ? { ...key, verify: nodeVerifier(jwk, 'ES256') } : undefined) };
    slow = { byKid: async (kid) => (kid === 'k1' ? key : undefined) };
    const port = await freePort();
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    gateway = jwtValidator({
      issuer: ISSUER,
      audience: AUDIENCE,
      jwksUri: `http://127.0.0.1:${port}/jwks`,
      metadata: async () => ({}),
      algorithms: ['ES256'],
      typ: 'at+jwt',
      clockSkewSeconds: 5,
      refreshSeconds: 300,
      minRefreshSeconds: 3600,
      cacheEntries: 1000,
      createVerifier: nodeVerifier,
    });
    close = () => {
      gateway.close();
      server.close();
    };
  });
  after(() => close());

  const sign = (header: Record<string, unknown>, payload: Record<string, unknown>, key = privateKey) =>
    new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: 'ES256', ...header } as never).sign(key);
  const goodClaims = () => ({ iss: ISSUER, aud: AUDIENCE, sub: 'alice', iat: now(), exp: now() + 600, jti: 'j' });

  /** Every verifier's answer: the claims, or the OAuth error code. Anything else fails the property. */
  const outcomes = async (token: string) => {
    const answers: (string | Record<string, unknown>)[] = [];
    for (const verify of [
      () => verifyJwt(fast, token, { issuer: ISSUER, audience: AUDIENCE, typ: 'at+jwt' }),
      () => verifyJwt(slow, token, { issuer: ISSUER, audience: AUDIENCE, typ: 'at+jwt' }),
      () => gateway.validate(token),
    ]) {
      try {
        answers.push((await verify()) as Record<string, unknown>);
      } catch (error) {
        assert.ok(error instanceof OAuthError, `not an OAuthError: ${String(error)}`);
        assert.equal(error.code, 'invalid_token');
        answers.push(error.code);
      }
    }
    return answers;
  };
  const allRefused = async (token: string) => assert.deepEqual(await outcomes(token), ['invalid_token', 'invalid_token', 'invalid_token'], token);

  it('arbitrary strings are refused with invalid_token', async () => {
    const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.stringMatching(/^[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*){0,4}$/));
    await fc.assert(fc.asyncProperty(text, counted('jwt: arbitrary strings', allRefused)), { numRuns: RUNS });
  });

  it('three segments of arbitrary JSON are refused unless signed', async () => {
    const json = fc.oneof(fc.jsonValue(), fc.dictionary(fc.constantFrom('alg', 'kid', 'typ', 'crit', 'jku', 'b64', 'iss', 'aud', 'exp', 'nbf', 'sub'), fc.jsonValue()));
    const signature = fc.oneof(fc.constant(''), fc.uint8Array({ maxLength: 80 }).map((bytes) => Buffer.from(bytes).toString('base64url')));
    await fc.assert(
      fc.asyncProperty(json, json, signature, counted('jwt: arbitrary JSON segments', (header: unknown, payload: unknown, sig: string) => allRefused(`${b64(header)}.${b64(payload)}.${sig}`))),
      { numRuns: RUNS },
    );
  });

  it('a mutated valid token is refused, unless the signature bytes are unchanged', async () => {
    const valid = await sign({ kid: 'k1', typ: 'at+jwt' }, goodClaims());
    const mutation = fc.record({ at: fc.nat(valid.length - 1), op: fc.constantFrom('flip', 'delete', 'insert', 'truncate', 'swap'), char: fc.constantFrom(...'AaZz09-_.=+/ ') });
    await fc.assert(
      fc.asyncProperty(
        mutation,
        counted('jwt: mutated tokens', async ({ at, op, char }: { at: number; op: string; char: string }) => {
          const t = valid;
          const mutated =
            op === 'flip' ? t.slice(0, at) + (t[at] === char ? (char === 'A' ? 'B' : 'A') : char) + t.slice(at + 1)
            : op === 'delete' ? t.slice(0, at) + t.slice(at + 1)
            : op === 'insert' ? t.slice(0, at) + char + t.slice(at)
            : op === 'truncate' ? t.slice(0, at)
            : t.split('.').reverse().join('.');
          const answers = await outcomes(mutated);
          if (answers.every((a) => a === 'invalid_token')) return;
          // Accepted: only a base64url spelling of the very same signature may be (its unused low bits).
          const [h, p, s] = mutated.split('.');
          const [vh, vp, vs] = valid.split('.');
          assert.equal(`${h}.${p}`, `${vh}.${vp}`, `accepted a changed header or payload: ${mutated}`);
          assert.deepEqual(Buffer.from(s!, 'base64url'), Buffer.from(vs!, 'base64url'), `accepted another signature: ${mutated}`);
          assert.ok(answers.every((a) => typeof a === 'object'), 'the verifiers agree');
        }),
      ),
      { numRuns: RUNS },
    );
  });

  it('validly signed tokens are accepted exactly when header and claims are right', async () => {
    let accepted = 0;
    // Mostly right, so that accepted tokens are common and each wrong value is tried on its own.
    const mostly = <T,>(right: T, ...wrong: T[]) => fc.oneof({ arbitrary: fc.constant(right), weight: 6 }, { arbitrary: fc.constantFrom(...wrong), weight: 1 });
    const claims = fc.record({
      iss: mostly<unknown>(ISSUER, `${ISSUER}/`, 'https://attacker.test', undefined, 1),
      aud: mostly<unknown>(AUDIENCE, [AUDIENCE, 'https://x.test'], ['https://x.test'], `${AUDIENCE}/`, undefined, ''),
      exp: mostly<unknown>(600, -600, undefined, 'string'),
      nbf: mostly<unknown>(undefined, -600, 600, 'string'),
      typ: mostly<string | undefined>('at+jwt', 'application/at+jwt', 'AT+JWT', 'JWT', 'jwt', undefined, ''),
      alg: mostly('ES256', 'ES384', 'HS256', 'none', 'es256'),
      kid: mostly<string | undefined>('k1', 'k2', undefined),
      crit: mostly<string[] | undefined>(undefined, ['exp']),
      key: mostly('ours', 'other'),
    });
    await fc.assert(
      fc.asyncProperty(
        claims,
        counted('jwt: signed claim combinations', async (c: { iss: unknown; aud: unknown; exp: unknown; nbf: unknown; typ?: string; alg: string; kid?: string; crit?: string[]; key: string }) => {
          const time = (v: unknown) => (typeof v === 'number' ? now() + v : v);
          const payload = { ...goodClaims(), iss: c.iss, aud: c.aud, exp: time(c.exp), nbf: time(c.nbf) };
          const header = { kid: c.kid, typ: c.typ, crit: c.crit };
          // Sign with ES256 whatever alg the header claims: a mismatch must be refused.
          const input = `${b64({ ...header, alg: c.alg })}.${b64(payload)}`;
          const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, c.key === 'ours' ? privateKey : otherKey, new TextEncoder().encode(input));
          const token = `${input}.${Buffer.from(sig).toString('base64url')}`;
          const typ = (c.typ ?? '').toLowerCase().replace(/^application\//, '');
          const audiences = Array.isArray(c.aud) ? c.aud : [c.aud];
          const ok =
            c.alg === 'ES256' && c.kid === 'k1' && c.key === 'ours' && c.crit === undefined && typ === 'at+jwt' && c.iss === ISSUER && audiences.includes(AUDIENCE) &&
            (c.exp === undefined || (typeof c.exp === 'number' && c.exp > 0)) && (c.nbf === undefined || (typeof c.nbf === 'number' && c.nbf < 0));
          // RFC 9068 §2.2: the gateway also needs exp.
          const okAtGateway = ok && c.exp !== undefined;
          const answers = await outcomes(token);
          if (ok) accepted++;
          assert.deepEqual(
            answers.map((a) => typeof a === 'object'),
            [ok, ok, okAtGateway],
            `${JSON.stringify(c)} → ${JSON.stringify(answers)}`,
          );
        }),
      ),
      { numRuns: RUNS },
    );
    assert.ok(accepted > RUNS / 10, `the generator reaches valid tokens (${accepted} of ${RUNS})`);
  });
});

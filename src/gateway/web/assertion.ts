import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { randomId } from './seal.ts';

/** The `typ` of the gateway's identity assertions: an app must not take another JWT for one. */
export const IDENTITY_ASSERTION_TYP = 'mandate-id+jwt';

/** Claims copied from the person's ID token / userinfo into the assertion, when present. */
const FORWARDED_CLAIMS = ['name', 'given_name', 'family_name', 'preferred_username', 'email', 'email_verified', 'auth_time', 'acr', 'amr', 'roles', 'groups'];

/**
 * The key that signs identity assertions for the apps behind web routes (ES256). Its public half
 * is served as a JWKS; `keyFile` (Node) keeps the private key across restarts, otherwise a new key
 * is made at each start (apps refetch the JWKS on an unknown `kid`).
 */
export class IdentitySigner {
  private constructor(
    private readonly privateKey: CryptoKey,
    private readonly publicJwk: JWK,
  ) {}

  /** From a saved private JWK, or a new key (`onNew` may save it). */
  static async create(options: { saved?: JWK; onNew?: (jwk: JWK) => void } = {}): Promise<IdentitySigner> {
    if (options.saved) {
      try {
        const privateKey = (await importJWK(options.saved, 'ES256')) as CryptoKey;
        const { d: _d, ...publicPart } = options.saved;
        return new IdentitySigner(privateKey, await publicJwk(publicPart));
      } catch {
        // An unreadable key is replaced below.
      }
    }
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const pub = await publicJwk(await exportJWK(publicKey));
    options.onNew?.({ ...(await exportJWK(privateKey)), kid: pub.kid, alg: 'ES256', use: 'sig' });
    return new IdentitySigner(privateKey, pub);
  }

  /**
   * From a configured private JWK only (the edge: `MANDATE_WEB_IDENTITY_KEY`), never a new key: an
   * unusable one throws, so each isolate cannot end up signing with a key of its own.
   */
  static async fromKey(jwk: JWK): Promise<IdentitySigner> {
    if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string') {
      throw new Error('not an EC P-256 private key (a JWK with kty EC, crv P-256, x, y and d)');
    }
    const privateKey = (await importJWK({ ...jwk, alg: 'ES256' }, 'ES256')) as CryptoKey;
    const { d: _d, ...publicPart } = jwk;
    return new IdentitySigner(privateKey, await publicJwk(publicPart));
  }

  jwks(): { keys: JWK[] } {
    return { keys: [this.publicJwk] };
  }

  /** A short-lived assertion of who is signed in, for one request to one app (`aud`). */
  async assert(session: { sub: string; claims: Record<string, unknown> }, options: { issuer: string; audience: string; ttlSeconds: number }): Promise<string> {
    const extra: Record<string, unknown> = {};
    for (const name of FORWARDED_CLAIMS) if (session.claims[name] !== undefined) extra[name] = session.claims[name];
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT(extra)
      .setProtectedHeader({ alg: 'ES256', typ: IDENTITY_ASSERTION_TYP, kid: this.publicJwk.kid })
      .setIssuer(options.issuer)
      .setAudience(options.audience)
      .setSubject(session.sub)
      .setIssuedAt(now)
      .setExpirationTime(now + options.ttlSeconds)
      .setJti(randomId(16))
      .sign(this.privateKey);
  }
}

/** A new private signing key, as a JWK (to be shared or saved). */
export async function newIdentityKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  return { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig' };
}

async function publicJwk(jwk: JWK): Promise<JWK> {
  const { kty, crv, x, y } = jwk;
  const base = { kty, crv, x, y } as JWK;
  return { ...base, kid: await calculateJwkThumbprint(base), alg: 'ES256', use: 'sig' };
}

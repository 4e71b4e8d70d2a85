import { CompactSign, jwtVerify, type JWK, type JWTPayload } from 'jose';
import { OAuthError } from './errors.ts';
import { base64url } from './encoding.ts';

/** RFC 9068 §2.1: JWT access tokens carry `typ: at+jwt`. */
export const ACCESS_TOKEN_TYP = 'at+jwt';
export const SIGNING_ALG = 'ES256';

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
  /**
   * A faster signer for this runtime, if there is one: the raw ES256 signature (r || s, RFC 7518
   * §3.4) of the JWS signing input. Without it, jose signs through WebCrypto.
   */
  sign?: (signingInput: Uint8Array) => Promise<Uint8Array>;
}

/** Where signing and verification keys come from; the Node key manager implements it over a file. */
export interface KeySource {
  /** The key that signs now. */
  current(): Promise<SigningKey>;
  /** A key that may verify, by `kid` (published, possibly retired or not yet signing). */
  byKid(kid: string): Promise<SigningKey | undefined>;
}

/** Claims of a Mandate access token (RFC 9068 §2.2, RFC 8693 §4). */
export interface AccessTokenClaims extends JWTPayload {
  iss: string;
  sub: string;
  aud: string;
  exp: number;
  iat: number;
  jti: string;
  client_id: string;
  scope?: string;
  auth_time?: number;
  acr?: string;
  sid?: string;
  act?: Record<string, unknown>;
  may_act?: Record<string, unknown>;
}

const encoder = new TextEncoder();

/** Signs a JWT with the current key. `typ` is `at+jwt` for access tokens, `JWT` otherwise. */
export async function signJwt(keys: KeySource, payload: Record<string, unknown>, typ: string): Promise<string> {
  const key = await keys.current();
  const header = { alg: SIGNING_ALG, typ, kid: key.kid };
  if (!key.sign) {
    return new CompactSign(encoder.encode(JSON.stringify(payload))).setProtectedHeader(header).sign(key.privateKey);
  }
  // JWS Compact Serialization (RFC 7515 §7.1): BASE64URL(header) . BASE64URL(payload) . BASE64URL(signature)
  const signingInput = `${base64url(encoder.encode(JSON.stringify(header)))}.${base64url(encoder.encode(JSON.stringify(payload)))}`;
  return `${signingInput}.${base64url(await key.sign(encoder.encode(signingInput)))}`;
}

export interface VerifyOptions {
  issuer: string;
  /** Expected `typ` header; tokens of another type are rejected (RFC 9068 §4, RFC 8725 §3.11). */
  typ?: string;
  audience?: string;
  clockToleranceSeconds?: number;
}

/** Verifies a JWT issued by this server. Any failure becomes `invalid_token` with the cause as reason. */
export async function verifyJwt<T extends JWTPayload = AccessTokenClaims>(
  keys: KeySource,
  token: string,
  options: VerifyOptions,
): Promise<T> {
  try {
    const { payload } = await jwtVerify(
      token,
      async (header) => {
        const key = header.kid ? await keys.byKid(header.kid) : undefined;
        if (!key) throw new OAuthError('invalid_token', 'unknown signing key', { reason: `kid=${header.kid}` });
        return key.publicKey;
      },
      {
        issuer: options.issuer,
        audience: options.audience,
        typ: options.typ,
        algorithms: [SIGNING_ALG],
        clockTolerance: options.clockToleranceSeconds ?? 5,
      },
    );
    return payload as T;
  } catch (error) {
    if (error instanceof OAuthError) throw error;
    const code = (error as { code?: string }).code ?? 'ERR_JWT_INVALID';
    throw new OAuthError('invalid_token', 'the token is invalid or expired', { reason: code });
  }
}

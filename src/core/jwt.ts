import { CompactSign, jwtVerify, type JWK, type JWTPayload } from 'jose';
import { OAuthError } from './errors.ts';
import { base64url } from './encoding.ts';

/** RFC 9068 §2.1: JWT access tokens carry `typ: at+jwt`. */
export const ACCESS_TOKEN_TYP = 'at+jwt';
export const SIGNING_ALG = 'ES256';

/** A key that verifies signatures: one of ours, or one from another issuer's JWKS. */
export interface VerificationKey {
  kid: string;
  /** The JWS algorithm the key is for (RFC 7518); ES256 when absent. */
  alg?: string;
  publicKey: CryptoKey;
  /** A faster verifier for this runtime, if there is one (for ES*, an r || s signature). */
  verify?: (signingInput: Uint8Array, signature: Uint8Array) => Promise<boolean>;
}

export interface SigningKey extends VerificationKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
  /**
   * A faster signer for this runtime, if there is one: the raw ES256 signature (r || s, RFC 7518
   * §3.4) of the JWS signing input. Without it, jose signs through WebCrypto.
   */
  sign?: (signingInput: Uint8Array) => Promise<Uint8Array>;
}

/** Where verification keys come from, by `kid`. */
export interface VerificationKeySource {
  byKid(kid: string): Promise<VerificationKey | undefined>;
}

/** Where signing and verification keys come from; the Node key manager implements it over a file. */
export interface KeySource extends VerificationKeySource {
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
  /** Algorithms accepted (never `none`, never HMAC: keys are public); ES256 when absent. */
  algorithms?: string[];
}

/** Verifies a JWT against a key source. Any failure becomes `invalid_token` with the cause as reason. */
export async function verifyJwt<T extends JWTPayload = AccessTokenClaims>(
  keys: VerificationKeySource,
  token: string,
  options: VerifyOptions,
): Promise<T> {
  try {
    const fast = await verifyWithRuntimeKey(keys, token, options);
    if (fast) return fast as T;
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
        algorithms: options.algorithms ?? [SIGNING_ALG],
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

const invalid = (reason: string) => new OAuthError('invalid_token', 'the token is invalid or expired', { reason });

function decodeSegment(segment: string): Uint8Array {
  const binary = atob(segment.replace(/-/g, '+').replace(/_/g, '/'));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const json = (segment: string) => JSON.parse(decoder.decode(decodeSegment(segment))) as Record<string, unknown>;

/**
 * Our own tokens, verified by the runtime's verifier (node:crypto: ~3× cheaper than WebCrypto)
 * with the same checks jose makes for them: the key's own algorithm, if allowed, no `crit`, `typ`, signature, `iss`,
 * `aud`, `exp` and `nbf` with the clock tolerance. Undefined when the key has no such verifier
 * (jose then does it all).
 */
async function verifyWithRuntimeKey(keys: VerificationKeySource, token: string, options: VerifyOptions): Promise<JWTPayload | undefined> {
  const parts = token.split('.');
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[0]! + parts[1]! + parts[2]!)) throw invalid('ERR_JWS_INVALID');
  let header: Record<string, unknown>;
  try {
    header = json(parts[0]!);
  } catch {
    throw invalid('ERR_JWS_INVALID');
  }
  const key = typeof header.kid === 'string' ? await keys.byKid(header.kid) : undefined;
  if (!key?.verify) return undefined;
  const algorithms = options.algorithms ?? [SIGNING_ALG];
  if (typeof header.alg !== 'string' || !algorithms.includes(header.alg) || header.alg !== (key.alg ?? SIGNING_ALG)) throw invalid('ERR_JOSE_ALG_NOT_ALLOWED');
  if (header.crit !== undefined) throw invalid('ERR_JOSE_NOT_SUPPORTED');
  // RFC 7515 §4.1.9: media types compare case-insensitively, "application/" may be omitted.
  const normalizeTyp = (value: string) => value.toLowerCase().replace(/^application\//, '');
  if (options.typ !== undefined && (typeof header.typ !== 'string' || normalizeTyp(header.typ) !== normalizeTyp(options.typ))) {
    throw invalid('ERR_JWT_CLAIM_VALIDATION_FAILED');
  }
  if (!(await key.verify(encoder.encode(`${parts[0]}.${parts[1]}`), decodeSegment(parts[2]!)))) throw invalid('ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
  let payload: Record<string, unknown>;
  try {
    payload = json(parts[1]!);
  } catch {
    throw invalid('ERR_JWT_INVALID');
  }
  const now = Math.floor(Date.now() / 1000);
  const tolerance = options.clockToleranceSeconds ?? 5;
  if (payload.iss !== options.issuer) throw invalid('ERR_JWT_CLAIM_VALIDATION_FAILED');
  if (options.audience !== undefined) {
    const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (!aud.includes(options.audience)) throw invalid('ERR_JWT_CLAIM_VALIDATION_FAILED');
  }
  if (payload.exp !== undefined && (typeof payload.exp !== 'number' || payload.exp <= now - tolerance)) throw invalid('ERR_JWT_EXPIRED');
  if (payload.nbf !== undefined && (typeof payload.nbf !== 'number' || payload.nbf > now + tolerance)) throw invalid('ERR_JWT_CLAIM_VALIDATION_FAILED');
  if (payload.iat !== undefined && typeof payload.iat !== 'number') throw invalid('ERR_JWT_CLAIM_VALIDATION_FAILED');
  return payload as JWTPayload;
}

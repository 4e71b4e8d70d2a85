/**
 * DPoP (RFC 9449): proofs, their checks (§4.3) and stateless server nonces (§8, §9), shared by the
 * authorization server, the gateway, the resource server helper and the agent. Runtime-neutral:
 * jose and WebCrypto only (no `node:` imports, no Buffer).
 */
import { calculateJwkThumbprint, compactVerify, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { base64url, constantTimeEqual, randomToken, sha256 } from './encoding.ts';

/** Proof algorithms this implementation can verify (asymmetric only: never `none`, never HMAC). */
export const DPOP_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA'] as const;

/** The error codes a refused proof is answered with (RFC 9449 §5, §7.1, §8, §9). */
export type DpopFailure = 'invalid_dpop_proof' | 'use_dpop_nonce';

/** A refused proof: `code` goes to the client, `reason` (the failed check) to the audit log only. */
export class DpopError extends Error {
  readonly code: DpopFailure;
  readonly reason: string;
  constructor(code: DpopFailure, reason: string) {
    super(`${code}: ${reason}`);
    this.name = 'DpopError';
    this.code = code;
    this.reason = reason;
  }
}

/** What a proof is checked against. */
export interface DpopCheck {
  /** The request method (`htm`). */
  method: string;
  /** Our idea of the target URL (`htu`): the configured public URL, not the Host header. */
  url: string;
  /** At a resource: the access token presented, for `ath`. */
  accessToken?: string;
  /** Algorithms accepted. */
  algorithms: readonly string[];
  /** Largest |now − iat| (RFC 9449 §11.1). */
  maxAgeSeconds: number;
  /** Epoch seconds. */
  now: number;
  /** Server nonces in force (RFC 9449 §8, §9). */
  nonces?: DpopNonces;
  /**
   * `jti` single use (§11.1): resolves false when the key was seen (set-if-absent); keyed
   * `dpop:<jkt>:<sha256(jti)>`. A rejection (store unreachable) propagates as is: the caller fails
   * closed (503), it is not a DpopError.
   */
  replay?: (key: string, ttlSeconds: number) => Promise<boolean>;
  /** The raw request body, for the MCP profile's `content_digest` (SEP-1932). */
  body?: Uint8Array;
  contentDigest?: 'ignore' | 'verify' | 'require';
}

/** A proof that passed: its key's thumbprint (RFC 7638), the public key, and its `jti`. */
export interface VerifiedDpopProof {
  jkt: string;
  jwk: JWK;
  jti: string;
}

/** A key to sign proofs with. */
export interface DpopKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
  alg: string;
}

/** The header's media type (RFC 9449 §4.2). */
export const DPOP_TYP = 'dpop+jwt';

/** JWK members that only a private (or symmetric) key has (RFC 7517/7518): refused in a proof (§4.3 (7)). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const;

/** A proof is a few hundred bytes; anything this large is refused before parsing. */
const MAX_PROOF_LENGTH = 8192;

const ACCEPTED: ReadonlySet<string> = new Set(DPOP_ALGORITHMS);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function refuse(reason: string): never {
  throw new DpopError('invalid_dpop_proof', reason);
}

/** `ath` (RFC 9449 §4.2): base64url(SHA-256(ASCII access token)). */
export function accessTokenHash(accessToken: string): Promise<string> {
  return sha256(accessToken);
}

/** `content_digest` (SEP-1932, RFC 9530 syntax): `sha-256=:<base64 SHA-256 of the body>:`. */
export async function contentDigest(body: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', body as Uint8Array<ArrayBuffer>));
  let binary = '';
  for (const byte of digest) binary += String.fromCharCode(byte);
  return `sha-256=:${btoa(binary)}:`;
}

/**
 * Checks the `DPoP` header(s) of a request: RFC 9449 §4.3 (1)–(11), `ath` when a token is
 * presented, `content_digest` per the check's policy, then `jti` single use (§11.1) — last, so a
 * refused proof does not burn its `jti`. Throws DpopError; a replay store failure propagates.
 */
export async function verifyDpopProof(header: string | string[] | undefined, check: DpopCheck): Promise<VerifiedDpopProof> {
  // (1) exactly one DPoP header. fetch's Headers joins repeats with ", ": a compact JWS has no comma.
  if (header === undefined || (Array.isArray(header) && header.length === 0)) refuse('no DPoP proof');
  if (Array.isArray(header) && header.length > 1) refuse('more than one DPoP header');
  const proof = (Array.isArray(header) ? header[0]! : header).trim();
  if (proof.includes(',')) refuse('more than one DPoP header');
  if (proof === '') refuse('no DPoP proof');
  if (proof.length > MAX_PROOF_LENGTH) refuse('the DPoP proof is too large');

  // (2) a well-formed JWT.
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(proof)) refuse('the DPoP proof is not a JWT');
  let protectedHeader: ReturnType<typeof decodeProtectedHeader>;
  try {
    protectedHeader = decodeProtectedHeader(proof);
  } catch {
    refuse('the DPoP proof is not a JWT');
  }

  // (4) typ.
  if (protectedHeader.typ !== DPOP_TYP) refuse(`the DPoP proof typ is not ${DPOP_TYP}`);
  // (5) an asymmetric algorithm we accept (never none, never HMAC).
  const alg = protectedHeader.alg;
  if (typeof alg !== 'string' || !ACCEPTED.has(alg) || !check.algorithms.includes(alg)) refuse(`the DPoP proof alg ${String(alg)} is not accepted`);
  // (7) jwk: a public key, no private members.
  const jwk = protectedHeader.jwk as Record<string, unknown> | undefined;
  if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) refuse('the DPoP proof has no jwk header');
  if (PRIVATE_MEMBERS.some((m) => m in jwk)) refuse('the DPoP proof jwk has private key members');
  if (jwk.kty === 'oct') refuse('the DPoP proof jwk is a symmetric key');

  // (6) the signature verifies with that key.
  let payloadBytes: Uint8Array;
  try {
    const key = await importJWK({ ...(jwk as JWK), ext: true }, alg);
    if (key instanceof Uint8Array || key.type !== 'public') refuse('the DPoP proof jwk is not a public key');
    ({ payload: payloadBytes } = await compactVerify(proof, key, { algorithms: [alg] }));
  } catch (error) {
    if (error instanceof DpopError) throw error;
    refuse('the DPoP proof signature does not verify with its jwk');
  }
  let claims: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(decoder.decode(payloadBytes));
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
    claims = parsed as Record<string, unknown>;
  } catch {
    refuse('the DPoP proof payload is not a JSON object');
  }

  // (3) the required claims.
  const { jti, htm, htu, iat } = claims;
  if (typeof jti !== 'string' || jti === '') refuse('the DPoP proof has no jti');
  if (jti.length > 256) refuse('the DPoP proof jti is too long');
  if (typeof htm !== 'string' || htm === '') refuse('the DPoP proof has no htm');
  if (typeof htu !== 'string' || htu === '') refuse('the DPoP proof has no htu');
  if (typeof iat !== 'number' || !Number.isFinite(iat)) refuse('the DPoP proof has no iat');

  // (8) htm.
  if (htm !== check.method.toUpperCase()) refuse(`the DPoP proof htm ${htm} is not ${check.method.toUpperCase()}`);
  // (9) htu: the target URI without query and fragment, after RFC 3986 §6.2.2/§6.2.3 normalisation.
  if (/[?#]/.test(htu)) refuse('the DPoP proof htu has a query or fragment');
  let claimed: string;
  try {
    claimed = normalizeHtu(htu);
  } catch {
    refuse('the DPoP proof htu is not a URL');
  }
  if (claimed !== normalizeHtu(check.url)) refuse('the DPoP proof htu does not match the request URL');

  // (10) a server nonce when nonces are in force (§8, §9; §11.3: no nonce once one was demanded).
  if (check.nonces) {
    const nonce = claims.nonce;
    const state = await check.nonces.check(typeof nonce === 'string' ? nonce : undefined, check.now);
    if (state === 'missing') throw new DpopError('use_dpop_nonce', 'the DPoP proof has no server nonce');
    if (state === 'stale') throw new DpopError('use_dpop_nonce', 'the DPoP proof nonce is stale or not ours');
  }

  // (11) iat within the window (§11.1).
  if (Math.abs(check.now - iat) > check.maxAgeSeconds) refuse('the DPoP proof iat is outside the acceptable window');

  // (12, the token half) ath: the proof is for this access token.
  if (check.accessToken !== undefined) {
    if (typeof claims.ath !== 'string') refuse('the DPoP proof has no ath');
    if (!constantTimeEqual(claims.ath, await accessTokenHash(check.accessToken))) refuse('the DPoP proof ath does not match the access token');
  }

  // SEP-1932 content_digest over the raw body.
  const digestPolicy = check.contentDigest ?? 'ignore';
  if (digestPolicy !== 'ignore') {
    const claimedDigest = claims.content_digest;
    if (claimedDigest === undefined) {
      if (digestPolicy === 'require') refuse('the DPoP proof has no content_digest');
    } else {
      if (typeof claimedDigest !== 'string') refuse('the DPoP proof content_digest is not a string');
      const sha = claimedDigest
        .split(',')
        .map((m) => m.trim())
        .find((m) => m.toLowerCase().startsWith('sha-256='));
      if (sha === undefined) refuse('the DPoP proof content_digest has no sha-256 member');
      const expected = await contentDigest(check.body ?? new Uint8Array());
      if (!constantTimeEqual(`sha-256=${sha.slice('sha-256='.length)}`, expected)) refuse('the DPoP proof content_digest does not match the body');
    }
  }

  const jkt = await jwkThumbprint(jwk as JWK);
  // §11.1: jti single use within the window a proof is acceptable in (iat ± maxAge).
  if (check.replay) {
    const fresh = await check.replay(`dpop:${jkt}:${await sha256(jti)}`, 2 * check.maxAgeSeconds + 1);
    if (!fresh) refuse('the DPoP proof jti was used before');
  }
  return { jkt, jwk: publicJwkOf(jwk as JWK), jti };
}

/** The public members of a JWK (what goes into a proof header or a `cnf`). */
function publicJwkOf(jwk: JWK): JWK {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(jwk)) {
    if (!(PRIVATE_MEMBERS as readonly string[]).includes(name) && name !== 'ext' && name !== 'key_ops') out[name] = value;
  }
  return out as JWK;
}

/**
 * Signs a proof for one request (RFC 9449 §4.2): fresh `jti`, `iat` now, `htu` without query or
 * fragment, `ath` for a token, `nonce` when the server gave one, `content_digest` when a body is given
 * (SEP-1932: proofs to an MCP server, not to a token endpoint).
 */
export async function createDpopProof(
  key: DpopKey,
  p: { htm: string; htu: string; accessToken?: string; nonce?: string; body?: Uint8Array; iat?: number; jti?: string },
): Promise<string> {
  const claims: Record<string, unknown> = { jti: p.jti ?? randomToken(16), htm: p.htm.toUpperCase(), htu: stripQuery(p.htu) };
  if (p.accessToken !== undefined) claims.ath = await accessTokenHash(p.accessToken);
  if (p.nonce !== undefined) claims.nonce = p.nonce;
  if (p.body !== undefined) claims.content_digest = await contentDigest(p.body);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, typ: DPOP_TYP, jwk: publicJwkOf(key.publicJwk) })
    .setIssuedAt(p.iat ?? Math.floor(Date.now() / 1000))
    .sign(key.privateKey);
}

/** A fresh key pair for proofs; the private key is extractable so a caller can persist it. */
export async function generateDpopKey(alg: 'ES256' | 'ES384' | 'EdDSA' | 'PS256' | 'RS256' = 'ES256'): Promise<DpopKey> {
  const pair = await generateKeyPair(alg, { extractable: true });
  return { privateKey: pair.privateKey, publicJwk: await exportJWK(pair.publicKey), alg };
}

/** The RFC 7638 SHA-256 thumbprint of a public JWK, base64url: `cnf.jkt` (RFC 9449 §6.1). */
export function jwkThumbprint(jwk: JWK): Promise<string> {
  return calculateJwkThumbprint(jwk, 'sha256');
}

function stripQuery(url: string): string {
  const cut = url.search(/[?#]/);
  return cut === -1 ? url : url.slice(0, cut);
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * `htu` as compared (RFC 9449 §4.3 (9)): RFC 3986 §6.2.2 (lower-case scheme and host, upper-case
 * percent-encodings, unreserved characters decoded, dot segments removed) and §6.2.3 (no default
 * port, empty path → '/'), without query or fragment. Throws TypeError on a string that is no URL.
 */
export function normalizeHtu(url: string): string {
  const parsed = new URL(url);
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new TypeError('htu must be an http(s) URL');
  const path = (parsed.pathname === '' ? '/' : parsed.pathname).replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`;
  });
  const auth = parsed.username !== '' ? `${parsed.username}${parsed.password !== '' ? `:${parsed.password}` : ''}@` : '';
  return `${parsed.protocol}//${auth}${parsed.host}${path}`;
}

/** A server nonce's issue time, 8 bytes big-endian (seconds), then HMAC-SHA256(key, those 8 bytes). */
const TIME_BYTES = 8;
const MAC_BYTES = 32;

function timeBytes(t: number): Uint8Array {
  const out = new Uint8Array(TIME_BYTES);
  new DataView(out.buffer).setBigUint64(0, BigInt(Math.max(0, Math.floor(t))));
  return out;
}

function fromBase64url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  try {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4));
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  } catch {
    return undefined;
  }
}

/**
 * Stateless server nonces: base64url(t ‖ HMAC-SHA256(key, t)), t the issue time, valid for
 * `lifetimeSeconds`; every instance holding the key accepts them. The syntax is base64url, a subset
 * of NQCHAR (RFC 9449 §8.1). A nonce dated more than 60 s ahead is refused as not ours.
 */
export class DpopNonces {
  readonly lifetimeSeconds: number;
  readonly #key: Promise<CryptoKey>;
  constructor(key: Uint8Array, lifetimeSeconds: number) {
    if (key.length < 16) throw new Error('a DPoP nonce key needs at least 16 bytes');
    this.lifetimeSeconds = lifetimeSeconds;
    this.#key = crypto.subtle.importKey('raw', key as Uint8Array<ArrayBuffer>, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  }

  async issue(now: number): Promise<string> {
    const t = timeBytes(now);
    const mac = new Uint8Array(await crypto.subtle.sign('HMAC', await this.#key, t as Uint8Array<ArrayBuffer>));
    const out = new Uint8Array(TIME_BYTES + MAC_BYTES);
    out.set(t);
    out.set(mac, TIME_BYTES);
    return base64url(out);
  }

  async check(nonce: string | undefined, now: number): Promise<'ok' | 'missing' | 'stale'> {
    if (nonce === undefined || nonce === '') return 'missing';
    const bytes = nonce.length <= 64 ? fromBase64url(nonce) : undefined;
    if (!bytes || bytes.length !== TIME_BYTES + MAC_BYTES) return 'stale';
    const t = bytes.slice(0, TIME_BYTES);
    const valid = await crypto.subtle.verify('HMAC', await this.#key, bytes.slice(TIME_BYTES) as Uint8Array<ArrayBuffer>, t as Uint8Array<ArrayBuffer>);
    if (!valid) return 'stale';
    const issued = Number(new DataView(t.buffer).getBigUint64(0));
    if (issued > now + 60 || now - issued > this.lifetimeSeconds) return 'stale';
    return 'ok';
  }
}

/** Encodes text for the nonce key when it comes from an environment variable. */
export function nonceKeyFromText(text: string): Uint8Array {
  return encoder.encode(text);
}

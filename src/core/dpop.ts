/**
 * DPoP (RFC 9449): proofs, their checks (§4.3) and stateless server nonces (§8, §9), shared by the
 * authorization server, the gateway, the resource server helper and the agent. Runtime-neutral:
 * jose and WebCrypto only.
 *
 * Issue 17, WP0: the signatures the work packages code against. `jwkThumbprint` works; the rest is
 * WP-B's and throws until it lands (nothing calls it yet).
 */
import { calculateJwkThumbprint, type JWK } from 'jose';

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
  /** `jti` single use (§11.1): false when the key was seen; keyed `dpop:<jkt>:<sha256(jti)>`. */
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

/** Checks the `DPoP` header(s) of a request (RFC 9449 §4.3 (1)–(11), and `ath`); throws DpopError. */
export async function verifyDpopProof(_header: string | string[] | undefined, _check: DpopCheck): Promise<VerifiedDpopProof> {
  throw new Error('not implemented (issue 17, WP-B)');
}

/** Signs a proof for one request (RFC 9449 §4.2). */
export async function createDpopProof(_key: DpopKey, _p: { htm: string; htu: string; accessToken?: string; nonce?: string; body?: Uint8Array }): Promise<string> {
  throw new Error('not implemented (issue 17, WP-B)');
}

/** The RFC 7638 SHA-256 thumbprint of a public JWK, base64url: `cnf.jkt` (RFC 9449 §6.1). */
export function jwkThumbprint(jwk: JWK): Promise<string> {
  return calculateJwkThumbprint(jwk, 'sha256');
}

/** `htu` as compared (RFC 9449 §4.3 (9)): lower-case scheme and host, no default port, no query or fragment, '' → '/'. */
export function normalizeHtu(_url: string): string {
  throw new Error('not implemented (issue 17, WP-B)');
}

/**
 * Stateless server nonces: base64url(t ‖ HMAC-SHA256(key, t)), t the issue time, valid for
 * `lifetimeSeconds`; every instance holding the key accepts them.
 */
export class DpopNonces {
  constructor(_key: Uint8Array, _lifetimeSeconds: number) {}
  async issue(_now: number): Promise<string> {
    throw new Error('not implemented (issue 17, WP-B)');
  }
  async check(_nonce: string | undefined, _now: number): Promise<'ok' | 'missing' | 'stale'> {
    throw new Error('not implemented (issue 17, WP-B)');
  }
}

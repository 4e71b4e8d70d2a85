/**
 * Caches shared by every instance of a gateway (issue 16): verified tokens, and the authorization
 * server's key set. The Node gateway is one process and needs neither (its memory is shared by all
 * its requests); a Worker runs in many short-lived isolates, and these let a cold isolate skip a
 * signature check or a JWKS fetch that another isolate already did. Workers implementations:
 * `workers/verified-tokens.ts` (KV) and `workers/key-set-cache.ts` (the Cache API).
 *
 * A shared cache is never a reason to refuse or to accept: a read that fails is a miss, a write that
 * fails is dropped, and an entry read back is checked again (`exp`, `nbf`, issuer, audience) before
 * it stands for a verification.
 */
import type { JWK } from 'jose';
import { sha256 } from '../core/encoding.ts';

/** Verified tokens by key (`verifiedTokenKey`), with their claims as verified. */
export interface SharedVerificationCache {
  /** Entries live at most this long, whatever the token's remaining life (seconds). */
  readonly maxTtlSeconds: number;
  /** Tokens with less life left than this are not stored (KV: 60, its least `expirationTtl`). */
  readonly minTtlSeconds: number;
  /** The claims stored under `key`, or undefined; may reject (the caller then verifies). */
  get(key: string): Promise<unknown>;
  /** Stores `claims` under `key` for `ttlSeconds`; may reject (the caller drops the error). */
  put(key: string, claims: Record<string, unknown>, ttlSeconds: number): Promise<void>;
}

/**
 * The key of a verified token: base64url(SHA-256) of (issuer, audience, token), never the token
 * itself, so whoever reads the store learns no usable credential. The issuer and audience are in the
 * hash so that two routes (or gateways) sharing a namespace never take each other's verifications.
 */
export function verifiedTokenKey(issuer: string, audience: string, token: string): Promise<string> {
  return sha256(JSON.stringify(['mandate-verified-token/1', issuer, audience, token]));
}

/** An authorization server's public keys as last fetched, and when (ms since the epoch). */
export interface StoredKeySet {
  keys: JWK[];
  fetchedAt: number;
}

/** Key sets by source (a JWKS URL, or the issuer when the URL is discovered). */
export interface KeySetCache {
  /** The set stored for `source` and not yet expired, or undefined; may reject (the caller then fetches). */
  get(source: string): Promise<StoredKeySet | undefined>;
  /** Stores the set for `ttlSeconds`; may reject (the caller drops the error). */
  put(source: string, set: StoredKeySet, ttlSeconds: number): Promise<void>;
}

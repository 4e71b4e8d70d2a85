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

/** What a verified-token entry is bound to: the route's whole check, and the token. */
export interface VerifiedTokenKeyParts {
  issuer: string;
  audience: string;
  typ: string | null;
  algorithms: string[];
  token: string;
}

/**
 * Verified tokens by key, with their claims as verified. The store is writable by others (KV: any
 * API token or Worker with edit rights on the namespace), so an implementation must authenticate
 * both: the key is a MAC (never the token, never computable without the Worker's secret) over the
 * route's check and the token, and `get` returns only a value whose MAC verifies for that key
 * (`workers/verified-tokens.ts`, keyed by `MANDATE_EDGE_CACHE_KEY`).
 */
export interface SharedVerificationCache {
  /** Entries live at most this long, whatever the token's remaining life (seconds). */
  readonly maxTtlSeconds: number;
  /** Tokens with less life left than this are not stored (KV: 60, its least `expirationTtl`). */
  readonly minTtlSeconds: number;
  /** The entry's key for this route's check and this token (keyed: two routes differing in issuer, audience, typ or algorithms never share one). */
  key(parts: VerifiedTokenKeyParts): Promise<string>;
  /** The claims stored under `key`, if their MAC verifies, or undefined; may reject (the caller then verifies). */
  get(key: string): Promise<unknown>;
  /** Stores `claims` under `key` for `ttlSeconds`; may reject (the caller drops the error). */
  put(key: string, claims: Record<string, unknown>, ttlSeconds: number): Promise<void>;
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

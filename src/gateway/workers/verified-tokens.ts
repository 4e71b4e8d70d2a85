/**
 * The verified-token cache in Workers KV (the `VERIFIED_TOKENS` binding, issue 16): a token one
 * isolate has verified is taken by every other isolate without a signature check, until its entry
 * expires. Entries are authenticated with `MANDATE_EDGE_CACHE_KEY` (edge-cache-key.ts), a secret only
 * this Worker has, since whoever has edit rights on the namespace can write to it: the key is
 * base64url(HMAC-SHA-256(secret, [version, issuer, audience, typ, algorithms, token])) — never the
 * token, and not computable without the secret — and the value `{ claims, mac }` whose MAC covers the
 * key and the claims' JSON, so a planted or altered value is a miss. The entry's `expirationTtl` the least of the token's
 * remaining life and `maxTtlSeconds` (`VERIFIED_TOKENS_MAX_TTL_SECONDS`, default 300). KV keeps
 * nothing for less than 60 s, so tokens with less life left are not stored.
 *
 * KV is a cache here, never an authority: a read or write that fails is logged and is a miss (the
 * token is verified), and what is read is checked again by the validator (`exp`, `nbf`, issuer,
 * audience). KV is eventually consistent (a write is seen elsewhere within about 60 s) and an entry
 * may outlive the AS key that signed its token by up to `maxTtlSeconds` (docs/edge.md).
 */
import type { SharedVerificationCache } from '../verification-cache.ts';
import type { EdgeCacheMac } from './edge-cache-key.ts';

/** The version of the key and value format (a new one makes every old entry a miss). */
const VERSION = 'mandate-verified-token/2';

/** KV refuses an `expirationTtl` below 60 seconds. */
export const KV_MIN_TTL_SECONDS = 60;
/** How long a verification is shared at most, unless `VERIFIED_TOKENS_MAX_TTL_SECONDS` says otherwise. */
export const DEFAULT_VERIFIED_TOKENS_MAX_TTL_SECONDS = 300;

/** The part of a KV namespace binding used here (no dependency on @cloudflare/workers-types). */
export interface KvNamespace {
  get(key: string, type: 'text'): Promise<string | null>;
  put(key: string, value: string, options: { expirationTtl: number }): Promise<void>;
}

export function isKvNamespace(value: unknown): value is KvNamespace {
  return typeof value === 'object' && value !== null && typeof (value as KvNamespace).get === 'function' && typeof (value as KvNamespace).put === 'function';
}

/** `VERIFIED_TOKENS_MAX_TTL_SECONDS`: absent → the default; otherwise a whole number of seconds ≥ 60. */
export function verifiedTokensMaxTtl(raw: unknown): number {
  if (raw === undefined || raw === '') return DEFAULT_VERIFIED_TOKENS_MAX_TTL_SECONDS;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < KV_MIN_TTL_SECONDS) {
    throw new Error(`VERIFIED_TOKENS_MAX_TTL_SECONDS must be a whole number of seconds, at least ${KV_MIN_TTL_SECONDS} (KV's least expirationTtl); got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** Logs a failure of the cache (one JSON line, as the Worker's other warnings) and goes on without it. */
function warn(operation: string, error: unknown): undefined {
  console.warn(JSON.stringify({ level: 'warn', msg: `the verified-token cache (KV) failed to ${operation}; the token is verified instead`, reason: (error as Error)?.message ?? String(error) }));
  return undefined;
}

/** Logs an entry whose MAC does not verify (written by someone without the secret, or altered). */
function forged(): undefined {
  console.warn(JSON.stringify({ level: 'warn', msg: 'the verified-token cache (KV) holds an entry whose MAC does not verify; ignored, the token is verified instead', reason: 'written or altered without MANDATE_EDGE_CACHE_KEY' }));
  return undefined;
}

export function kvVerifiedTokens(kv: KvNamespace, options: { maxTtlSeconds: number; mac: EdgeCacheMac }): SharedVerificationCache {
  const { mac } = options;
  return {
    maxTtlSeconds: options.maxTtlSeconds,
    minTtlSeconds: KV_MIN_TTL_SECONDS,
    key: ({ issuer, audience, typ, algorithms, token }) => mac.sign([`${VERSION}/key`, issuer, audience, typ, [...algorithms].sort(), token]),
    async get(key) {
      let stored: { claims?: unknown; mac?: unknown };
      try {
        const text = await kv.get(key, 'text');
        if (text === null) return undefined;
        stored = JSON.parse(text) as typeof stored;
      } catch (error) {
        return warn('read', error);
      }
      if (typeof stored !== 'object' || stored === null || typeof stored.claims !== 'string') return forged();
      if (!(await mac.verify([`${VERSION}/value`, key, stored.claims], stored.mac))) return forged();
      try {
        return JSON.parse(stored.claims) as unknown;
      } catch {
        return forged();
      }
    },
    async put(key, claims, ttlSeconds) {
      try {
        const json = JSON.stringify(claims);
        const value = JSON.stringify({ claims: json, mac: await mac.sign([`${VERSION}/value`, key, json]) });
        await kv.put(key, value, { expirationTtl: ttlSeconds });
      } catch (error) {
        warn('write', error);
      }
    },
  };
}

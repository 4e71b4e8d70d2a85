/**
 * The verified-token cache in Workers KV (the `VERIFIED_TOKENS` binding, issue 16): a token one
 * isolate has verified is taken by every other isolate without a signature check, until its entry
 * expires. The key is `verifiedTokenKey` (SHA-256 of issuer, audience and token: never the token),
 * the value the verified claims as JSON, the entry's `expirationTtl` the least of the token's
 * remaining life and `maxTtlSeconds` (`VERIFIED_TOKENS_MAX_TTL_SECONDS`, default 300). KV keeps
 * nothing for less than 60 s, so tokens with less life left are not stored.
 *
 * KV is a cache here, never an authority: a read or write that fails is logged and is a miss (the
 * token is verified), and what is read is checked again by the validator (`exp`, `nbf`, issuer,
 * audience). KV is eventually consistent (a write is seen elsewhere within about 60 s) and an entry
 * may outlive the AS key that signed its token by up to `maxTtlSeconds` (docs/edge.md).
 */
import type { SharedVerificationCache } from '../verification-cache.ts';

/** KV refuses an `expirationTtl` below 60 seconds. */
export const KV_MIN_TTL_SECONDS = 60;
/** How long a verification is shared at most, unless `VERIFIED_TOKENS_MAX_TTL_SECONDS` says otherwise. */
export const DEFAULT_VERIFIED_TOKENS_MAX_TTL_SECONDS = 300;

/** The part of a KV namespace binding used here (no dependency on @cloudflare/workers-types). */
export interface KvNamespace {
  get(key: string, type: 'json'): Promise<unknown>;
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

export function kvVerifiedTokens(kv: KvNamespace, options: { maxTtlSeconds: number }): SharedVerificationCache {
  return {
    maxTtlSeconds: options.maxTtlSeconds,
    minTtlSeconds: KV_MIN_TTL_SECONDS,
    async get(key) {
      try {
        return (await kv.get(key, 'json')) ?? undefined;
      } catch (error) {
        return warn('read', error);
      }
    },
    async put(key, claims, ttlSeconds) {
      try {
        await kv.put(key, JSON.stringify(claims), { expirationTtl: ttlSeconds });
      } catch (error) {
        warn('write', error);
      }
    },
  };
}

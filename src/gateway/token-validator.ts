import { decodeProtectedHeader, type JWK } from 'jose';
import { OAuthError } from '../core/errors.ts';
import { basicAuthorization } from '../core/encoding.ts';
import { verifyJwt, type VerificationKey } from '../core/jwt.ts';
import { VerifiedTokenCache } from '../core/verified-cache.ts';
import { deepFreeze } from '../core/cel.ts';
import { RemoteJwks, type JwksOptions } from './jwks.ts';
import { type KeySetCache, type SharedVerificationCache } from './verification-cache.ts';

/** The claims of a validated access token, whatever the validation mode. */
export type TokenClaims = Record<string, unknown> & { sub?: string; exp?: number; scope?: string; client_id?: string };

/** What a request lends a validator: Workers' `ctx.waitUntil`, to finish a cache write after the response. */
export interface ValidationContext {
  waitUntil?(promise: Promise<unknown>): void;
}

export interface TokenValidator {
  /** Resolves with the claims, or throws `OAuthError('invalid_token')` with the cause as reason. */
  validate(token: string, context?: ValidationContext): Promise<TokenClaims>;
  /** The claims this validator already holds for `token` (its memory only: no I/O, no signature check). */
  cached?(token: string): TokenClaims | undefined;
  close(): void;
}

/** RFC 8414 §3: the metadata of an issuer, with the issuer check of §3.3. */
export async function discoverIssuer(issuer: string, fetchImpl: typeof fetch = fetch): Promise<Record<string, unknown>> {
  const url = new URL(issuer);
  // Path insertion: https://as.example/tenant → https://as.example/.well-known/oauth-authorization-server/tenant
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  for (const wellKnown of ['oauth-authorization-server', 'openid-configuration']) {
    const response = await fetchImpl(`${url.origin}/.well-known/${wellKnown}${path}`, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined);
    if (!response?.ok) continue;
    const metadata = (await response.json()) as Record<string, unknown>;
    if (metadata.issuer !== issuer) throw new Error(`metadata of ${issuer} names issuer ${String(metadata.issuer)}`);
    return metadata;
  }
  throw new Error(`cannot fetch the metadata of ${issuer}`);
}

/**
 * How long a discovery may stay pending before the next use starts another instead of joining it
 * (two well-known URLs at 5 s each, and a margin). In workerd the work of a request that has already
 * answered is cancelled and its promises never settle: joining such a discovery would wait forever.
 */
const STALE_DISCOVERY_MS = 11_000;

/** Memoizes the metadata of an issuer; a failure is not remembered, so the next use tries again. */
export function issuerMetadata(issuer: string, fetchImpl?: typeof fetch): () => Promise<Record<string, unknown>> {
  let pending: { promise: Promise<Record<string, unknown>>; startedAt: number; settled: boolean } | undefined;
  return () => {
    if (!pending || (!pending.settled && Date.now() - pending.startedAt >= STALE_DISCOVERY_MS)) {
      const attempt: { promise: Promise<Record<string, unknown>>; startedAt: number; settled: boolean } = { promise: Promise.resolve({}), startedAt: Date.now(), settled: false };
      attempt.promise = discoverIssuer(issuer, fetchImpl).then(
        (metadata) => {
          attempt.settled = true;
          return metadata;
        },
        (error: unknown) => {
          attempt.settled = true;
          // Only the current attempt is forgotten: an abandoned one failing late changes nothing.
          if (pending === attempt) pending = undefined;
          throw error;
        },
      );
      pending = attempt;
    }
    return pending.promise;
  };
}

export async function metadataUrl(metadata: () => Promise<Record<string, unknown>>, field: string): Promise<string> {
  const value = (await metadata())[field];
  if (typeof value !== 'string') throw new Error(`the authorization server metadata has no ${field}`);
  return value;
}

export interface JwtValidatorOptions {
  issuer: string;
  audience: string;
  jwksUri?: string;
  metadata: () => Promise<Record<string, unknown>>;
  algorithms: string[];
  typ: string | null;
  clockSkewSeconds: number;
  refreshSeconds: number;
  minRefreshSeconds: number;
  cacheEntries: number;
  createVerifier?: (jwk: JWK, alg: string) => VerificationKey['verify'];
  onError?: (error: Error) => void;
  /** How the key set stays fresh: `timer` (a server, the default) or `on-use` (Workers). */
  schedule?: JwksOptions['schedule'];
  /** Keys held by the caller (kept across route reloads); the validator then neither starts nor stops them. */
  jwks?: RemoteJwks;
  /** Verified tokens shared by every instance (Workers KV), read after this validator's own cache misses. */
  shared?: SharedVerificationCache;
  /** Where the key set is kept for other instances (the Cache API), keyed by `keySetSource`. */
  keySetCache?: KeySetCache;
  keySetSource?: string;
}

/** Three base64url parts: the shape of a compact JWS (RFC 7515 §7.1). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** Local JWT validation (RFC 9068 §4): signature by the AS keys, `iss`, `aud`, `exp`/`nbf`, `typ`. */
export function jwtValidator(options: JwtValidatorOptions): TokenValidator {
  const owned = options.jwks ? undefined : new RemoteJwks(jwksOptions(options));
  owned?.start();
  const jwks = options.jwks ?? owned!;
  const cache = new VerifiedTokenCache<TokenClaims>(options.cacheEntries);
  const shared = options.shared;
  return {
    async validate(token, context) {
      const now = Math.floor(Date.now() / 1000);
      const cached = cache.get(token, now);
      if (cached) return cached;
      // Only a compact JWS (RFC 7515 §7.1) is looked up: junk must not cost a store read each.
      const key = shared && COMPACT_JWS.test(token) ? await shared.key({ issuer: options.issuer, audience: options.audience, typ: options.typ, algorithms: options.algorithms, token }) : undefined;
      // A read is worth it only when verifying here would first fetch the key set (a cold isolate,
      // a new key): with the key in hand, a signature check (~0.3 ms) beats a store read (a KV read
      // of a key never read here goes to KV's central store). The entry is still written below.
      // The header's `alg` and `typ` are checked again on a hit (cheap, no signature): the entry's
      // key binds them already, this keeps a stored entry from ever widening the route's check.
      if (shared && key && !holdsKeyOf(jwks, token) && headerFits(token, options)) {
        const stored = sharedClaims(await shared.get(key).catch(() => undefined), options, now);
        if (stored) {
          cache.set(token, stored);
          return stored;
        }
      }
      // The request's waitUntil goes with the key lookup: a key set fetch it starts is not cancelled with it (Workers).
      const claims = await verifyJwt<TokenClaims>(context?.waitUntil ? { byKid: (kid) => jwks.byKid(kid, context) } : jwks, token, {
        issuer: options.issuer,
        audience: options.audience,
        typ: options.typ ?? undefined,
        clockToleranceSeconds: options.clockSkewSeconds,
        algorithms: options.algorithms,
      });
      // RFC 9068 §2.2: exp is required; a token that never expires is not accepted.
      if (typeof claims.exp !== 'number') throw new OAuthError('invalid_token', 'the token is invalid or expired', { reason: 'no exp' });
      // Frozen: shared by every request with this token, and CEL converts it once.
      cache.set(token, deepFreeze(claims));
      if (shared && key) {
        // Never past the token's life (KV would keep it), and at most the cap: a verification
        // outlives the removal of its key at the AS by up to maxTtlSeconds (docs/edge.md).
        const ttl = Math.floor(Math.min(claims.exp - now, shared.maxTtlSeconds));
        if (ttl >= shared.minTtlSeconds) {
          const write = shared.put(key, claims, ttl).catch(() => undefined);
          if (context?.waitUntil) context.waitUntil(write);
        }
      }
      return claims;
    },
    cached: (token) => cache.get(token, Math.floor(Date.now() / 1000)),
    close: () => owned?.stop(),
  };
}

/** Whether the key set already holds the key the token's header names (a fetch would be needed otherwise). */
function holdsKeyOf(jwks: RemoteJwks, token: string): boolean {
  try {
    const { kid } = decodeProtectedHeader(token);
    return typeof kid === 'string' && jwks.holds(kid);
  } catch {
    return false;
  }
}

/** RFC 7515 §4.1.9: media types compare case-insensitively, "application/" may be omitted (as verifyJwt). */
const normalizeTyp = (value: string) => value.toLowerCase().replace(/^application\//, '');

/** Whether the token's header names an allowed `alg` and the route's `typ` (what verification would check first). */
function headerFits(token: string, options: Pick<JwtValidatorOptions, 'algorithms' | 'typ'>): boolean {
  try {
    const { alg, typ } = decodeProtectedHeader(token);
    if (typeof alg !== 'string' || !options.algorithms.includes(alg)) return false;
    return options.typ === null || (typeof typ === 'string' && normalizeTyp(typ) === normalizeTyp(options.typ));
  } catch {
    return false;
  }
}

/**
 * A shared cache's entry, if it still stands for a verification here and now. The store is
 * eventually consistent and its expiry approximate, so what the token's own claims say is checked
 * again: `exp` (as this validator's memory does), `nbf`, and the issuer and audience (already bound
 * by the key; checked so that an entry written by another build can never widen them).
 */
function sharedClaims(value: unknown, options: Pick<JwtValidatorOptions, 'issuer' | 'audience' | 'clockSkewSeconds'>, now: number): TokenClaims | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const claims = value as TokenClaims;
  if (typeof claims.exp !== 'number' || claims.exp <= now) return undefined;
  if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || claims.nbf > now + options.clockSkewSeconds)) return undefined;
  if (claims.iss !== options.issuer) return undefined;
  const audiences: unknown[] = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!audiences.includes(options.audience)) return undefined;
  return deepFreeze(claims);
}

/** Where and how often the validator's keys are fetched. */
export function jwksOptions(options: Pick<JwtValidatorOptions, 'jwksUri' | 'metadata' | 'refreshSeconds' | 'minRefreshSeconds' | 'createVerifier' | 'onError' | 'schedule' | 'keySetCache' | 'keySetSource'>): JwksOptions {
  return {
    jwksUri: options.jwksUri ?? (() => metadataUrl(options.metadata, 'jwks_uri')),
    refreshMs: options.refreshSeconds * 1000,
    minRefreshMs: options.minRefreshSeconds * 1000,
    createVerifier: options.createVerifier,
    onError: options.onError,
    schedule: options.schedule,
    shared: options.keySetCache && options.keySetSource ? { cache: options.keySetCache, source: options.keySetSource } : undefined,
  };
}

export interface IntrospectionValidatorOptions {
  issuer: string;
  audience: string;
  endpoint?: string;
  metadata: () => Promise<Record<string, unknown>>;
  clientId: string;
  clientSecret: string;
  cacheSeconds: number;
  negativeCacheSeconds: number;
  cacheEntries: number;
  fetch?: typeof fetch;
}

/**
 * RFC 7662 introspection at the AS, for opaque tokens or when revocation must bite at once.
 * Answers are cached: active ones for `cacheSeconds` (never past `exp`), inactive ones for
 * `negativeCacheSeconds`, so a burst of bad tokens does not become a burst of AS calls.
 */
export function introspectionValidator(options: IntrospectionValidatorOptions): TokenValidator {
  const cache = new Map<string, { until: number; claims?: TokenClaims; reason?: string }>();
  const basic = basicAuthorization(options.clientId, options.clientSecret);
  const remember = (token: string, entry: { until: number; claims?: TokenClaims; reason?: string }) => {
    if (cache.size >= options.cacheEntries) cache.delete(cache.keys().next().value as string);
    cache.set(token, entry);
  };
  const refuse = (reason: string) => new OAuthError('invalid_token', 'the token is invalid or expired', { reason });
  return {
    async validate(token) {
      const nowMs = Date.now();
      const cached = cache.get(token);
      if (cached && cached.until > nowMs) {
        if (cached.claims) return cached.claims;
        throw refuse(cached.reason ?? 'inactive');
      }
      let body: Record<string, unknown>;
      try {
        const endpoint = options.endpoint ?? (await metadataUrl(options.metadata, 'introspection_endpoint'));
        const response = await (options.fetch ?? fetch)(endpoint, {
          method: 'POST',
          headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
          signal: AbortSignal.timeout(5_000),
        });
        if (!response.ok) throw new Error(`introspection answered ${response.status}`);
        body = (await response.json()) as Record<string, unknown>;
      } catch (error) {
        // The AS cannot say whether the token is good: refuse (fail closed), and do not cache.
        throw new OAuthError('temporarily_unavailable', 'the authorization server cannot be reached', { status: 503, reason: (error as Error).message });
      }
      const now = Math.floor(nowMs / 1000);
      let reason: string | undefined;
      if (body.active !== true) reason = 'inactive';
      else if (body.iss !== undefined && body.iss !== options.issuer) reason = `iss ${String(body.iss)}`;
      else if (!(Array.isArray(body.aud) ? body.aud : [body.aud]).includes(options.audience)) reason = `aud ${JSON.stringify(body.aud)}`;
      else if (typeof body.exp === 'number' && body.exp <= now) reason = 'expired';
      if (reason) {
        remember(token, { until: nowMs + options.negativeCacheSeconds * 1000, reason });
        throw refuse(reason);
      }
      const claims = deepFreeze(body as TokenClaims);
      const until = Math.min(nowMs + options.cacheSeconds * 1000, typeof claims.exp === 'number' ? claims.exp * 1000 : Infinity);
      remember(token, { until, claims });
      return claims;
    },
    cached(token) {
      const entry = cache.get(token);
      return entry?.claims && entry.until > Date.now() ? entry.claims : undefined;
    },
    close: () => cache.clear(),
  };
}

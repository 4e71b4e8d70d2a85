import { createLocalJWKSet, createRemoteJWKSet, customFetch, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { isLoopbackHttp } from '../../core/redirect-uri.ts';
import type { ServerContext } from '../context.ts';
import { FetchRefused, guardedFetch } from '../guarded-fetch.ts';

/**
 * The shared "trusted issuer keys" helper of issue 17: the keys of a trusted IdP (ID-JAG,
 * `trusted_idps`) or of a platform issuer (workload identity) as a jose key resolver. The keys come
 * from the entry's `jwks`, else its `jwks_uri`, else its metadata: RFC 8414 §3 (path insertion),
 * then OpenID Connect Discovery 1.0 §4 (`/.well-known/openid-configuration` appended), whose
 * `issuer` must equal the configured one exactly (RFC 8414 §3.3) and whose `jwks_uri` is taken.
 *
 * Every fetch goes through the SSRF-guarded fetch (public addresses only, 64 KiB, the metadata
 * documents' timeout, no redirects), https only — plain http to a loopback host only when the entry
 * sets `allow_loopback` (tests). Fetched sets are used for 5 minutes; an unknown `kid` refetches
 * (rotation) at most every 5 s; a failed fetch is not repeated for a minute, and each host is
 * fetched at most `client_id_metadata_documents.fetches_per_host_per_minute` times a minute, so an
 * assertion naming a trusted issuer cannot make this server hammer it.
 *
 * Caches are per server context (one per running AS), so two servers in one process (tests) never
 * share keys. A failure surfaces as `IssuerKeysUnavailable` thrown from the resolver (jose passes it
 * through `jwtVerify`), its message naming the cause for the audit log.
 */
export interface TrustedIssuer {
  issuer: string;
  jwks_uri?: string;
  jwks?: JSONWebKeySet;
  /** Tests only: http and loopback addresses. */
  allowLoopback: boolean;
}

/** The keys of a trusted issuer could not be obtained (fetch failed, metadata wrong). */
export class IssuerKeysUnavailable extends Error {
  override name = 'IssuerKeysUnavailable';
}

/** A fetched key set is used this long before it is fetched again. */
const CACHE_MAX_AGE_MS = 5 * 60_000;
/** An unknown `kid` refetches the set (key rotation), at most once per this many ms per set. */
const REFETCH_COOLDOWN_MS = 5_000;
/** A failed fetch (metadata or key set) is not repeated for this long. */
const FAILURE_CACHE_MS = 60_000;
/** Key sets and discovered metadata kept per server, least recently used dropped first. */
const MAX_ENTRIES = 256;
const MAX_BYTES = 65_536;

interface State {
  resolvers: Map<string, JWTVerifyGetKey>;
  /** Discovered `jwks_uri` by issuer, with when to look again. */
  discovered: Map<string, { jwksUri: string; until: number }>;
  failures: Map<string, { message: string; until: number }>;
  budget: RateLimiterMemory;
}

const states = new WeakMap<ServerContext, State>();

function stateOf(ctx: ServerContext): State {
  let state = states.get(ctx);
  if (!state) {
    const perMinute = ctx.config.client_id_metadata_documents.fetches_per_host_per_minute;
    state = { resolvers: new Map(), discovered: new Map(), failures: new Map(), budget: new RateLimiterMemory({ points: perMinute, duration: 60 }) };
    states.set(ctx, state);
  }
  return state;
}

function remember<V>(map: Map<string, V>, key: string, value: V): V {
  map.delete(key);
  if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value as string);
  map.set(key, value);
  return value;
}

/** https, or http to a loopback host when the entry allows it (tests). */
function allowedUrl(uri: string, allowLoopback: boolean): URL | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return undefined;
  }
  return url.protocol === 'https:' || (allowLoopback && isLoopbackHttp(url)) ? url : undefined;
}

/** One guarded GET of a JSON document, with the failure cache and the per-host budget. */
async function fetchJson(ctx: ServerContext, state: State, url: URL, allowLoopback: boolean): Promise<{ status: number; body: string }> {
  const href = url.href;
  const failed = state.failures.get(href);
  if (failed && failed.until > Date.now()) throw new IssuerKeysUnavailable(`${failed.message} (failed recently; not fetched again)`);
  if (!(await state.budget.consume(url.host).then(() => true, () => false))) throw new IssuerKeysUnavailable(`too many fetches from ${url.host}; not fetched`);
  try {
    const response = await guardedFetch(url, { allowLoopback, maxBytes: MAX_BYTES, timeoutMs: ctx.config.client_id_metadata_documents.timeout_ms });
    state.failures.delete(href);
    return { status: response.status, body: response.body };
  } catch (error) {
    const message = `${href}: ${(error as Error).message}`;
    remember(state.failures, href, { message, until: Date.now() + FAILURE_CACHE_MS });
    throw error instanceof FetchRefused ? new IssuerKeysUnavailable(message) : error;
  }
}

/** The jose remote key set of a `jwks_uri`, fetched through the guard. */
function remoteSet(ctx: ServerContext, state: State, uri: string, allowLoopback: boolean): JWTVerifyGetKey {
  const key = `jwks ${allowLoopback} ${uri}`;
  const cached = state.resolvers.get(key);
  if (cached) return remember(state.resolvers, key, cached);
  const url = allowedUrl(uri, allowLoopback);
  if (!url) {
    return async () => {
      throw new IssuerKeysUnavailable(`jwks_uri must use https: ${uri}`);
    };
  }
  const set = createRemoteJWKSet(url, {
    cooldownDuration: REFETCH_COOLDOWN_MS,
    cacheMaxAge: CACHE_MAX_AGE_MS,
    timeoutDuration: ctx.config.client_id_metadata_documents.timeout_ms,
    [customFetch]: async (href: string) => {
      const response = await fetchJson(ctx, state, new URL(href), allowLoopback);
      if (response.status !== 200) {
        remember(state.failures, href, { message: `${href} answered HTTP ${response.status}`, until: Date.now() + FAILURE_CACHE_MS });
        throw new IssuerKeysUnavailable(`${href} answered HTTP ${response.status}`);
      }
      return new Response(response.body, { status: 200, headers: { 'content-type': 'application/json' } });
    },
  });
  return remember(state.resolvers, key, set);
}

/**
 * The issuer's `jwks_uri` from its metadata: RFC 8414 (path insertion) first, then OpenID
 * discovery (appended). The document must name exactly this issuer.
 */
async function discoverJwksUri(ctx: ServerContext, state: State, issuer: string, allowLoopback: boolean): Promise<string> {
  const known = state.discovered.get(issuer);
  if (known && known.until > Date.now()) return known.jwksUri;
  const base = allowedUrl(issuer, allowLoopback);
  if (!base) throw new IssuerKeysUnavailable(`issuer must use https: ${issuer}`);
  const path = base.pathname === '/' ? '' : base.pathname.replace(/\/$/, '');
  const candidates = [`${base.origin}/.well-known/oauth-authorization-server${path}`, `${base.origin}${path}/.well-known/openid-configuration`];
  const problems: string[] = [];
  for (const candidate of candidates) {
    let response: { status: number; body: string };
    try {
      response = await fetchJson(ctx, state, new URL(candidate), allowLoopback);
    } catch (error) {
      problems.push((error as Error).message);
      continue;
    }
    if (response.status !== 200) {
      problems.push(`${candidate} answered HTTP ${response.status}`);
      continue;
    }
    let metadata: Record<string, unknown>;
    try {
      metadata = JSON.parse(response.body) as Record<string, unknown>;
    } catch {
      problems.push(`${candidate} is not JSON`);
      continue;
    }
    // RFC 8414 §3.3 / OIDC Discovery §4.3: a document naming another issuer is not this issuer's.
    if (metadata.issuer !== issuer) throw new IssuerKeysUnavailable(`metadata of ${issuer} names issuer ${JSON.stringify(metadata.issuer)}`);
    if (typeof metadata.jwks_uri !== 'string') throw new IssuerKeysUnavailable(`metadata of ${issuer} has no jwks_uri`);
    if (!allowedUrl(metadata.jwks_uri, allowLoopback)) throw new IssuerKeysUnavailable(`jwks_uri of ${issuer} must use https: ${metadata.jwks_uri}`);
    remember(state.discovered, issuer, { jwksUri: metadata.jwks_uri, until: Date.now() + CACHE_MAX_AGE_MS });
    return metadata.jwks_uri;
  }
  throw new IssuerKeysUnavailable(`cannot fetch the metadata of ${issuer}: ${problems.join('; ')}`);
}

/** The keys of a trusted issuer as a jose key resolver (see the module comment). */
export function issuerKeys(ctx: ServerContext, issuer: TrustedIssuer): JWTVerifyGetKey {
  if (issuer.jwks) {
    const state = stateOf(ctx);
    const key = `inline ${issuer.issuer} ${JSON.stringify(issuer.jwks)}`;
    return state.resolvers.get(key) ?? remember(state.resolvers, key, createLocalJWKSet(issuer.jwks));
  }
  const state = stateOf(ctx);
  if (issuer.jwks_uri) return remoteSet(ctx, state, issuer.jwks_uri, issuer.allowLoopback);
  return async (header, token) => {
    const uri = await discoverJwksUri(ctx, state, issuer.issuer, issuer.allowLoopback);
    return remoteSet(ctx, state, uri, issuer.allowLoopback)(header, token);
  };
}

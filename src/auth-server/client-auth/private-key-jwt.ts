import { createLocalJWKSet, createRemoteJWKSet, customFetch, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { OAuthError } from '../../core/errors.ts';
import { isLoopbackHttp } from '../../core/redirect-uri.ts';
import type { Client } from '../../core/client-metadata.ts';
import { endpointUrls, type ServerContext } from '../context.ts';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { FetchRefused, guardedFetch } from '../guarded-fetch.ts';

/** RFC 7523 §2.2 / OIDC Core §9: the assertion type of private_key_jwt. */
export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/**
 * Asymmetric algorithms only (RFC 7518 §3.1, RFC 8037 §3.1): a client proves possession of a
 * private key. HS* would make any shared `oct` key a password the AS also holds; `none` proves
 * nothing. Anything else is refused before a key is even looked up.
 */
export const ASSERTION_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

/** Remote key sets kept (one per jwks_uri), least recently used dropped first. */
const MAX_REMOTE_SETS = 1000;
/** An unknown `kid` refetches the set (key rotation), at most once per this many ms per jwks_uri. */
const REFETCH_COOLDOWN_MS = 5_000;
/** A fetched set is used this long before it is fetched again. */
const CACHE_MAX_AGE_MS = 5 * 60_000;

/** A failed key set fetch is not repeated for this long: /token is no reflector towards a jwks_uri. */
const FAILURE_CACHE_MS = 60_000;

const remoteSets = new Map<string, JWTVerifyGetKey>();
const failedFetches = new Map<string, number>();
/** Key set fetches per host and minute (the metadata documents' setting), by configured value. */
const hostBudgets = new Map<number, RateLimiterMemory>();

/**
 * The SSRF-guarded fetch behind jose's remote key set, with the metadata documents' reflector
 * bounds: a failure is remembered for a minute, and each host is fetched at a bounded rate.
 */
async function fetchKeySet(href: string, guard: ServerContext['config']['client_id_metadata_documents']): Promise<Response> {
  const failedUntil = failedFetches.get(href);
  if (failedUntil !== undefined && failedUntil > Date.now()) throw new FetchRefused(`jwks_uri fetch failed recently; not fetched again`);
  const url = new URL(href);
  let budget = hostBudgets.get(guard.fetches_per_host_per_minute);
  if (!budget) hostBudgets.set(guard.fetches_per_host_per_minute, (budget = new RateLimiterMemory({ points: guard.fetches_per_host_per_minute, duration: 60 })));
  if (!(await budget.consume(url.host).then(() => true, () => false))) throw new FetchRefused(`too many key set fetches from ${url.host}; not fetched`);
  try {
    const response = await guardedFetch(url, { allowLoopback: guard.allow_loopback, maxBytes: 65_536, timeoutMs: guard.timeout_ms });
    if (response.status !== 200) throw new FetchRefused(`jwks_uri answered HTTP ${response.status}`);
    failedFetches.delete(href);
    return new Response(response.body, { status: 200, headers: { 'content-type': 'application/json' } });
  } catch (error) {
    failedFetches.delete(href);
    if (failedFetches.size >= MAX_REMOTE_SETS) failedFetches.delete(failedFetches.keys().next().value as string);
    failedFetches.set(href, Date.now() + FAILURE_CACHE_MS);
    throw error;
  }
}

const refuse = (reason: string): never => {
  throw new OAuthError('invalid_client', 'client authentication failed', { reason });
};

/** https, or http to a loopback host under the development rule (as for redirect URIs and documents). */
export function jwksUriAllowed(uri: string, allowLoopback: boolean): boolean {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return false;
  }
  return url.protocol === 'https:' || (allowLoopback && isLoopbackHttp(url));
}

/**
 * The client's keys. A `jwks_uri` must be https; plain http only to a loopback host, and only
 * where the AS's development rule for client-supplied URLs (`client_id_metadata_documents.
 * allow_loopback`) allows it. Fetches go through the SSRF guard.
 */
function clientKeys(ctx: ServerContext, client: Client): JWTVerifyGetKey {
  if (client.metadata.jwks) return createLocalJWKSet(client.metadata.jwks as unknown as JSONWebKeySet);
  const uri = client.metadata.jwks_uri;
  if (!uri) return refuse('client has no jwks or jwks_uri');
  const guard = ctx.config.client_id_metadata_documents;
  if (!jwksUriAllowed(uri, guard.allow_loopback)) return refuse(`jwks_uri must use https: ${uri}`);
  const url = new URL(uri);
  const key = `${guard.allow_loopback}:${uri}`;
  let set = remoteSets.get(key);
  if (set) {
    remoteSets.delete(key);
  } else {
    set = createRemoteJWKSet(url, {
      cooldownDuration: REFETCH_COOLDOWN_MS,
      cacheMaxAge: CACHE_MAX_AGE_MS,
      timeoutDuration: guard.timeout_ms,
      [customFetch]: (href: string) => fetchKeySet(href, guard),
    });
    if (remoteSets.size >= MAX_REMOTE_SETS) remoteSets.delete(remoteSets.keys().next().value as string);
  }
  remoteSets.set(key, set);
  return set;
}

/**
 * Verifies a client assertion: an asymmetric signature by a key of the client, `iss` = `sub` =
 * client_id, not expired, its `jti` never seen before (replay), and `aud` one string naming this
 * AS. draft-ietf-oauth-rfc7523bis §4 wants the issuer identifier; the token endpoint URL (what
 * RFC 7523 §3 and OIDC Core §9 clients send) is still accepted, as a single string too, so no
 * deployed client breaks. Arrays and other endpoints' URLs are refused: an assertion meant for
 * another server, or listing several, cannot be replayed here.
 */
export async function verifyClientAssertion(ctx: ServerContext, client: Client, assertion: string, _endpointUrl: string): Promise<void> {
  const keys = clientKeys(ctx, client);
  // RFC 9126 §2: at /par, the PAR endpoint's URL is an accepted audience too.
  const accepted = new Set([ctx.issuer, `${ctx.issuer}/`, endpointUrls(ctx.issuer).token, endpointUrls(ctx.issuer).pushedAuthorization]);
  let payload;
  try {
    ({ payload } = await jwtVerify(assertion, keys, {
      algorithms: ASSERTION_ALGORITHMS,
      issuer: client.clientId,
      subject: client.clientId,
      clockTolerance: 5,
      requiredClaims: ['exp', 'jti', 'aud'],
    }));
  } catch (error) {
    return refuse(`client assertion: ${(error as { code?: string }).code ?? (error as Error).message}`);
  }
  if (typeof payload.aud !== 'string') return refuse('client assertion aud must be one string (draft-ietf-oauth-rfc7523bis)');
  if (!accepted.has(payload.aud)) return refuse(`client assertion aud ${JSON.stringify(payload.aud)} is not this issuer`);
  if (payload.exp! - ctx.now() > 600) return refuse('client assertion lives longer than 10 minutes');
  const ttl = Math.max(payload.exp! - ctx.now() + 10, 1);
  if (!(await ctx.cache.add(`assertion:${client.clientId}:${payload.jti}`, 1, ttl))) return refuse('client assertion jti replayed');
}

import { RateLimiterMemory } from 'rate-limiter-flexible';
import { OAuthError } from '../core/errors.ts';
import { assertValidRedirectUri, isLoopbackHttp } from '../core/redirect-uri.ts';
import { clientMetadataSchema, type Client } from '../core/client-metadata.ts';
import type { AuthServerConfig } from '../config/schema.ts';
import { guardedFetch } from './guarded-fetch.ts';
import { jwksUriAllowed } from './client-auth/private-key-jwt.ts';
import { assertRegisteredLogoutMetadata } from './logout-metadata.ts';

type Options = AuthServerConfig['client_id_metadata_documents'];

/**
 * OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, an
 * experiment): a `client_id` that is an https URL names a JSON document with the client's
 * metadata. The document must name itself as `client_id`; it cannot carry a shared secret.
 */
export function isMetadataDocumentClientId(clientId: string, options: Options): boolean {
  if (!options.enabled) return false;
  if (clientId.startsWith('https://')) return true;
  return options.allow_loopback && clientId.startsWith('http://') && safeUrl(clientId) !== undefined && isLoopbackHttp(safeUrl(clientId)!);
}

function safeUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

/**
 * A failed fetch is remembered this long, so `/authorize?client_id=https://victim/…` cannot make
 * the server fetch a URL again and again (a reflector): one attempt per URL per minute.
 */
const FAILURE_CACHE_SECONDS = 60;
const MAX_ENTRIES = 10_000;

/** Bounded: the oldest insertion goes first (a Map keeps insertion order). */
function remember<V>(map: Map<string, V>, key: string, value: V) {
  map.delete(key);
  if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value as string);
  map.set(key, value);
}

export function createMetadataDocumentResolver(options: Options, now: () => number) {
  const cache = new Map<string, { client: Client; expiresAt: number }>();
  const failures = new Map<string, { reason: string; expiresAt: number }>();
  const inFlight = new Map<string, Promise<{ client: Client; maxAge: number }>>();
  // Fetches per host, whatever the path: bounds what the server sends to one target.
  const perHost = new RateLimiterMemory({ points: options.fetches_per_host_per_minute, duration: 60 });
  const refuse = (reason: string): never => {
    throw new OAuthError('invalid_client', 'the client metadata document could not be used', { reason });
  };

  async function fetchDocument(clientId: string): Promise<{ client: Client; maxAge: number }> {
    const url = safeUrl(clientId);
    if (!url) return refuse('client_id is not a URL');
    // The draft requires a path, and forbids fragments, credentials and dot segments. Dot segments
    // (also percent-encoded) are looked for in the client_id as given: URL parsing removes them.
    if (url.pathname === '/' || url.hash || url.username || url.password || /\/(\.|%2e){1,2}([/?#]|$)/i.test(clientId)) {
      return refuse('client_id URL must have a path and no fragment, credentials or dot segments');
    }
    const response = await guardedFetch(url, {
      allowLoopback: options.allow_loopback,
      maxBytes: options.max_bytes,
      timeoutMs: options.timeout_ms,
    }).catch((error: Error) => refuse(`fetching ${clientId}: ${error.message}`));
    if (response.status >= 300 && response.status < 400) return refuse(`${clientId} answered with a redirect, which is not followed`);
    if (response.status !== 200) return refuse(`${clientId} answered HTTP ${response.status}`);
    let json: unknown;
    try {
      json = JSON.parse(response.body);
    } catch {
      return refuse(`${clientId} is not JSON`);
    }
    const parsed = clientMetadataSchema.safeParse(json);
    if (!parsed.success) return refuse(`invalid metadata: ${parsed.error.issues[0]?.message}`);
    const raw = json as Record<string, unknown>;
    if (raw.client_id !== clientId) return refuse(`document client_id ${JSON.stringify(raw.client_id)} differs from its URL`);
    if ('client_secret' in raw || 'client_secret_expires_at' in raw) return refuse('document must not contain a client secret');
    const metadata = { ...parsed.data, token_endpoint_auth_method: raw.token_endpoint_auth_method === undefined ? 'none' as const : parsed.data.token_endpoint_auth_method };
    if (!['none', 'private_key_jwt'].includes(metadata.token_endpoint_auth_method)) {
      return refuse('a metadata document client authenticates with none or private_key_jwt only');
    }
    if (metadata.jwks_uri && !jwksUriAllowed(metadata.jwks_uri, options.allow_loopback)) return refuse('jwks_uri must use https');
    try {
      metadata.redirect_uris.forEach(assertValidRedirectUri);
      // The logout URIs as a registration's (RFC 7591): a document is no looser.
      assertRegisteredLogoutMetadata(metadata, options.allow_loopback);
    } catch (error) {
      return refuse((error as Error).message);
    }
    return {
      client: { clientId, source: 'metadata_document', metadata, createdAt: now() },
      maxAge: cacheSeconds(response.headers['cache-control']),
    };
  }

  /** HTTP caching (RFC 9111 §5.2.2): `max-age`, `no-store`, clamped to the configured bounds. */
  function cacheSeconds(header: string | undefined): number {
    if (!header) return options.min_cache_seconds;
    if (/\bno-store\b|\bno-cache\b/.test(header)) return 0;
    const maxAge = /\bmax-age=(\d+)/.exec(header);
    const value = maxAge ? Number(maxAge[1]) : options.min_cache_seconds;
    return Math.min(Math.max(value, options.min_cache_seconds), options.max_cache_seconds);
  }

  return {
    async resolve(clientId: string): Promise<Client> {
      const hit = cache.get(clientId);
      if (hit && hit.expiresAt > now()) return hit.client;
      const failed = failures.get(clientId);
      if (failed && failed.expiresAt > now()) refuse(`${failed.reason} (failed fetch remembered; not fetched again)`);
      // Concurrent requests for one document share one fetch.
      let pending = inFlight.get(clientId);
      if (!pending) {
        const host = safeUrl(clientId)?.host ?? clientId;
        if (!(await perHost.consume(host).then(() => true, () => false))) refuse(`too many document fetches from ${host}; not fetched`);
        pending = fetchDocument(clientId).finally(() => inFlight.delete(clientId));
        inFlight.set(clientId, pending);
      }
      try {
        const { client, maxAge } = await pending;
        failures.delete(clientId);
        if (maxAge > 0) remember(cache, clientId, { client, expiresAt: now() + maxAge });
        return client;
      } catch (error) {
        const reason = error instanceof OAuthError ? (error.reason ?? error.message) : String(error);
        remember(failures, clientId, { reason, expiresAt: now() + FAILURE_CACHE_SECONDS });
        throw error;
      }
    },
  };
}

import type { Logger } from 'pino';
import { OAuthError } from '../core/errors.ts';
import { OIDC_SCOPES, parseScope } from '../core/scopes.ts';
import type { Client } from '../core/client-metadata.ts';
import type { AuthServerConfig, ResourceConfig } from '../config/schema.ts';
import type { Store, TtlCache } from '../store/types.ts';
import type { AuditLog } from './audit.ts';
import type { KeyManager } from './keys.ts';
import { createMetadataDocumentResolver, isMetadataDocumentClientId } from './client-id-metadata.ts';

/** A resource tokens can be issued for. The authorization server itself is one (for /userinfo). */
export interface Resource {
  id: string;
  name: string;
  scopes: { name: string; description?: string }[];
  accessTokenTtl: number;
}

/** Everything an endpoint needs, built once at start. */
export interface ServerContext {
  config: AuthServerConfig;
  issuer: string;
  store: Store;
  cache: TtlCache;
  keys: KeyManager;
  audit: AuditLog;
  log: Logger;
  now(): number;
  url(path: string): string;
  findClient(clientId: string): Promise<Client | undefined>;
  resource(id: string): Resource | undefined;
}

export function endpointUrls(issuer: string) {
  const base = issuer.replace(/\/$/, '');
  return {
    authorization: `${base}/authorize`,
    token: `${base}/token`,
    registration: `${base}/register`,
    jwks: `${base}/jwks`,
    introspection: `${base}/introspect`,
    revocation: `${base}/revoke`,
    userinfo: `${base}/userinfo`,
    tokeninfo: `${base}/tokeninfo`,
  };
}

export function createContext(parts: {
  config: AuthServerConfig;
  store: Store;
  cache: TtlCache;
  keys: KeyManager;
  audit: AuditLog;
  log: Logger;
  now?: () => number;
}): ServerContext {
  const { config } = parts;
  const issuer = config.issuer.replace(/\/$/, '');
  const now = parts.now ?? (() => Math.floor(Date.now() / 1000));
  const resources = new Map<string, Resource>();
  const toResource = (r: ResourceConfig): Resource => ({
    id: r.id,
    name: r.name,
    scopes: r.scopes,
    accessTokenTtl: r.access_token_ttl ?? config.tokens.access_token_ttl,
  });
  for (const r of config.resources) resources.set(r.id, toResource(r));
  resources.set(issuer, {
    id: issuer,
    name: 'Your account',
    scopes: OIDC_SCOPES.map((name) => ({ name })),
    accessTokenTtl: config.tokens.access_token_ttl,
  });
  const metadataDocuments = createMetadataDocumentResolver(config.client_id_metadata_documents, now);
  return {
    ...parts,
    config,
    issuer,
    now,
    url: (path) => `${issuer}${path}`,
    async findClient(clientId) {
      if (isMetadataDocumentClientId(clientId, config.client_id_metadata_documents)) {
        return metadataDocuments.resolve(clientId);
      }
      return parts.store.clients.find(clientId);
    },
    resource: (id) => resources.get(id),
  };
}

/**
 * Picks the resource a request is for (RFC 8707) and the scopes it gets. Exactly one resource per
 * token: the requested one, else the client's default resource, else the authorization server.
 * Scopes must belong to that resource (or be OpenID Connect scopes) and to the client's allowed set.
 */
export function resolveResourceAndScope(
  ctx: ServerContext,
  client: Client,
  requested: { resource?: string[]; scope?: string },
): { resource: Resource; scopes: string[] } {
  if (requested.resource && requested.resource.length > 1) {
    throw new OAuthError('invalid_target', 'request one resource per token');
  }
  const resourceId = requested.resource?.[0] ?? client.metadata.default_resource ?? ctx.issuer;
  const resource = ctx.resource(resourceId) ?? ctx.resource(resourceId.replace(/\/$/, ''));
  if (!resource) {
    throw new OAuthError('invalid_target', 'the requested resource is unknown', { reason: `resource=${resourceId}` });
  }
  const offered = new Set([...resource.scopes.map((s) => s.name), ...OIDC_SCOPES]);
  const allowedForClient = client.metadata.scope ? new Set([...parseScope(client.metadata.scope), ...OIDC_SCOPES]) : undefined;
  const asked = parseScope(requested.scope);
  const scopes = asked.length > 0 ? asked : resource.scopes.map((s) => s.name).filter((s) => !allowedForClient || allowedForClient.has(s));
  for (const scope of scopes) {
    if (!offered.has(scope)) throw new OAuthError('invalid_scope', `scope ${scope} is not offered by ${resource.id}`);
    if (allowedForClient && !allowedForClient.has(scope)) throw new OAuthError('invalid_scope', `the client may not request scope ${scope}`);
  }
  return { resource, scopes };
}

/** Hono environment of the authorization server: endpoints note the authenticated client for the audit log. */
export interface AppEnv {
  Variables: { clientId: string };
}

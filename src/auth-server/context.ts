import type { Logger } from 'pino';
import { OAuthError } from '../core/errors.ts';
import { OIDC_SCOPES, parseScope } from '../core/scopes.ts';
import type { Client } from '../core/client-metadata.ts';
import { compileExpression, type CompiledExpression } from '../core/cel.ts';
import { VerifiedTokenCache } from '../core/verified-cache.ts';
import type { AccessTokenClaims } from '../core/jwt.ts';
import { agreementSchema, authenticationPolicySchema, resourceSchema, type AgreementConfig, type AuthServerConfig, type AuthenticationPolicyConfig, type ResourceConfig } from '../config/schema.ts';
import type { AccessTokenRecord, ClientRecord, Store, TtlCache } from '../store/types.ts';
import type { BatchWriter } from './batch-writer.ts';
import type { AuditLog } from './audit.ts';
import type { KeyManager } from './keys.ts';
import { createMetadataDocumentResolver, isMetadataDocumentClientId } from './client-id-metadata.ts';
import { applyRegistrationPolicy, clientScopeLimit, isOidcScope, isSelfRegistered, withheldReason } from './registration-policy.ts';
import type { Context } from 'hono';
import { ADMIN_SCOPES, adminResourceId, adminScopeDescription, isAdminScope } from '../admin/scopes.ts';
import { addressBucket, clientAddress, trustedProxyList } from './client-address.ts';
import { limiterFactory, type LimiterFactory } from './limits.ts';
import { checkClientFlags } from './client-flags.ts';

/** A resource tokens can be issued for. The authorization server itself is one (for /userinfo). */
export interface Resource {
  id: string;
  name: string;
  scopes: { name: string; description?: string; high_risk?: boolean }[];
  accessTokenTtl: number;
  tokenFormat: 'jwt' | 'opaque';
  /** RFC 8693 §4.4: who may act on tokens for this resource. */
  mayAct?: 'requesting_client' | { client_id: string };
  /** Claim mappings, compiled at start. */
  claims: { name: string; expression: CompiledExpression }[];
  exchange: { allowedActors?: string[]; maxDepth: number; requireMayAct: boolean };
  /** Clients serving this resource: they may introspect its tokens and read the revocation list. */
  resourceServers: string[];
  /** RFC 9449: tokens for this resource are issued DPoP-bound only (`resources[].require_dpop`). */
  requireDpop?: boolean;
}

/** An item of the file (`config`) or added through the admin API (`admin`). */
export type Sourced<T> = T & { source: 'config' | 'admin' };

function missingAgreement(policy: AuthenticationPolicyConfig, agreements: Map<string, unknown>): string | undefined {
  for (const step of policy.steps) if (typeof step === 'object' && !agreements.has(step.agreement)) return step.agreement;
  return undefined;
}

/** Claims a mapping may not set: they carry the token's own security properties. */
// `may_act` says who may exchange a token: only `resources[].may_act` grants it, never a mapping.
// `authorization_details` (RFC 9396) carries approvals the user gave: only an approved transaction puts it there.
export const PROTECTED_CLAIMS = new Set(['iss', 'aud', 'exp', 'iat', 'nbf', 'jti', 'client_id', 'scope', 'auth_time', 'acr', 'sid', 'grant_id', 'may_act', 'authorization_details', 'cnf']);

/** How stale the client restriction cache may be without REDIS_URL (with it, pub/sub refreshes it at once). */
export const RESTRICTION_CACHE_SECONDS = 2;

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
  findClient(clientId: string): Promise<ClientRecord | undefined>;
  resource(id: string): Resource | undefined;
  /** Every configured resource (not the authorization server itself). */
  resources(): Resource[];
  /** Re-reads resource definitions from the store (config ones are written there at start). */
  reloadResources(): Promise<void>;
  /** Throws, with a message naming the problem, when a definition cannot be used (CEL, protected claims). */
  checkResource(definition: ResourceConfig): void;
  agreement(id: string): Sourced<AgreementConfig> | undefined;
  authenticationPolicy(name: string | undefined): Sourced<AuthenticationPolicyConfig> | undefined;
  listAgreements(): Sourced<AgreementConfig>[];
  listAuthenticationPolicies(): Sourced<AuthenticationPolicyConfig>[];
  /** Re-reads the agreements and authentication policies added through the admin API. */
  reloadSettings(): Promise<void>;
  /**
   * Records of exchanged JWTs under their user grant, written in batches: revocations flush it
   * first (see `server.ts`), so only another instance can miss a record younger than 100 ms.
   */
  trackedTokens: BatchWriter<AccessTokenRecord>;
  /** Our access tokens already verified, until they expire (revocation is checked on every use). */
  verifiedTokens: VerifiedTokenCache<AccessTokenClaims>;
  /** Whether a client (an agent, usually) is disabled: it may not act, and its tokens stop working. */
  isDisabled(clientId: string): Promise<boolean>;
  /**
   * Whether a token issued at `iat` that names this client (as its client or in its chain) is cut
   * off: the client is disabled, or was disabled after the token was issued.
   */
  isCutOff(clientId: string, iat: number): Promise<boolean>;
  /** Re-reads the client restrictions now (after a change on this instance). */
  refreshDisabled(): Promise<void>;
  /** Who sent a request (`trusted_proxies` decides whether X-Forwarded-For is believed), as a rate-limit key: IPv6 per /64. */
  clientAddress(c: Context): string;
  /** A rate limiter, shared by every instance when Redis is configured. */
  limiter: LimiterFactory;
}

export function endpointUrls(issuer: string) {
  const base = issuer.replace(/\/$/, '');
  return {
    authorization: `${base}/authorize`,
    pushedAuthorization: `${base}/par`,
    token: `${base}/token`,
    registration: `${base}/register`,
    agentRegistration: `${base}/aiagent/register`,
    jwks: `${base}/jwks`,
    introspection: `${base}/introspect`,
    revocation: `${base}/revoke`,
    userinfo: `${base}/userinfo`,
    tokeninfo: `${base}/tokeninfo`,
    deviceAuthorization: `${base}/device_authorization`,
    deviceVerification: `${base}/device`,
  };
}

export function createContext(parts: {
  config: AuthServerConfig;
  store: Store;
  cache: TtlCache;
  keys: KeyManager;
  audit: AuditLog;
  trackedTokens: BatchWriter<AccessTokenRecord>;
  log: Logger;
  now?: () => number;
  limiter?: LimiterFactory;
}): ServerContext {
  const { config } = parts;
  const issuer = config.issuer.replace(/\/$/, '');
  const now = parts.now ?? (() => Math.floor(Date.now() / 1000));
  let resources = new Map<string, Resource>();
  const adminId = adminResourceId(issuer);
  const toResource = (r: ResourceConfig): Resource => {
    if (r.id.replace(/\/$/, '') === adminId) throw new Error(`resource ${r.id}: this identifier is the built-in admin resource`);
    // Admin scope names belong to the admin resource alone: elsewhere they would look like admin
    // rights on a consent page and in a token.
    const adminNamed = r.scopes.find((scope) => isAdminScope(scope.name) || scope.name.startsWith('admin:'));
    if (adminNamed) throw new Error(`resource ${r.id}: scope ${adminNamed.name} is reserved for the built-in admin resource`);
    return toConfigured(r);
  };
  const toConfigured = (r: ResourceConfig): Resource => ({
    id: r.id,
    name: r.name,
    scopes: r.scopes,
    accessTokenTtl: r.access_token_ttl ?? config.tokens.access_token_ttl,
    tokenFormat: r.token_format,
    mayAct: r.may_act,
    claims: Object.entries(r.claims).map(([name, source]) => {
      if (PROTECTED_CLAIMS.has(name)) throw new Error(`resource ${r.id}: claim ${name} cannot be mapped`);
      return { name, expression: compileExpression(source) };
    }),
    exchange: { allowedActors: r.exchange.allowed_actors, maxDepth: r.exchange.max_depth, requireMayAct: r.exchange.require_may_act },
    resourceServers: r.resource_servers ?? [],
    requireDpop: r.require_dpop === true,
  });
  const own: Resource = {
    id: issuer,
    name: 'Your account',
    scopes: OIDC_SCOPES.map((name) => ({ name })),
    accessTokenTtl: config.tokens.access_token_ttl,
    tokenFormat: 'jwt',
    claims: [],
    exchange: { maxDepth: 1, requireMayAct: true },
    resourceServers: [],
  };
  // The built-in admin resource (docs/admin.md): always present; tokens for it carry admin scopes
  // narrowed to the user's roles. Write scopes are high-risk: an unverified client gets them only
  // when the admin ticks them.
  const admin: Resource = {
    id: adminId,
    name: 'Administration',
    scopes: ADMIN_SCOPES.map((name) => ({ name, description: adminScopeDescription(name), high_risk: name.endsWith(':write') })),
    accessTokenTtl: config.tokens.access_token_ttl,
    tokenFormat: 'jwt',
    claims: [],
    // Only the agents named in admin.delegation.actors, one hop, from an admin's own token.
    exchange: { maxDepth: 1, requireMayAct: false, allowedActors: config.admin.delegation.actors },
    resourceServers: [],
  };
  const install = (list: ResourceConfig[]) => {
    const next = new Map<string, Resource>(list.map((r) => [r.id, toResource(r)]));
    next.set(issuer, own);
    next.set(adminId, admin);
    resources = next;
  };
  install(config.resources);
  const trustedProxies = trustedProxyList(config.trusted_proxies);
  const metadataDocuments = createMetadataDocumentResolver(config.client_id_metadata_documents, now);
  // Agreements and authentication policies: the file's, then those an admin added (the file wins a
  // clash of names). Re-read like resources.
  let agreements = new Map<string, Sourced<AgreementConfig>>(config.agreements.map((a) => [a.id, { ...a, source: 'config' as const }]));
  let policies = new Map<string, Sourced<AuthenticationPolicyConfig>>(config.authentication_policies.map((p) => [p.name, { ...p, source: 'config' as const }]));
  for (const policy of config.authentication_policies) {
    const missing = missingAgreement(policy, agreements);
    if (missing) throw new Error(`policy ${policy.name}: unknown agreement ${missing}`);
  }
  checkClientFlags(config);
  // Client restrictions, re-read at most every 2 s: a disable on another instance reaches this one
  // that fast, and the token path pays one query per 2 s, not one per token.
  let restricted = { byId: new Map<string, { disabledAt?: number; tokensValidAfter?: number; expiresAt?: number }>(), readAt: 0 };
  const refreshDisabled = async () => {
    const rows = await parts.store.clients.listRestricted();
    restricted = { byId: new Map(rows.map((r) => [r.clientId, r])), readAt: Date.now() };
  };
  const restriction = async (clientId: string) => {
    if (Date.now() - restricted.readAt > RESTRICTION_CACHE_SECONDS * 1000) await refreshDisabled();
    return restricted.byId.get(clientId);
  };
  return {
    ...parts,
    config,
    issuer,
    now,
    url: (path) => `${issuer}${path}`,
    async findClient(clientId) {
      if (isMetadataDocumentClientId(clientId, config.client_id_metadata_documents)) {
        const client = await metadataDocuments.resolve(clientId);
        try {
          // A client that describes itself is held to the same policy as one that registers.
          return { ...client, metadata: applyRegistrationPolicy(config.registration, client.metadata, 'metadata_document').metadata };
        } catch (error) {
          if (!(error instanceof OAuthError)) throw error;
          throw new OAuthError('invalid_client', 'the client metadata document is not acceptable here', { reason: `registration policy: ${error.reason ?? error.message}` });
        }
      }
      return parts.store.clients.find(clientId);
    },
    resource: (id) => resources.get(id),
    resources: () => [...resources.values()].filter((r) => r !== own),
    checkResource: (definition) => void toResource(definition),
    async reloadResources() {
      const records = await parts.store.resources.list();
      const list: ResourceConfig[] = [];
      for (const record of records) {
        const parsed = resourceSchema.safeParse(record.definition);
        try {
          if (!parsed.success) throw new Error(parsed.error.issues[0]?.message);
          toResource(parsed.data);
          list.push(parsed.data);
        } catch (error) {
          // One bad stored definition must not take the others (or the server) down with it.
          parts.log.error({ resource: record.id, issue: (error as Error).message }, 'stored resource is invalid; skipped');
        }
      }
      install(list);
    },
    agreement: (id) => agreements.get(id),
    authenticationPolicy: (name) => (name ? policies.get(name) : undefined),
    listAgreements: () => [...agreements.values()],
    listAuthenticationPolicies: () => [...policies.values()],
    async reloadSettings() {
      const nextAgreements = new Map([...agreements].filter(([, a]) => a.source === 'config'));
      for (const record of await parts.store.settings.list('agreement')) {
        const parsed = agreementSchema.safeParse(record.definition);
        if (!parsed.success || nextAgreements.has(record.id)) {
          parts.log.error({ agreement: record.id }, 'stored agreement is invalid or shadowed by the configuration file; skipped');
          continue;
        }
        nextAgreements.set(record.id, { ...parsed.data, source: 'admin' });
      }
      const nextPolicies = new Map([...policies].filter(([, p]) => p.source === 'config'));
      for (const record of await parts.store.settings.list('authentication_policy')) {
        const parsed = authenticationPolicySchema.safeParse(record.definition);
        if (!parsed.success || nextPolicies.has(record.id) || missingAgreement(parsed.data, nextAgreements)) {
          parts.log.error({ policy: record.id }, 'stored authentication policy is invalid, shadowed, or names an unknown agreement; skipped');
          continue;
        }
        nextPolicies.set(record.id, { ...parsed.data, source: 'admin' });
      }
      agreements = nextAgreements;
      policies = nextPolicies;
    },
    async isDisabled(clientId) {
      const r = await restriction(clientId);
      return r !== undefined && (r.disabledAt !== undefined || (r.expiresAt !== undefined && r.expiresAt <= now()));
    },
    async isCutOff(clientId, iat) {
      const r = await restriction(clientId);
      if (!r) return false;
      return r.disabledAt !== undefined || (r.expiresAt !== undefined && r.expiresAt <= now()) || (r.tokensValidAfter !== undefined && iat <= r.tokensValidAfter);
    },
    refreshDisabled,
    verifiedTokens: new VerifiedTokenCache<AccessTokenClaims>(),
    clientAddress: (c) => addressBucket(clientAddress(c, trustedProxies)),
    limiter: parts.limiter ?? limiterFactory({ prefix: '' }),
  };
}

/** A client that may not take part in anything: disabled by an administrator, or an expired agent. */
export function unusableReason(client: ClientRecord, now: number): string | undefined {
  if (client.disabledAt !== undefined) return 'client is disabled';
  if (client.agent?.expiresAt !== undefined && client.agent.expiresAt <= now) return 'agent has expired';
  return undefined;
}

/**
 * The resource of a request that names none (RFC 8707 §2 leaves the choice to the server): the
 * client's default resource, else the one resource that offers every requested scope (several:
 * `invalid_target`, naming them), else — OpenID Connect scopes only — the authorization server.
 */
function defaultResource(ctx: ServerContext, client: Client, asked: string[]): string {
  if (client.metadata.default_resource) return client.metadata.default_resource;
  const wanted = asked.filter((s) => !isOidcScope(s));
  if (wanted.length === 0) return ctx.issuer;
  const offering = ctx.resources().filter((r) => wanted.every((s) => r.scopes.some((o) => o.name === s)));
  if (offering.length > 1) {
    throw new OAuthError('invalid_target', `several resources offer ${wanted.join(' ')}; name one with the resource parameter: ${offering.map((r) => r.id).sort().join(' ')}`);
  }
  if (offering.length === 0) throw new OAuthError('invalid_scope', `no resource offers ${wanted.join(' ')}`);
  return offering[0]!.id;
}

/**
 * Picks the resource a request is for (RFC 8707) and the scopes it gets. Exactly one resource per
 * token: the requested one, else a default (see `defaultResource`). Scopes must belong to that
 * resource (or be OpenID Connect scopes) and to the client's allowed set. For a self-registered
 * client, scopes the registration policy withholds are dropped (RFC 6749 §3.3 lets the server
 * grant less; the token response names what it granted) — unless that leaves none it asked for.
 */
export function resolveResourceAndScope(
  ctx: ServerContext,
  client: Client,
  requested: { resource?: string[]; scope?: string },
): { resource: Resource; scopes: string[] } {
  if (requested.resource && requested.resource.length > 1) {
    throw new OAuthError('invalid_target', 'request one resource per token');
  }
  const asked = parseScope(requested.scope);
  const resourceId = requested.resource?.[0] ?? defaultResource(ctx, client, asked);
  const resource = ctx.resource(resourceId) ?? ctx.resource(resourceId.replace(/\/$/, ''));
  if (!resource) {
    throw new OAuthError('invalid_target', 'the requested resource is unknown', { reason: `resource=${resourceId}` });
  }
  const offered = new Set([...resource.scopes.map((s) => s.name), ...OIDC_SCOPES]);
  // Admin scopes are gated by the signed-in user's roles (narrowAdminAuthorization) and, for a
  // client nobody vouched for, by ticks on the consent page; the registration allowlist would keep
  // every MCP client that registers itself from signing an admin in (docs/admin-mcp.md).
  const adminOpen = resource.id === adminResourceId(ctx.issuer) && isSelfRegistered(client) && ctx.config.admin.mcp.self_registered_clients;
  const limit = adminOpen ? undefined : clientScopeLimit(ctx.config.registration, client);
  const policy = isSelfRegistered(client);
  if (asked.length === 0) {
    const scopes = resource.scopes.map((s) => s.name).filter((s) => !limit || limit.has(s));
    if (policy && scopes.length === 0 && resource.scopes.length > 0) {
      throw new OAuthError('invalid_scope', `the client may not request any scope of ${resource.id}`, { reason: withheldReason(ctx.config.registration, resource.scopes.map((s) => s.name)) });
    }
    return { resource, scopes };
  }
  for (const scope of asked) {
    if (!offered.has(scope)) throw new OAuthError('invalid_scope', `scope ${scope} is not offered by ${resource.id}`);
    if (!policy && limit && !limit.has(scope)) throw new OAuthError('invalid_scope', `the client may not request scope ${scope}`);
  }
  const withheld = asked.filter((s) => limit && !limit.has(s));
  if (withheld.length === 0) return { resource, scopes: asked };
  const scopes = asked.filter((s) => !withheld.includes(s));
  const reason = withheldReason(ctx.config.registration, withheld);
  if (!scopes.some((s) => !isOidcScope(s))) throw new OAuthError('invalid_scope', `the client may not request scope ${withheld.join(' ')}`, { reason });
  ctx.audit.record({ at: ctx.now(), type: 'scope.withheld', outcome: 'success', clientId: client.clientId, reason, data: { resource: resource.id, scope_withheld: withheld.join(' ') } });
  return { resource, scopes };
}

/** Hono environment of the authorization server: endpoints note the authenticated client for the audit log. */
export interface AppEnv {
  Variables: { clientId: string };
}

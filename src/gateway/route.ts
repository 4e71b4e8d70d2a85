import type { JWK } from 'jose';
import { compileExpression, type CompiledExpression } from '../core/cel.ts';
import type { VerificationKey } from '../core/jwt.ts';
import { routeAuthorizationServers, routeIssuers, type AnyRouteConfig, type IssuerConfig, type RateLimitConfig, type RouteConfig } from '../config/gateway-schema.ts';
import { Mediator } from './mediator.ts';
import { RequestStates } from './request-state.ts';
import { TransactionClient } from './transactions.ts';
import { compilePins, type CompiledPins } from './pins/compile.ts';
import { RevocationList, type RevocationListOptions } from './revocation-list.ts';
import { introspectionValidator, issuerMetadata, jwksOptions, jwtValidator, type TokenValidator } from './token-validator.ts';
import { issuerSet, type IssuerSet, type TrustedIssuer } from './issuers.ts';
import type { SigningKeys } from './signing-keys.ts';
import type { RateLimiter, RateLimitStore } from './rate-limits.ts';
import type { KeySetCache, SharedVerificationCache } from './verification-cache.ts';
import { compileDpop, dpopMetadata, memoryDpopKey, type CompiledDpop, type DpopKeySource, type DpopReplayStore } from './dpop.ts';

/** Protocol traffic, not counted by rate limits unless a limit names it (issue 4). */
export const PROTOCOL_METHODS = new Set(['initialize', 'ping']);

/** A tool's approval rule (issue 14), `approval: required` being `when` absent and the defaults. */
export interface CompiledApproval {
  /** Absent: every call needs approval. */
  when?: CompiledExpression;
  lifetimeSeconds: number;
  /** Absent: all arguments are bound. */
  binds?: string[];
  summary?: string;
}

export interface CompiledTool {
  scopes: string[];
  allow?: CompiledExpression;
  reason?: string;
  approval?: CompiledApproval;
}

/** How the route asks for approvals: the AS's transaction endpoints, and the 2026-07-28 state MAC. */
export interface CompiledApprovals {
  client: TransactionClient;
  retryCheck: boolean;
  states: RequestStates;
}

export interface CompiledLimit {
  config: RateLimitConfig;
  limiter: RateLimiter;
}

/** A route with everything it needs at request time prepared once: CEL parsed, keys and limiters ready. */
export interface CompiledRoute {
  config: RouteConfig;
  /** `/.well-known/oauth-protected-resource` + the resource path (RFC 9728 §3.1). */
  metadataPath: string;
  metadataUrl: string;
  metadata: Record<string, unknown>;
  /** The trusted issuers (one per `issuers` entry, or the single-issuer form's one): the token's `iss` chooses. */
  validator: IssuerSet;
  tools: Map<string, CompiledTool>;
  rules: { allow: CompiledExpression; reason?: string }[];
  limits: CompiledLimit[];
  /** Whether some tool may be hidden from a caller: `tools/list` answers are then filtered. */
  filtersToolList: boolean;
  mediator?: Mediator;
  /** The issuer whose tokens the mediator exchanges (at that issuer); tokens of others are refused. */
  mediationIssuer?: string;
  approvals?: CompiledApprovals;
  /** Tool pinning (docs/gateway.md "Tool pinning"); absent when off. */
  pins?: CompiledPins;
  /** The first issuer's revocation list (each issuer's is on its `validator.issuers` entry). */
  revocations?: RevocationList;
  /** DPoP at this route (RFC 9449 §7); absent with `dpop.mode: off`. */
  dpop?: CompiledDpop;
  close(): void;
}

export interface CompileOptions {
  env: Record<string, string | undefined>;
  /** Where rate limit buckets live (the Node gateway: memory, or Redis with REDIS_URL); required by a route with rate_limits. */
  rateLimits?: RateLimitStore;
  rateLimitPrefix?: string;
  createVerifier?: (jwk: JWK, alg: string) => VerificationKey['verify'];
  onError?: (error: Error) => void;
  fetch?: typeof fetch;
  /** How key sets stay fresh: `timer` (the Node gateway, the default) or `on-use` (Workers: no timer outlives a request). */
  jwksSchedule?: 'timer' | 'on-use';
  /** The AS keys, kept across route reloads; without it each build fetches its own. */
  signingKeys?: SigningKeys;
  /**
   * Where routes get their revocation list: a registry that shares one per authorization server
   * and keeps it across reloads (`node/revocation-feeds.ts`). Without it, each route polls its own.
   */
  acquireRevocations?: (options: RevocationListOptions & { channel: string }) => { list: RevocationList; release(): void };
  /**
   * Verified tokens shared by every instance of the gateway (Workers: KV), read when a validator's
   * own memory misses. The Node gateway, one process, needs none. JWT routes only.
   */
  sharedVerifications?: SharedVerificationCache;
  /** Where JWT routes keep the AS's key set for other instances (Workers: the Cache API). */
  keySetCache?: KeySetCache;
  /** Where DPoP proof `jti`s are remembered (the Node gateway: Redis when REDIS_URL); without it, this process's memory. */
  dpopReplay?: DpopReplayStore;
  /** The environment variable with the DPoP nonce key (`dpop_nonce_key_env`), default MANDATE_GATEWAY_DPOP_NONCE_KEY. */
  dpopNonceKeyEnv?: string;
  /** The nonce key when that variable is unset (the Node gateway: one random key per process, kept across reloads). */
  dpopNonceKey?: Uint8Array;
  /** The gateway's DPoP key for `mediation.dpop` (the Node gateway: a key file, shared through Redis); without it, a key of this process. */
  dpopKey?: DpopKeySource;
  /** Reads a `tool_pins.snapshot` file (the Node gateway: JSON, relative to the config file); without it, only an inline snapshot is accepted (the Workers gateway). */
  readSnapshot?: (file: string) => unknown;
}

/** Smallest DPoP nonce key accepted (it keys an HMAC-SHA256). */
const NONCE_KEY_MIN = 32;

export class RouteConfigError extends Error {
  override name = 'RouteConfigError';
}

function compile(source: string, where: string): CompiledExpression {
  try {
    return compileExpression(source);
  } catch (error) {
    throw new RouteConfigError(`${where}: ${(error as Error).message}`);
  }
}

function secretFrom(env: CompileOptions['env'], name: string, where: string): string {
  const value = env[name];
  if (!value) throw new RouteConfigError(`${where}: environment variable ${name} is not set`);
  return value;
}

export function compileRoute(anyRoute: AnyRouteConfig, index: number, options: CompileOptions): CompiledRoute {
  const where = `routes[${index}] (${anyRoute.path})`;
  // Web routes (kind: web) are built by src/gateway/web/; this is the MCP chain's route.
  if (anyRoute.kind !== 'mcp') throw new RouteConfigError(`${where}: a ${anyRoute.kind} route is not an MCP route`);
  const route: RouteConfig = anyRoute;
  const resource = new URL(route.resource);
  const metadataPath = `/.well-known/oauth-protected-resource${resource.pathname === '/' ? '' : resource.pathname.replace(/\/$/, '')}`;
  const trusted = routeIssuers(route);
  // Approvals, tool pins and (by default) mediation talk to the first issuer, the preferred one.
  const issuer = trusted[0]!.issuer;
  const metadataOf = new Map(trusted.map((entry) => [entry.issuer, issuerMetadata(entry.issuer, options.fetch)]));

  const tools = new Map<string, CompiledTool>();
  for (const [name, rule] of Object.entries(route.tools)) {
    tools.set(name, {
      scopes: rule.scopes,
      allow: rule.allow ? compile(rule.allow, `${where} tools.${name}.allow`) : undefined,
      reason: rule.reason,
      approval: compileApproval(rule.approval, `${where} tools.${name}.approval`),
    });
  }
  if (!route.approvals && [...tools.values()].some((tool) => tool.approval)) {
    // The schema refuses this too; a route built from an unchecked object must not skip approvals.
    throw new RouteConfigError(`${where}: a tool needs approval but the route has no approvals block`);
  }
  const rules = route.rules.map((rule, i) => ({ allow: compile(rule.allow, `${where} rules[${i}]`), reason: rule.reason }));

  const store = options.rateLimits;
  if (route.rate_limits.length > 0 && !store) throw new RouteConfigError(`${where}: rate_limits need a rate limit store (CompileOptions.rateLimits; the Node gateway passes one)`);
  const limits = route.rate_limits.map((limit): CompiledLimit => ({
    config: limit,
    limiter: store!.limiter({ name: limit.name, points: limit.limit, windowSeconds: limit.window_seconds, keyPrefix: `${options.rateLimitPrefix ?? 'mandate:gw'}:${route.path}:${limit.name}` }),
  }));

  const mediationIssuer = route.mediation ? (route.mediation.issuer ?? issuer) : undefined;
  if (mediationIssuer !== undefined && !metadataOf.has(mediationIssuer)) throw new RouteConfigError(`${where} mediation.issuer: ${mediationIssuer} is not one of the route's issuers`);
  const mediator = route.mediation
    ? new Mediator({
        tokenEndpoint: route.mediation.token_endpoint,
        metadata: metadataOf.get(mediationIssuer!)!,
        clientId: route.mediation.client_id,
        clientSecret: secretFrom(options.env, route.mediation.client_secret_env, `${where} mediation`),
        resource: route.mediation.resource,
        scope: route.mediation.scope,
        fetch: options.fetch,
        dpop: route.mediation.dpop ? (options.dpopKey ?? memoryDpopKey()) : undefined,
      })
    : undefined;

  const approvals: CompiledApprovals | undefined = route.approvals
    ? (() => {
        const clientSecret = secretFrom(options.env, route.approvals.client_secret_env, `${where} approvals`);
        return {
          client: new TransactionClient({ issuer, clientId: route.approvals.client_id, clientSecret, fetch: options.fetch }),
          retryCheck: route.approvals.retry_check,
          states: new RequestStates(clientSecret),
        };
      })()
    : undefined;

  let pins: CompiledPins | undefined;
  try {
    pins = compilePins(route.tool_pins, { issuer, resource: route.resource, secret: (name) => secretFrom(options.env, name, `${where} tool_pins`), fetch: options.fetch, readSnapshot: options.readSnapshot });
  } catch (error) {
    if (error instanceof RouteConfigError) throw error;
    throw new RouteConfigError(`${where} tool_pins: ${(error as Error).message}`);
  }

  const feeds: { release(): void }[] = [];
  let validator: IssuerSet;
  try {
    validator = issuerSet(
      trusted.map((entry, i): TrustedIssuer => {
        const at = route.issuers ? `${where} issuers[${i}]` : where;
        const feed = entry.mode === 'jwt' ? revocationFeed(entry, route.issuers ? `${at} revocation_list` : `${where} token.revocation_list`, options) : undefined;
        if (feed) feeds.push(feed);
        return {
          issuer: entry.issuer,
          mode: entry.mode,
          validator: issuerValidator(entry, at, metadataOf.get(entry.issuer)!, options),
          tokenPrefix: entry.token_prefix,
          subjectPrefix: entry.subject_prefix,
          longerPrefixes: trusted.map((other) => other.subject_prefix).filter((other) => other.length > entry.subject_prefix.length),
          revocations: feed?.list,
        };
      }),
    );
  } catch (error) {
    for (const feed of feeds) feed.release();
    throw error;
  }

  const revocations = validator.issuers[0]!.revocations;

  const nonceKeyEnv = options.dpopNonceKeyEnv ?? 'MANDATE_GATEWAY_DPOP_NONCE_KEY';
  const nonceKey = options.env[nonceKeyEnv];
  if (route.dpop.mode !== 'off' && route.dpop.require_nonce && nonceKey !== undefined && nonceKey.length < NONCE_KEY_MIN) {
    throw new RouteConfigError(`${where} dpop: ${nonceKeyEnv} must hold at least ${NONCE_KEY_MIN} characters`);
  }
  // Without a configured key, nonces are this process's own (random): right for one instance only.
  const dpop = compileDpop(route.dpop, { replay: options.dpopReplay, nonceKey: nonceKey ? new TextEncoder().encode(nonceKey) : options.dpopNonceKey });

  const scopes = new Set([...route.scopes, ...[...tools.values()].flatMap((tool) => tool.scopes)]);
  return {
    config: route,
    metadataPath,
    metadataUrl: `${resource.origin}${metadataPath}`,
    // RFC 9728 §2
    metadata: {
      resource: route.resource,
      authorization_servers: routeAuthorizationServers(route),
      scopes_supported: [...scopes],
      bearer_methods_supported: ['header'],
      ...(route.resource_name ? { resource_name: route.resource_name } : {}),
      ...dpopMetadata(dpop),
      // draft-mcguinness-oauth-actor-profile: what this resource expects of delegated tokens.
      ...(route.actor_profile.required ? { actor_profile_required: true } : {}),
      ...(route.actor_profile.authorization_required ? { actor_authorization_required: true } : {}),
    },
    validator,
    tools,
    rules,
    limits,
    filtersToolList: route.unlisted_tools === 'deny' || [...tools.values()].some((tool) => tool.scopes.length > 0 || tool.allow),
    mediator,
    mediationIssuer,
    approvals,
    pins,
    revocations,
    dpop,
    close: () => {
      validator.close();
      for (const feed of feeds) feed.release();
    },
  };
}

function compileApproval(rule: RouteConfig['tools'][string]['approval'], where: string): CompiledApproval | undefined {
  if (rule === undefined) return undefined;
  if (rule === 'required') return { lifetimeSeconds: 300 };
  return {
    // `true` (the default) is no condition at all: skip its evaluation.
    when: rule.when.trim() === 'true' ? undefined : compile(rule.when, `${where}.when`),
    lifetimeSeconds: rule.lifetime_seconds,
    binds: rule.binds,
    summary: rule.summary,
  };
}

/** One issuer's validator: its keys (JWT) or its introspection client, its audience, its caches. */
function issuerValidator(entry: IssuerConfig, where: string, metadata: () => Promise<Record<string, unknown>>, options: CompileOptions): TokenValidator {
  if (entry.mode === 'introspection') {
    const introspection = entry.introspection;
    if (!introspection) throw new RouteConfigError(`${where}: token.mode introspection needs token.introspection`);
    return introspectionValidator({
      issuer: entry.issuer,
      audience: entry.audience,
      endpoint: introspection.endpoint,
      metadata,
      clientId: introspection.client_id,
      clientSecret: secretFrom(options.env, introspection.client_secret_env, where),
      cacheSeconds: introspection.cache_seconds,
      negativeCacheSeconds: introspection.negative_cache_seconds,
      cacheEntries: entry.cache_entries,
      fetch: options.fetch,
    });
  }
  // Keys per issuer: by its jwks_uri, or by the issuer when discovered (two issuers never share a set by accident).
  const source = entry.jwks_uri ?? entry.issuer;
  const keys = {
    jwksUri: entry.jwks_uri,
    metadata,
    refreshSeconds: entry.jwks_refresh_seconds,
    minRefreshSeconds: entry.jwks_min_refresh_seconds,
    createVerifier: options.createVerifier,
    onError: options.onError,
    schedule: options.jwksSchedule,
    keySetCache: options.keySetCache,
    keySetSource: source,
  };
  return jwtValidator({
    ...keys,
    issuer: entry.issuer,
    audience: entry.audience,
    algorithms: entry.algorithms,
    typ: entry.typ,
    clockSkewSeconds: entry.clock_skew_seconds,
    cacheEntries: entry.cache_entries,
    shared: options.sharedVerifications,
    jwks: options.signingKeys?.jwks(source, { ...jwksOptions(keys), fetch: options.fetch }),
  });
}

/** An issuer's revocation feed (jwt mode, `revocation_list`), from the host's registry or its own. */
function revocationFeed(entry: IssuerConfig, where: string, options: CompileOptions): { list: RevocationList; release(): void } | undefined {
  const listConfig = entry.revocation_list;
  if (!listConfig) return undefined;
  return (options.acquireRevocations ?? ownRevocationList)({
    endpoint: listConfig.endpoint ?? `${entry.issuer.replace(/\/$/, '')}/revocations`,
    issuer: entry.issuer,
    clientId: listConfig.client_id,
    clientSecret: secretFrom(options.env, listConfig.client_secret_env, where),
    pollMs: listConfig.poll_seconds * 1000,
    channel: listConfig.channel,
    fetch: options.fetch,
    onError: options.onError,
  });
}

function ownRevocationList(options: RevocationListOptions): { list: RevocationList; release(): void } {
  // Without a host registry (Node's polls on a timer from its start): polled on use, no timer —
  // a Worker without GATEWAY_STATE, where a timer set in a request never fires after it.
  const list = new RevocationList({ ...options, startOnUse: true });
  return { list, release: () => list.stop() };
}

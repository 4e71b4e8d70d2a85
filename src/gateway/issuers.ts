import { OAuthError } from '../core/errors.ts';
import { deepFreeze } from '../core/cel.ts';
import type { RevocationList } from './revocation-list.ts';
import type { TokenClaims, TokenValidator, ValidationContext } from './token-validator.ts';
import type { Principal } from './types.ts';

/**
 * Several authorization servers behind one route (issue 18 part 3, docs/gateway.md "Several
 * authorization servers"). Each trusted issuer has its own validator (its keys or introspection
 * client, audience, caches) and revocation list; the token's `iss`, read from the unverified JWT
 * payload, chooses one before anything is fetched, so a token is only ever checked with — and sent
 * to — the authorization server it names. An opaque token goes to the one introspection issuer
 * whose `token_prefix` it starts with, or to the one without a prefix.
 */
export interface TrustedIssuer {
  issuer: string;
  mode: 'jwt' | 'introspection';
  validator: TokenValidator;
  /** introspection mode: the prefix of this issuer's opaque tokens, if it declares one. */
  tokenPrefix?: string;
  /** Put before `sub` to make the caller's subject ('' for none). */
  subjectPrefix: string;
  /** The other issuers' prefixes that are longer than this one's: a qualified identity must not start with one (see `posesAsAnotherIssuer`). */
  longerPrefixes?: readonly string[];
  revocations?: RevocationList;
}

/** A JWT naming an issuer the route does not trust (audited as `unknown_issuer`): refused before any fetch. */
export class UnknownIssuerError extends OAuthError {
  constructor(reason: string) {
    super('invalid_token', 'the token is invalid or expired', { reason });
  }
}

/** A route's issuers behind one validator, which also tells which issuer vouched for a token. */
export interface IssuerSet extends TokenValidator {
  readonly issuers: readonly TrustedIssuer[];
  /** The issuer whose validator returned these claims (the object `validate` resolved with). */
  issuerOf(claims: TokenClaims): TrustedIssuer | undefined;
}

/** Three base64url parts: the shape of a compact JWS (RFC 7515 §7.1). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*$/;
const decoder = new TextDecoder('utf-8', { fatal: true });
/** The longest `iss` quoted in an audit reason. */
const MAX_QUOTED = 200;

/**
 * The `iss` of a JWT, unverified (only to choose where to verify it): a string, `null` for a JWT
 * without one, or undefined when the token is not a JWT (an opaque token).
 */
export function unverifiedIssuer(token: string): string | null | undefined {
  const payload = COMPACT_JWS.exec(token)?.[1];
  if (payload === undefined) return undefined;
  let claims: unknown;
  try {
    const binary = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    claims = JSON.parse(decoder.decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) return undefined;
  const iss = (claims as { iss?: unknown }).iss;
  return typeof iss === 'string' ? iss : null;
}

export function issuerSet(issuers: TrustedIssuer[]): IssuerSet {
  const byIssuer = new Map(issuers.map((entry) => [entry.issuer, entry]));
  const prefixed = issuers.filter((entry) => entry.mode === 'introspection' && entry.tokenPrefix !== undefined);
  const catchAll = issuers.find((entry) => entry.mode === 'introspection' && entry.tokenPrefix === undefined);
  const vouched = new WeakMap<TokenClaims, TrustedIssuer>();

  /** The issuer that checks `token`; throws when none may. */
  const choose = (token: string): TrustedIssuer => {
    const iss = unverifiedIssuer(token);
    if (typeof iss === 'string') {
      const entry = byIssuer.get(iss);
      if (entry) return entry;
      const quoted = JSON.stringify(iss.length > MAX_QUOTED ? `${iss.slice(0, MAX_QUOTED)}…` : iss);
      throw new UnknownIssuerError(`iss ${quoted} is not a trusted issuer of this route`);
    }
    // Not a JWT, or one without iss: an introspection issuer by prefix, else the one without a prefix.
    const entry = prefixed.find((candidate) => token.startsWith(candidate.tokenPrefix!)) ?? catchAll;
    if (entry) return entry;
    // A route with one issuer lets its validator say what is wrong (as before several issuers existed).
    if (issuers.length === 1) return issuers[0]!;
    throw new OAuthError('invalid_token', 'the token is invalid or expired', { reason: iss === null ? 'a JWT without iss' : 'not a JWT, and no issuer of this route introspects opaque tokens' });
  };

  /** A token seen before is in its issuer's memory: no decoding on the common path. */
  const cached = (token: string): TokenClaims | undefined => {
    for (const entry of issuers) {
      const claims = entry.validator.cached?.(token);
      if (claims && vouched.get(claims) === entry) return claims;
    }
    return undefined;
  };

  return {
    issuers,
    issuerOf: (claims) => vouched.get(claims),
    cached,
    async validate(token: string, context?: ValidationContext): Promise<TokenClaims> {
      const known = cached(token);
      if (known) return known;
      const entry = choose(token);
      const claims = await entry.validator.validate(token, context);
      vouched.set(claims, entry);
      return claims;
    },
    close: () => {
      for (const entry of issuers) entry.validator.close();
    },
  };
}

/** Qualified principals by the plain one (both cached per token), so a token costs the copy once. */
const qualified = new WeakMap<Principal, Principal>();

/**
 * The caller with its issuer's `subject_prefix` before every identity the token asserts — `sub`,
 * `client_id` and each `act` entry's `sub` and `client_id` (routes with several issuers) — so that
 * the users, clients and agents of two authorization servers never share a session, a rate-limit
 * bucket, a tool rule's verdict or upstream state: a partner issuer's token naming the in-house
 * AS's client is not that client. `claims` stays the token's own (CEL `claims.iss` tells issuers apart).
 */
export function qualifiedPrincipal(principal: Principal, prefix: string): Principal {
  if (prefix === '') return principal;
  const known = qualified.get(principal);
  if (known) return known;
  const sub = `${prefix}${principal.sub}`;
  const clientId = principal.clientId === undefined ? undefined : `${prefix}${principal.clientId}`;
  const actors = principal.actors.map((actor) => ({ ...actor, sub: `${prefix}${actor.sub}`, ...(typeof actor.client_id === 'string' ? { client_id: `${prefix}${actor.client_id}` } : {}) }));
  const act = (principal.cel.act as readonly { sub: string; client_id: string }[]).map((entry) => ({ ...entry, sub: `${prefix}${entry.sub}`, client_id: entry.client_id === '' ? '' : `${prefix}${entry.client_id}` }));
  const result: Principal = { ...principal, audited: undefined, sub, ...(clientId === undefined ? {} : { clientId }), actors, cel: deepFreeze({ ...principal.cel, sub, client_id: clientId ?? '', act }) };
  qualified.set(principal, result);
  return result;
}

/**
 * An identity of this issuer's token that would read as another issuer's once qualified — with
 * `subject_prefix: ""` on one issuer and `https://b.example#` on another, a sub
 * `https://b.example#alice` from the first is the second's alice — or undefined. Only a longer
 * prefix can be posed as (a shorter one is caught when its own issuer's tokens are checked).
 */
export function posesAsAnotherIssuer(principal: Principal, issuer: TrustedIssuer): string | undefined {
  const longer = issuer.longerPrefixes;
  if (!longer || longer.length === 0) return undefined;
  const identities = [principal.sub, principal.clientId ?? '', ...principal.actors.flatMap((actor) => [actor.sub, typeof actor.client_id === 'string' ? actor.client_id : ''])];
  for (const identity of identities) {
    const prefix = longer.find((candidate) => identity.startsWith(candidate));
    if (prefix !== undefined) return `${JSON.stringify(identity.length > MAX_QUOTED ? `${identity.slice(0, MAX_QUOTED)}…` : identity)} would read as an identity of the issuer with subject_prefix ${JSON.stringify(prefix)}`;
  }
  return undefined;
}

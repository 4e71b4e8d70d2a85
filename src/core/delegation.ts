/**
 * The delegation model of RFC 8693 §4: a token's `act` claim names the party acting for `sub`;
 * a nested `act` names who acted before it (§4.1), outermost = most recent. `may_act` (§4.4)
 * names who may act on a token.
 */
export interface Actor {
  sub: string;
  /** draft-mcguinness-oauth-actor-profile §3.4: the namespace of `sub` (the issuer that named the actor). */
  iss?: string;
  /** The kind of entity acting, space-separated entity profiles (`ai_agent`, `service`, …). */
  sub_profile?: string;
  /** Mandate's extension member: the actor's OAuth client. */
  client_id?: string;
  act?: Actor;
  [claim: string]: unknown;
}

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** RFC 7523 §2.1: a JWT as an authorization grant (ID-JAG, workload identity JWTs). */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** RFC 8693 §3: token type identifiers (and the ID-JAG's, draft-ietf-oauth-identity-assertion-authz-grant §9.2). */
export const TOKEN_TYPES = {
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  refreshToken: 'urn:ietf:params:oauth:token-type:refresh_token',
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  idJag: 'urn:ietf:params:oauth:token-type:id-jag',
} as const;

/** The ID-JAG's JWT `typ` header (draft-ietf-oauth-identity-assertion-authz-grant §3.1, RFC 8725 §3.11). */
export const ID_JAG_TYP = 'oauth-id-jag+jwt';

/** The ID-JAG grant profile, in `authorization_grant_profiles_supported` (the draft's §7). */
export const ID_JAG_PROFILE = 'urn:ietf:params:oauth:grant-profile:id-jag';

export function isActor(value: unknown): value is Actor {
  return typeof value === 'object' && value !== null && typeof (value as Actor).sub === 'string';
}

/** The chain as a list, most recent actor first. */
export function actorChain(act: unknown): Actor[] {
  const chain: Actor[] = [];
  let current = act;
  while (isActor(current) && chain.length < 32) {
    chain.push(current);
    current = current.act;
  }
  return chain;
}

/** A new outermost actor with the previous chain nested inside it. */
export function nestActor(actor: { sub: string; iss?: string; sub_profile?: string; client_id?: string }, previous: unknown): Actor {
  return isActor(previous) ? { ...actor, act: previous } : { ...actor };
}

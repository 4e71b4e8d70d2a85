import { compactVerify, decodeJwt, decodeProtectedHeader, type JSONWebKeySet, type JWTPayload } from 'jose';
import { OAuthError } from '../../core/errors.ts';
import { ID_JAG_TYP } from '../../core/delegation.ts';
import { parseScope } from '../../core/scopes.ts';
import type { Client } from '../../core/client-metadata.ts';
import type { TrustedIdpConfig } from '../../config/schema.ts';
import { adminResourceId } from '../../admin/scopes.ts';
import { hashSecret } from '../hash.ts';
import { issuerKeys } from '../federation/issuer-keys.ts';
import { clientScopeLimit } from '../registration-policy.ts';
import { resolveResourceAndScope, type Resource, type ServerContext } from '../context.ts';
import type { Params } from '../params.ts';
import type { DpopProof } from '../grants/types.ts';

/** Clock skew tolerated on `iat`, `nbf` and `exp` (seconds). */
export const ID_JAG_CLOCK_SKEW = 30;

/** The claims of a verified ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant §3.1). */
export interface IdJagClaims extends JWTPayload {
  iss: string;
  sub: string;
  jti: string;
  exp: number;
  iat: number;
  client_id: string;
  resource?: string | string[];
  scope?: string;
  email?: string;
  email_verified?: boolean;
  cnf?: { jkt?: string };
}

/** What the grant issues from a verified ID-JAG. */
export interface VerifiedIdJag {
  claims: IdJagClaims;
  idp: TrustedIdpConfig;
  resource: Resource;
  scopes: string[];
  /** The key the access token is bound to (the ID-JAG's `cnf.jkt`, else the request's proof). */
  jkt?: string;
  /** SHA-256 of the `jti` (base64url): what the audit log and the replay cache hold. */
  jtiHash: string;
}

/** The header and claims of an assertion, read without trusting them (dispatch, audit). */
export function peekAssertion(assertion: string): { typ?: string; iss?: string } | undefined {
  try {
    const header = decodeProtectedHeader(assertion);
    const payload = decodeJwt(assertion);
    return { typ: typeof header.typ === 'string' ? header.typ : undefined, iss: typeof payload.iss === 'string' ? payload.iss : undefined };
  } catch {
    return undefined;
  }
}

/** RFC 8725 §3.11 / RFC 7515 §4.1.9: `typ` names the ID-JAG media type (the `application/` prefix optional, case-insensitive). */
export function isIdJagTyp(typ: string | undefined): boolean {
  return typeof typ === 'string' && typ.toLowerCase().replace(/^application\//, '') === ID_JAG_TYP;
}

const refuse = (reason: string, description = 'the assertion is invalid'): never => {
  throw new OAuthError('invalid_grant', description, { reason });
};

/**
 * Verifies an ID-JAG presented with the jwt-bearer grant (draft-ietf-oauth-identity-assertion-authz-grant
 * §4.4.1, RFC 7521 §5.2, RFC 7523 §3, MCP EMA §§5.1, 7.2.1, 7.4, 7.6.2) and decides the resource,
 * the scopes and the key binding of the token to issue. The checks run cheap first and the
 * signature before anything that touches the store: typ → a trusted issuer → the signature with
 * its keys and algorithms → required claims → `aud` = our issuer → times → `client_id` = the
 * authenticated client → the client may use this IdP → `cnf` / DPoP → resource → scopes. The `jti`
 * is spent last (`spendJti`), after every pure check, so a refused grant does not burn it.
 * Refusals are `invalid_grant` (RFC 6749 §5.2) unless said otherwise; the reason goes to the audit log.
 */
export async function verifyIdJag(ctx: ServerContext, request: { assertion: string; client: Client; params: Params; dpop?: DpopProof }): Promise<VerifiedIdJag> {
  const { assertion, client, params, dpop } = request;
  const peeked = peekAssertion(assertion);
  if (!peeked) return refuse('the assertion is not a JWT');
  if (!isIdJagTyp(peeked.typ)) return refuse(`typ ${JSON.stringify(peeked.typ)} is not ${ID_JAG_TYP}`);
  // ID-JAG §8.3: never our own assertions (also refused at config load).
  const idp = ctx.config.trusted_idps.find((entry) => entry.issuer === peeked.iss);
  if (!idp || peeked.iss === ctx.issuer) return refuse(`issuer ${JSON.stringify(peeked.iss)} is not a trusted IdP`, 'the assertion issuer is not trusted');

  let claims: IdJagClaims;
  try {
    const keys = issuerKeys(ctx, { issuer: idp.issuer, jwks_uri: idp.jwks_uri, jwks: idp.jwks as JSONWebKeySet | undefined, allowLoopback: idp.allow_loopback });
    const { payload } = await compactVerify(assertion, keys, { algorithms: idp.algorithms });
    claims = JSON.parse(new TextDecoder().decode(payload)) as IdJagClaims;
  } catch (error) {
    const code = (error as { code?: string }).code;
    return refuse(`signature of ${idp.issuer}: ${code ? `${code} ` : ''}${(error as Error).message}`);
  }
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) return refuse('the payload is not a JSON object');

  // §3.1: the required claims, with their types.
  for (const name of ['iss', 'sub', 'jti', 'client_id'] as const) {
    if (typeof claims[name] !== 'string' || claims[name] === '') return refuse(`claim ${name} is missing or not a string`);
  }
  for (const name of ['exp', 'iat'] as const) {
    if (typeof claims[name] !== 'number' || !Number.isFinite(claims[name])) return refuse(`claim ${name} is missing or not a number`);
  }
  if (claims.aud === undefined) return refuse('claim aud is missing');

  // §4.4.1 / RFC 7523 §3 item 3: the audience is this server, and only this server.
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (aud.length !== 1 || aud[0] !== ctx.issuer) return refuse(`aud ${JSON.stringify(claims.aud)} is not this issuer alone`);

  const now = ctx.now();
  if (claims.exp <= now - ID_JAG_CLOCK_SKEW) return refuse(`expired at ${claims.exp} (now ${now})`);
  if (claims.iat > now + ID_JAG_CLOCK_SKEW) return refuse(`iat ${claims.iat} is in the future (now ${now})`);
  if (typeof claims.nbf === 'number' && claims.nbf > now + ID_JAG_CLOCK_SKEW) return refuse(`not valid before ${claims.nbf} (now ${now})`);
  if (claims.exp - claims.iat > idp.max_lifetime_seconds) return refuse(`lives ${claims.exp - claims.iat} s, longer than ${idp.max_lifetime_seconds} s`);

  // §4.4.1: the client the IdP issued it for is the client presenting it.
  if (claims.client_id !== client.clientId) return refuse(`client_id ${claims.client_id} is not the authenticated client ${client.clientId}`);
  if (idp.clients && !idp.clients.includes(client.clientId)) {
    throw new OAuthError('unauthorized_client', 'the client may not present assertions of this issuer', { reason: `${client.clientId} is not in trusted_idps[${idp.issuer}].clients` });
  }

  // §8.6.1.2: an ID-JAG bound to a key needs a proof of that key; an unbound one may be bound by the proof sent.
  const cnfJkt = claims.cnf?.jkt;
  if (claims.cnf !== undefined && typeof cnfJkt !== 'string') return refuse('cnf has no jkt');
  if (cnfJkt !== undefined && dpop?.jkt !== cnfJkt) {
    return refuse(dpop ? 'the DPoP proof key is not the ID-JAG cnf.jkt' : 'the ID-JAG is bound to a key (cnf.jkt) and no DPoP proof was sent');
  }

  const resource = pickResource(ctx, client, idp, claims, params);
  const scopes = grantedScopes(ctx, client, resource, claims, params);
  return { claims, idp, resource, scopes, jkt: cnfJkt ?? dpop?.jkt, jtiHash: hashSecret(claims.jti) };
}

/**
 * EMA §7.6.2 / §5.1: the token is for one resource the ID-JAG names and this server serves. The
 * request's `resource` picks one of the claim's (else `invalid_target`); without a claim the
 * IdP entry decides (`require_resource`).
 */
function pickResource(ctx: ServerContext, client: Client, idp: TrustedIdpConfig, claims: IdJagClaims, params: Params): Resource {
  const requested = params.all('resource');
  if (requested.length > 1) throw new OAuthError('invalid_target', 'request one resource per token');
  let id: string;
  if (claims.resource === undefined) {
    if (idp.require_resource) return refuse('the ID-JAG names no resource');
    id = resolveResourceAndScope(ctx, client, { resource: requested, scope: undefined }).resource.id;
  } else {
    const named = Array.isArray(claims.resource) ? claims.resource : [claims.resource];
    if (named.length === 0 || named.some((r) => typeof r !== 'string')) return refuse('claim resource is not a string or an array of strings');
    if (requested.length === 1) {
      if (!named.includes(requested[0]!)) throw new OAuthError('invalid_target', 'the requested resource is not one the assertion names', { reason: `resource=${requested[0]}, ID-JAG resource ${JSON.stringify(claims.resource)}` });
      id = requested[0]!;
    } else if (named.length === 1) {
      id = named[0]!;
    } else {
      throw new OAuthError('invalid_target', 'the assertion names several resources; pick one with the resource parameter', { reason: `ID-JAG resource ${JSON.stringify(claims.resource)}` });
    }
  }
  const resource = ctx.resource(id);
  // Never this server itself nor its admin resource: admin tokens follow an administrator's own sign-in.
  if (!resource || resource.id === ctx.issuer || resource.id === adminResourceId(ctx.issuer)) return refuse(`resource ${id} is not served here`);
  return resource;
}

/**
 * EMA §7.2.1: the scopes granted are those requested ∩ the ID-JAG's ∩ what the resource offers ∩
 * what the client may hold; nothing requested → the ID-JAG's (∩ the rest). An ID-JAG without
 * `scope` grants none. A request left with nothing is `invalid_scope`, as is a resource with scopes
 * and an ID-JAG granting none of them.
 */
function grantedScopes(ctx: ServerContext, client: Client, resource: Resource, claims: IdJagClaims, params: Params): string[] {
  if (claims.scope !== undefined && typeof claims.scope !== 'string') return refuse('claim scope is not a string');
  const asserted = new Set(parseScope(claims.scope));
  const offered = new Set(resource.scopes.map((s) => s.name));
  const limit = clientScopeLimit(ctx.config.registration, client);
  const requested = parseScope(params.get('scope'));
  const usable = (s: string) => asserted.has(s) && offered.has(s) && (!limit || limit.has(s));
  if (requested.length > 0) {
    const granted = requested.filter(usable);
    if (granted.length === 0) throw new OAuthError('invalid_scope', 'none of the requested scopes is granted by the assertion', { reason: `requested ${requested.join(' ')}, ID-JAG scope ${JSON.stringify(claims.scope ?? '')}` });
    return granted;
  }
  const granted = [...asserted].filter(usable);
  if (granted.length === 0 && offered.size > 0) throw new OAuthError('invalid_scope', 'the assertion grants no scope this resource offers', { reason: `ID-JAG scope ${JSON.stringify(claims.scope ?? '')}, ${resource.id}` });
  return granted;
}

/**
 * EMA §7.4.2: the `jti` is single use until the ID-JAG expires, per issuer. The cache (Redis when
 * `REDIS_URL` is set, so every instance) keeps only hashes. An unreachable cache fails the request.
 */
export async function spendJti(ctx: ServerContext, verified: VerifiedIdJag): Promise<void> {
  const { claims } = verified;
  const ttl = Math.max(claims.exp - ctx.now() + ID_JAG_CLOCK_SKEW, 1);
  const fresh = await ctx.cache.add(`idjag:${hashSecret(claims.iss)}:${verified.jtiHash}`, 1, ttl);
  if (!fresh) refuse(`jti replayed (sha-256 ${verified.jtiHash})`);
}

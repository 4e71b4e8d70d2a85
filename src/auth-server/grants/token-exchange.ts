import { OAuthError } from '../../core/errors.ts';
import { signInStands } from '../id-jag/issue.ts';
import { adminResourceId } from '../../admin/scopes.ts';
import { verifyJwt, type AccessTokenClaims } from '../../core/jwt.ts';
import { actorChain, nestActor, TOKEN_EXCHANGE_GRANT, TOKEN_TYPES } from '../../core/delegation.ts';
import { formatScope, parseScope } from '../../core/scopes.ts';
import { isPublicClient, type Client } from '../../core/client-metadata.ts';
import type { Resource, ServerContext } from '../context.ts';
import type { Params } from '../params.ts';
import { lookupToken } from '../token-lookup.ts';
import { issueAccessToken, tokenTypeOf } from '../tokens.ts';
import { checkBoundSubjectToken } from '../dpop.ts';
import type { DpopProof, GrantHandler } from './types.ts';
import { issueIdJag } from '../id-jag/issue.ts';
import { clientScopeLimit, isSelfRegistered, withheldReason } from '../registration-policy.ts';
import { auditDetailsIssued, grantDetails, requestedDetails } from '../authorization-details.ts';
import { actorEntry, actorProfiles } from '../actor-profile.ts';

const ACCESS_TOKEN_TYPES: readonly string[] = [TOKEN_TYPES.accessToken, TOKEN_TYPES.jwt];

/**
 * OAuth 2.0 Token Exchange (RFC 8693) for delegation. Per §2.2.2, a subject or actor token that is
 * invalid or unacceptable by policy is `invalid_request`; a target refused is `invalid_target`.
 * a client (the actor) trades a user's token
 * (the subject token) for a token for another resource. The actor is the authenticated client, or
 * the subject of an actor token issued to that client. The subject token's `may_act` must name the
 * actor. The new token keeps `sub`, `auth_time` and `acr`, is bound to the requested resource,
 * only narrows scope, ends no later than the subject token, and carries `act` = the actor with the
 * subject token's own `act` nested inside (§4.1). Each resource bounds the chain's depth and which
 * actors may appear in it.
 *
 * With `authorization_details` (RFC 9396, type `mcp_tool_call`), the new token also carries approved
 * transactions. Each must have been created for exactly the token this exchange issues: the same
 * user, client, `act` chain and resource. The chain compared is the new token's (the actor nested
 * over the subject token's chain), because that is the token the gateway will see; the approval was
 * shown to the user with that chain. So an agent repeats the exchange that gave it the token the
 * call was held for, adding `authorization_details`; an exchange that adds another actor is another
 * chain, refused (docs/high-risk-actions.md, "RAR: the approval in the token").
 */
export const tokenExchangeGrant: GrantHandler = {
  grantType: TOKEN_EXCHANGE_GRANT,
  parameters: ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'resource', 'audience', 'scope', 'requested_token_type', 'authorization_details'],
  async handler(ctx, { client, params, dpop }) {
    const trace: Record<string, unknown> = { scope_requested: params.get('scope') };
    try {
      // An ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant §4.3) is no access token: its own path (WP-A).
      const idJag = params.get('requested_token_type') === TOKEN_TYPES.idJag;
      const result = idJag ? await issueIdJag(ctx, { client, params, dpop }, trace) : await exchange(ctx, client, params, trace, dpop);
      return { response: result.response, audit: { ...result.audit, ...trace, decision: 'allowed' } };
    } catch (error) {
      if (error instanceof OAuthError) {
        ctx.audit.record({
          at: ctx.now(),
          type: 'token.exchange_refused',
          outcome: 'failure',
          clientId: client.clientId,
          sub: trace.subject as string | undefined,
          error: error.code,
          reason: error.reason ?? error.message,
          data: { ...trace, decision: 'refused' },
        });
        error.audited = true;
      }
      throw error;
    }
  },
};

async function exchange(ctx: ServerContext, client: Client, params: Params, trace: Record<string, unknown>, dpop?: DpopProof) {
  if (isPublicClient(client)) throw new OAuthError('unauthorized_client', 'token exchange needs an authenticated client');
  const requestedType = params.get('requested_token_type');
  if (requestedType !== undefined && !ACCESS_TOKEN_TYPES.includes(requestedType)) {
    throw new OAuthError('invalid_request', `requested_token_type ${requestedType} is not supported; ask for an access token`);
  }
  // Parsed first: a malformed or unknown type is refused before any token is looked at (RFC 9396 §5).
  const requestedApprovals = requestedDetails(params);

  const { claims: subject, grantId: rootGrantId } = await subjectClaims(ctx, client, params.require('subject_token'), params.require('subject_token_type'));
  trace.subject = subject.sub;
  trace.subject_client = subject.client_id;
  // RFC 9449: a DPoP-bound subject token is exchanged by its key holder or its resource server only (WP-B).
  checkBoundSubjectToken(ctx, client, subject, dpop);
  const actor = await actorClaims(ctx, client, params);
  const resource = targetResource(ctx, params);
  trace.resource = resource.id;
  if (resource.id === adminResourceId(ctx.issuer)) {
    const aud = Array.isArray(subject.aud) ? subject.aud : [subject.aud];
    // The admin signed in through this very agent: a token it picked up elsewhere is not enough.
    const reason = !aud.includes(resource.id)
      ? `subject token audience ${aud.join(' ')} is not the admin resource`
      : subject.act !== undefined
        ? 'subject token already carries act'
        : subject.client_id !== client.clientId
          ? `subject token was issued to ${String(subject.client_id)}, not ${client.clientId}`
          : undefined;
    if (reason) throw new OAuthError('invalid_request', "an agent acts for an administrator only from the administrator's own token for the admin resource, issued to that agent", { reason });
  }

  const mayAct = subject.may_act as { sub?: unknown } | undefined;
  // A may_act that names someone else always refuses; only its absence can be waived by a resource.
  if (mayAct?.sub !== actor.sub && (mayAct !== undefined || resource.exchange.requireMayAct)) {
    throw new OAuthError('invalid_request', 'the subject token does not allow this client to act for its subject', {
      reason: mayAct ? `may_act.sub=${String(mayAct.sub)}, actor=${actor.sub}` : `subject token has no may_act; actor=${actor.sub}`,
    });
  }

  // draft-mcguinness-oauth-actor-profile §3.4–3.5: the new outermost entry names the actor fully;
  // the subject token's chain is nested as received (old entries keep their bare shape).
  const act = nestActor(actorEntry(ctx, client, actor), subject.act);
  const actors = actorChain(act);
  const chain = actors.map((a) => a.sub);
  trace.actor_chain = chain;
  trace.act_profiles = actorProfiles(actors);
  if (chain.length > resource.exchange.maxDepth) {
    throw new OAuthError('invalid_request', 'the delegation chain would be too long for this resource', { reason: `depth ${chain.length} > ${resource.exchange.maxDepth}` });
  }
  const allowed = resource.exchange.allowedActors;
  const stranger = allowed && chain.find((sub) => !allowed.includes(sub));
  if (stranger) throw new OAuthError('invalid_target', 'an actor in the delegation chain may not act at this resource', { reason: `actor ${stranger} not allowed for ${resource.id}` });
  for (const sub of chain) {
    if (await ctx.isDisabled(sub)) throw new OAuthError('invalid_request', 'an actor in the delegation chain is disabled', { reason: `${sub} disabled` });
  }

  const scopes = narrowedScopes(ctx, client, resource, parseScope(subject.scope), parseScope(params.get('scope')));
  trace.scope_granted = formatScope(scopes);
  const approvals = requestedApprovals && (await grantDetails(ctx, requestedApprovals, { sub: subject.sub, clientId: client.clientId, act: chain, resource: resource.id }, trace));

  const { token, claims, expiresIn } = await issueAccessToken(ctx, {
    sub: subject.sub,
    client,
    resource,
    scopes,
    grantType: TOKEN_EXCHANGE_GRANT,
    subject,
    actor,
    notAfter: Math.min(subject.exp, approvals?.notAfter ?? subject.exp),
    rootGrantId,
    ...(dpop ? { jkt: dpop.jkt } : {}),
    extra: {
      act,
      ...(approvals ? { authorization_details: approvals.details } : {}),
      ...(subject.auth_time !== undefined ? { auth_time: subject.auth_time } : {}),
      ...(subject.acr !== undefined ? { acr: subject.acr } : {}),
      ...(subject.sid !== undefined ? { sid: subject.sid } : {}),
    },
  });
  if (approvals) auditDetailsIssued(ctx, approvals, { jti: claims.jti, grantType: TOKEN_EXCHANGE_GRANT, clientId: client.clientId, exp: claims.exp });
  return {
    response: {
      access_token: token,
      issued_token_type: TOKEN_TYPES.accessToken,
      token_type: tokenTypeOf(claims),
      expires_in: expiresIn,
      ...(scopes.length > 0 ? { scope: formatScope(scopes) } : {}),
      // RFC 9396 §7: the token response says which authorization details the token carries.
      ...(approvals ? { authorization_details: approvals.details } : {}),
    },
    audit: { sub: subject.sub, resource: resource.id, scope: formatScope(scopes), jti: claims.jti },
  };
}

/** The subject token: an active access token of this issuer, or (as an option) an ID token issued to this client. */
async function subjectClaims(ctx: ServerContext, client: Client, token: string, type: string): Promise<{ claims: AccessTokenClaims; grantId?: string }> {
  if (ACCESS_TOKEN_TYPES.includes(type)) {
    const found = await lookupToken(ctx, token, 'access_token');
    if (found?.kind !== 'access_token') throw new OAuthError('invalid_request', 'the subject token is invalid, expired or revoked');
    return { claims: found.claims, grantId: found.grantId };
  }
  if (type === TOKEN_TYPES.idToken) {
    const claims = await verifyJwt<AccessTokenClaims>(ctx.keys, token, { issuer: ctx.issuer, typ: 'JWT', audience: client.clientId }).catch(() => {
      throw new OAuthError('invalid_request', 'the subject ID token is invalid, expired, or not issued to this client');
    });
    if (await ctx.isCutOff(client.clientId, claims.iat)) throw new OAuthError('invalid_request', 'the subject ID token was issued before its client was disabled');
    // As for an ID-JAG: an ID token stands for its sign-in only while that sign-in's grant does.
    await signInStands(ctx, client, claims);
    return { claims };
  }
  throw new OAuthError('invalid_request', `subject_token_type ${type} is not supported`);
}

/** The actor: the authenticated client, proven again by its own token when an actor token is sent. */
async function actorClaims(ctx: ServerContext, client: Client, params: Params): Promise<{ sub: string; [claim: string]: unknown }> {
  const token = params.get('actor_token');
  const type = params.get('actor_token_type');
  if (!token) {
    if (type) throw new OAuthError('invalid_request', 'actor_token_type without actor_token');
    return { sub: client.clientId, client_id: client.clientId };
  }
  if (!type) throw new OAuthError('invalid_request', 'actor_token_type is required with actor_token');
  if (!ACCESS_TOKEN_TYPES.includes(type)) throw new OAuthError('invalid_request', `actor_token_type ${type} is not supported`);
  const found = await lookupToken(ctx, token, 'access_token');
  if (found?.kind !== 'access_token') throw new OAuthError('invalid_request', 'the actor token is invalid, expired or revoked');
  if (found.claims.client_id !== client.clientId) {
    throw new OAuthError('invalid_request', 'the actor token was issued to another client', { reason: `actor token client_id=${found.claims.client_id}` });
  }
  // Only the client's own token (client credentials: sub = client_id, acting for nobody) can name
  // the actor; otherwise a client could launder another party's identity through an exchange.
  if (found.claims.sub !== client.clientId || found.claims.act !== undefined) {
    throw new OAuthError('invalid_request', "the actor token must be the client's own token", { reason: `actor token sub=${found.claims.sub}` });
  }
  return found.claims;
}

/** Exactly one target, named by `resource` or `audience` (RFC 8693 §2.1); both name resources here. */
function targetResource(ctx: ServerContext, params: Params): Resource {
  const targets = [...new Set([...params.all('resource'), ...params.all('audience')])];
  if (targets.length === 0) throw new OAuthError('invalid_request', 'name the target with resource or audience');
  if (targets.length > 1) throw new OAuthError('invalid_target', 'exchange for one resource at a time');
  const resource = ctx.resource(targets[0]!);
  if (!resource || resource.id === ctx.issuer) throw new OAuthError('invalid_target', 'the requested resource is unknown', { reason: `target=${targets[0]}` });
  // Admin tokens come from an admin's own sign-in (docs/admin.md); an exchange makes one only for
  // the agents admin.delegation.actors names (the resource's allowed actors), from such a token.
  if (resource.id === adminResourceId(ctx.issuer) && ctx.config.admin.delegation.actors.length === 0) {
    throw new OAuthError('invalid_target', 'tokens for the admin resource are issued only to an administrator signing in', { reason: 'exchange into the admin resource (admin.delegation.actors is empty)' });
  }
  return resource;
}

/** Scope only narrows: ⊆ the subject token's scopes ∩ the resource's ∩ what the actor may request. */
function narrowedScopes(ctx: ServerContext, client: Client, resource: Resource, subjectScopes: string[], requested: string[]): string[] {
  const offered = new Set(resource.scopes.map((s) => s.name));
  const actorMay = clientScopeLimit(ctx.config.registration, client);
  const held = new Set(subjectScopes);
  if (requested.length === 0) {
    const common = subjectScopes.filter((s) => offered.has(s) && (!actorMay || actorMay.has(s)));
    // A resource without scopes (identity only) takes a token with none; otherwise none in common is refused.
    if (common.length === 0 && offered.size > 0) throw new OAuthError('invalid_scope', 'the subject token has no scope this resource offers');
    return common;
  }
  for (const scope of requested) {
    if (!held.has(scope)) throw new OAuthError('invalid_scope', `scope ${scope} is not in the subject token`);
    if (!offered.has(scope)) throw new OAuthError('invalid_scope', `scope ${scope} is not offered by ${resource.id}`);
    if (actorMay && !actorMay.has(scope)) {
      throw new OAuthError('invalid_scope', `the client may not request scope ${scope}`, isSelfRegistered(client) ? { reason: withheldReason(ctx.config.registration, [scope]) } : {});
    }
  }
  return requested;
}

import type { Context, Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { TOKEN_ENDPOINT_AUTH_METHODS, WORKLOAD_IDENTITY_AUTH_METHOD } from '../../core/client-metadata.ts';
import { ENTITY_PROFILES_SUPPORTED } from '../actor-profile.ts';
import { OIDC_SCOPES } from '../../core/scopes.ts';
import { ID_JAG_PROFILE, JWT_BEARER_GRANT, TOKEN_TYPES } from '../../core/delegation.ts';
import { endpointUrls, type ServerContext } from '../context.ts';
import { grants } from '../grants/index.ts';
import { AUTHORIZATION_DETAILS_TYPES } from '../authorization-details.ts';

/** Authorization server metadata (RFC 8414), served also as OpenID Provider metadata. */
export function serverMetadata(ctx: ServerContext) {
  const urls = endpointUrls(ctx.issuer);
  const scopes = new Set<string>(OIDC_SCOPES);
  for (const r of ctx.resources()) for (const s of r.scopes) scopes.add(s.name);
  // workload_identity only where a platform issuer is configured (nothing could use it otherwise).
  const authMethods = TOKEN_ENDPOINT_AUTH_METHODS.filter((m) => m !== WORKLOAD_IDENTITY_AUTH_METHOD || ctx.config.workload_identity.issuers.length > 0);
  const { dpop, trusted_idps: trustedIdps, id_jag: idJag, workload_identity: workload } = ctx.config;
  // Issue 17: the jwt-bearer grant only where something can be presented with it (the token
  // endpoint refuses it otherwise); the trusted issuers themselves are never published (ID-JAG §8.4).
  const jwtBearer = trustedIdps.length > 0 || workload.issuers.length > 0;
  return {
    issuer: ctx.issuer,
    authorization_endpoint: urls.authorization,
    // RFC 9126 §5: pushed authorization requests, and whether every client must use them.
    pushed_authorization_request_endpoint: urls.pushedAuthorization,
    require_pushed_authorization_requests: ctx.config.par.required,
    token_endpoint: urls.token,
    jwks_uri: urls.jwks,
    ...(ctx.config.registration.enabled && ctx.config.registration.dynamic_clients ? { registration_endpoint: urls.registration } : {}),
    // Mandate's extension (RFC 8414 §2 allows more): where an AI agent registers itself (seed 003).
    ...(ctx.config.registration.enabled ? { agent_registration_endpoint: urls.agentRegistration } : {}),
    introspection_endpoint: urls.introspection,
    revocation_endpoint: urls.revocation,
    userinfo_endpoint: urls.userinfo,
    device_authorization_endpoint: urls.deviceAuthorization,
    // Mandate's extension: where a gateway asks users to approve one high-risk call (docs/high-risk-actions.md).
    mandate_transactions_endpoint: ctx.url('/transactions'),
    // RFC 9396 §10: the approved call of a transaction, asked for at token exchange and refresh.
    authorization_details_types_supported: [...AUTHORIZATION_DETAILS_TYPES],
    scopes_supported: [...scopes],
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: [...grants.keys()].filter((g) => g !== JWT_BEARER_GRANT || jwtBearer),
    // draft-ietf-oauth-identity-assertion-authz-grant §7 (as a resource AS, and as an IdP).
    ...(trustedIdps.length > 0 ? { authorization_grant_profiles_supported: [ID_JAG_PROFILE] } : {}),
    ...(idJag.audiences.length > 0 ? { identity_chaining_requested_token_types_supported: [TOKEN_TYPES.idJag] } : {}),
    // RFC 9449 §5.1.
    ...(dpop.enabled ? { dpop_signing_alg_values_supported: [...dpop.signing_alg_values] } : {}),
    // draft-mcguinness-oauth-actor-profile: exchanged access tokens carry act entries with sub_profile.
    actor_profile_token_types_supported: [TOKEN_TYPES.accessToken],
    entity_profiles_supported: ENTITY_PROFILES_SUPPORTED,
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: authMethods,
    token_endpoint_auth_signing_alg_values_supported: ['ES256', 'RS256', 'PS256', 'EdDSA'],
    introspection_endpoint_auth_methods_supported: authMethods.filter((m) => m !== 'none'),
    revocation_endpoint_auth_methods_supported: authMethods,
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['ES256'],
    claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'acr', 'sid', 'name', 'preferred_username', 'email'],
    prompt_values_supported: ['none', 'login', 'consent'],
    authorization_response_iss_parameter_supported: true,
    // A metadata document is a self-registration: the registration policy decides whether it is taken.
    client_id_metadata_document_supported: ctx.config.client_id_metadata_documents.enabled && ctx.config.registration.enabled && ctx.config.registration.dynamic_clients,
    resource_indicators_supported: true,
    // OpenID Connect RP-Initiated Logout 1.0 §2.1 and Back-Channel Logout 1.0 §2.1.
    end_session_endpoint: ctx.url('/logout'),
    backchannel_logout_supported: true,
    backchannel_logout_session_supported: true,
  };
}

export function metadataEndpoints(app: Hono<AppEnv>, ctx: ServerContext) {
  const serve = (c: Context) => {
    c.header('Cache-Control', 'public, max-age=300');
    return c.json(serverMetadata(ctx));
  };
  app.get('/.well-known/oauth-authorization-server', serve);
  app.get('/.well-known/openid-configuration', serve);
  app.get('/jwks', async (c) => {
    // Short cache: a rotated key must reach verifiers within keys.publish_before_use.
    c.header('Cache-Control', 'public, max-age=60');
    return c.json(await ctx.keys.jwks(), 200, { 'Content-Type': 'application/jwk-set+json' });
  });
}

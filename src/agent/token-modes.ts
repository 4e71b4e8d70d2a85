import { readFile } from 'node:fs/promises';
import { decodeJwt } from 'jose';
import { JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT, TOKEN_TYPES } from '../core/delegation.ts';
import type { Discovery } from './discovery.ts';
import type { DpopKeys } from './dpop.ts';
import { AgentError } from './errors.ts';
import { idpClient, idpIdToken, idpMetadata } from './idp-sign-in.ts';
import { tokenRequest, type TokenResponse } from './oauth.ts';
import type { ActiveClient, AgentOptions } from './options.ts';
import type { CredentialStore } from './store.ts';

/**
 * The token modes without a person signing in through the agent — `client`, `enterprise`,
 * `workload` — each one function from the MCP resource's scope to a token response. What they
 * need of the agent comes through this host (discovery, its token requests with DPoP and the
 * registration's authentication, the client it acts as).
 */
export interface TokenModeHost {
  readonly options: AgentOptions;
  readonly store: CredentialStore;
  readonly dpop: DpopKeys;
  discovery(): Promise<Discovery>;
  /** A token request at the MCP AS as `client` (its DPoP proof, its authentication, the bound token kept). */
  tokenRequest(form: Record<string, string>, client: ActiveClient, what: string): Promise<TokenResponse>;
  /** The client the agent acts as at the MCP AS. */
  currentClient(): Promise<ActiveClient>;
}

/** `client` mode: the agent's own token for the MCP resource (RFC 6749 §4.4, RFC 8707 `resource`). */
export async function clientModeToken(host: TokenModeHost, scope: string): Promise<TokenResponse> {
  const found = await host.discovery();
  return host.tokenRequest({ grant_type: 'client_credentials', resource: found.resource, ...(scope ? { scope } : {}) }, await host.currentClient(), "the agent's token");
}

/** An OAuth refusal in a mode without a person: said as what it is, with the server that said it, and not retried. */
const refusedBy = (who: string, what: string) => (error: unknown) => {
  if (!(error instanceof AgentError) || !error.oauthError) throw error;
  if (error.kind === 'agent_disabled' || error.kind === 'scope_refused') throw error;
  const detail = error.oauthDescription ? `: ${error.oauthDescription}` : '';
  throw new AgentError('refused', `${who} refused ${what} (${error.oauthError}${detail}); not retried`, error.oauthError, error.oauthDescription, error.status);
};

/**
 * `enterprise` mode (MCP EMA §§4–5, draft-ietf-oauth-identity-assertion-authz-grant §4): the
 * person's IdP ID token → an ID-JAG at the IdP (RFC 8693, `audience` = the MCP AS issuer,
 * `resource` = the MCP resource) → an access token at the MCP AS (jwt-bearer, RFC 7523 §2.1, the
 * agent's client authentication there). No refresh token comes back (ID-JAG §4.4.3): each new
 * access token is a new exchange at the IdP, whose ID-JAG (single-use `jti`) is presented once.
 * With DPoP at both, the ID-JAG is bound to the agent's proof key at the MCP AS (ID-JAG §8.6.1.1),
 * so the access token is bound to the same key.
 */
export async function enterpriseModeToken(host: TokenModeHost, scope: string): Promise<TokenResponse> {
  const enterprise = host.options.enterprise;
  if (!enterprise) throw new AgentError('usage', 'enterprise mode needs the enterprise options (the IdP, its client, the ID token)');
  const found = await host.discovery();
  // The IdP's metadata says how to authenticate there and whether it takes DPoP proofs; with the
  // token endpoint given, an IdP that publishes none is still used (without proofs).
  const metadata: Record<string, unknown> = !enterprise.idpIssuer ? {} : enterprise.idpTokenEndpoint ? await idpMetadata(enterprise).catch(() => ({})) : await idpMetadata(enterprise);
  const idpTokenEndpoint = enterprise.idpTokenEndpoint ?? (typeof metadata.token_endpoint === 'string' ? metadata.token_endpoint : undefined);
  if (!idpTokenEndpoint) throw new AgentError('usage', enterprise.idpIssuer ? `the identity provider ${enterprise.idpIssuer} names no token_endpoint` : 'enterprise mode needs the IdP issuer or its token endpoint');
  const idToken = await idpIdToken(enterprise, host.store);
  const client = await host.currentClient();
  // The MCP AS's proof key, shown to the IdP too when the IdP takes proofs.
  const signer = host.dpop.wanted(metadata) ? await host.dpop.signerFor(found.issuer, found.metadata, client.clientId) : undefined;
  const grant = await tokenRequest(
    idpTokenEndpoint,
    {
      grant_type: TOKEN_EXCHANGE_GRANT,
      requested_token_type: TOKEN_TYPES.idJag,
      audience: found.issuer,
      resource: found.resource,
      subject_token: idToken,
      subject_token_type: TOKEN_TYPES.idToken,
      ...(scope ? { scope } : {}),
    },
    idpClient(enterprise, metadata),
    'the token exchange at the identity provider',
    signer,
  ).catch(refusedBy(`the identity provider ${enterprise.idpIssuer ?? idpTokenEndpoint}`, 'the ID-JAG'));
  if (grant.issued_token_type !== TOKEN_TYPES.idJag) {
    throw new AgentError('protocol', `the identity provider issued ${grant.issued_token_type ?? 'no issued_token_type'}, not an ID-JAG (${TOKEN_TYPES.idJag})`);
  }
  return host.tokenRequest({ grant_type: JWT_BEARER_GRANT, assertion: grant.access_token, ...(scope ? { scope } : {}) }, client, 'the ID-JAG grant').catch(refusedBy(`the authorization server ${found.issuer}`, 'the ID-JAG'));
}

/**
 * The platform JWT is a credential for the authorization server it is audienced to: it is sent
 * only to that one. The MCP server's metadata names the AS, and a malicious or hijacked MCP server
 * could name its own to collect the JWT and replay it at the real one; so its `aud` (read, not
 * verified: the AS verifies it) must name the discovered issuer or its token endpoint, else nothing
 * is sent.
 */
function forThisServer(token: string, found: Discovery): string {
  let audience: unknown;
  try {
    audience = decodeJwt(token).aud;
  } catch {
    throw new AgentError('usage', 'the workload token is not a JWT');
  }
  const audiences = (Array.isArray(audience) ? audience : [audience]).filter((a): a is string => typeof a === 'string');
  const accepted = [found.issuer, found.metadata.token_endpoint].filter((a): a is string => typeof a === 'string');
  if (!audiences.some((a) => accepted.includes(a))) {
    throw new AgentError('protocol', `the workload token is for ${audiences.length ? audiences.join(', ') : 'no audience'}, not for ${found.issuer}, the authorization server the MCP server names: not sent`);
  }
  return token;
}

/**
 * `workload` mode: the platform JWT for a token for the MCP resource — the SEP-1933 grant
 * (jwt-bearer, `assertion`, `resource`, no client authentication), or, with a client id, client
 * credentials authenticated by the JWT. Exactly one token request per token: an error
 * (`invalid_grant`, `invalid_scope`, `unauthorized_client`) is the caller's, never retried nor
 * answered with another grant.
 */
export async function workloadModeToken(host: TokenModeHost, scope: string): Promise<TokenResponse> {
  const source = host.options.workloadIdentity;
  if (!source) throw new AgentError('usage', 'workload mode needs workloadIdentity (a token function or tokenFile)');
  const found = await host.discovery();
  const platformToken = async () => forThisServer('token' in source ? await source.token() : (await readFile(source.tokenFile, 'utf8')).trim(), found);
  const { clientId } = host.options;
  const base = { resource: found.resource, ...(scope ? { scope } : {}) };
  const request = clientId
    ? host.tokenRequest({ grant_type: 'client_credentials', ...base }, { clientId, method: 'pre-registered', authMethod: 'workload_identity', workloadToken: platformToken }, 'the workload token')
    : host.tokenRequest({ grant_type: JWT_BEARER_GRANT, assertion: await platformToken(), ...base }, { clientId: '', method: 'pre-registered', authMethod: 'none' }, 'the workload identity grant');
  return request.catch((error: unknown) => {
    // No person to send to `mandate agent login`: say what the AS answered, and stop.
    if (!(error instanceof AgentError) || !error.oauthError) throw error;
    const detail = error.oauthDescription ? `: ${error.oauthDescription}` : '';
    throw new AgentError(error.oauthError === 'invalid_scope' ? 'scope_refused' : 'refused', `the authorization server refused the workload's token (${error.oauthError}${detail}); not retried`, error.oauthError, error.oauthDescription, error.status);
  });
}

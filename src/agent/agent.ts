import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { TOKEN_EXCHANGE_GRANT, TOKEN_TYPES } from '../core/delegation.ts';
import { formatScope, parseScope } from '../core/scopes.ts';
import { ApprovalRequiredError, approvalRequestOf, askOfError, askOfResult, waitForApproval, type ApprovalAsk, type ApprovalRequest } from './approval.ts';
import type { ActiveClient, AgentOptions, CallParams, CallToolOptions, ToolResult } from './options.ts';
import { resourceScopes } from './display.ts';
import { discover, type Discovery } from './discovery.ts';
import { AgentError, reach } from './errors.ts';
import { revokeToken, tokenRequest, type TokenEndpointAuthMethod, type TokenResponse } from './oauth.ts';
import { CredentialStore, type IdpSignIn, type StoredTokens } from './store.ts';
import { DpopKeys, type AgentDpop } from './dpop.ts';
import { signInAtIdp, signInAtIdpWithDevice, signOutAtIdp } from './idp-sign-in.ts';
import { clientModeToken, enterpriseModeToken, workloadModeToken, type TokenModeHost } from './token-modes.ts';
import { authorizedFetch, type FetchHost } from './authorized-fetch.ts';
import { decode, isDpop, signInInBrowser, signInOnDevice, toStored, type SignInHost } from './person-sign-in.ts';
import { METHOD_NAMES, registerAgent, type RegisteredClient } from './registration.ts';


const AUTH_METHODS: readonly string[] = ['client_secret_basic', 'client_secret_post', 'none', 'private_key_jwt'] satisfies TokenEndpointAuthMethod[];

/** A registration as the client to act as: authenticating the way the AS registered it (RFC 7591 §3.2.1). */
const fromRegistered = (client: RegisteredClient): ActiveClient => ({
  clientId: client.client_id,
  clientSecret: client.client_secret,
  method: client.method,
  ...(client.token_endpoint_auth_method && AUTH_METHODS.includes(client.token_endpoint_auth_method) ? { authMethod: client.token_endpoint_auth_method as TokenEndpointAuthMethod } : {}),
});

/**
 * The client side of every flow, for an AI agent acting for a person (seed 001):
 * discovery from the MCP URL, the agent's own token (client credentials, the actor), the person's
 * sign-in through the agent (authorization code + PKCE on a loopback redirect; the subject token),
 * the token exchange for the MCP resource (`act` = the agent), refresh, and step-up when a tool
 * needs a scope the person has not granted yet.
 */
export type { ActiveClient, AgentOptions, CallToolOptions, StepUpReason, ToolResult } from './options.ts';

export class MandateAgent {
  private found: Discovery | undefined;
  private actor: { clientId: string; token: string; expiresAt: number } | undefined;
  private exchanged = new Map<string, { token: string; expiresAt: number }>();
  /** The token the last MCP request carried: an approval is polled for with it. */
  private lastToken: string | undefined;
  readonly store: CredentialStore;
  /** The proof keys (one per client id, kept in the credentials file) and the tokens bound to them. */
  private readonly dpop: DpopKeys;

  constructor(readonly options: AgentOptions) {
    this.store = options.store ?? new CredentialStore();
    this.dpop = new DpopKeys(this.store, options.dpop);
  }

  /** What the flows in their own modules use of the agent: token-modes.ts, person-sign-in.ts, authorized-fetch.ts. */
  private get host(): TokenModeHost & SignInHost & FetchHost {
    return {
      options: this.options,
      store: this.store,
      dpop: this.dpop,
      agentResource: this.agentResource,
      discovery: () => this.discovery(),
      tokenRequest: (form, client, what) => this.tokenRequest(form, client, what),
      tokenEndpoint: () => this.tokenEndpoint(),
      authenticating: (client) => this.authenticating(client),
      currentClient: () => this.currentClient(),
      clientForSignIn: (redirectUri) => this.clientForSignIn(redirectUri),
      modeFor: (client) => this.modeFor(client),
      checkCredentials: (client, mode) => this.checkCredentials(client, mode),
      dpopFor: (client) => this.dpopFor(client),
      scopesToAsk: (scopes) => this.scopesToAsk(scopes),
      saveSubject: (tokens) => this.saveSubject(tokens),
      subjectToken: () => this.subjectToken(),
      mcpToken: async () => (this.lastToken = await this.mcpToken()),
      forgetExchanged: () => this.exchanged.clear(),
      login: (scopes) => this.login(scopes),
    };
  }

  private get agentResource(): string {
    return this.options.agentResource ?? 'http://localhost:3000';
  }

  async discovery(): Promise<Discovery> {
    this.found ??= await discover(this.options.mcpUrl);
    return this.found;
  }

  private async tokenEndpoint(): Promise<string> {
    const endpoint = (await this.discovery()).metadata.token_endpoint;
    if (typeof endpoint !== 'string') throw new AgentError('protocol', 'the authorization server metadata has no token_endpoint');
    return endpoint;
  }

  /** A token request as `client`; a registration the AS no longer accepts is named as such. */
  private async tokenRequest(form: Record<string, string>, client: ActiveClient, what: string): Promise<TokenResponse> {
    try {
      const dpop = await this.dpopFor(client);
      const token = await tokenRequest(await this.tokenEndpoint(), form, await this.authenticating(client), what, dpop);
      if (dpop && isDpop(token)) this.dpop.bind(token.access_token, dpop);
      else if (this.options.dpop === 'always') {
        throw new AgentError('protocol', `${what}: the authorization server issued a ${token.token_type} token, not a DPoP-bound one (dpop: always)`);
      }
      return token;
    } catch (error) {
      if (!(error instanceof AgentError) || error.kind !== 'agent_disabled' || client.method === 'pre-registered') throw error;
      throw new AgentError(
        'agent_disabled',
        `the authorization server refused the agent's registration ${client.clientId} (${METHOD_NAMES[client.method]}) — disabled, expired or deleted? \`mandate agent logout --forget-registration\` forgets it, and the next login registers anew`,
      );
    }
  }

  /**
   * The client with what its authentication needs: the AS issuer as the `aud` of its assertions;
   * with a secret and no method named, `client_secret_post` when the AS lists that and not Basic.
   */
  private async authenticating(client: ActiveClient): Promise<ActiveClient> {
    const { issuer, metadata } = await this.discovery();
    const supported = metadata.token_endpoint_auth_methods_supported;
    let authMethod = client.authMethod;
    if (!authMethod && client.clientSecret && !client.key && Array.isArray(supported) && !supported.includes('client_secret_basic') && supported.includes('client_secret_post')) {
      authMethod = 'client_secret_post';
    }
    return { ...client, ...(authMethod ? { authMethod } : {}), assertionAudience: issuer };
  }

  /** The client's proof key at the MCP AS when DPoP is in use, or `bound` (a token bound before keeps being proven with its key). */
  private async dpopFor(client: ActiveClient, bound = false): Promise<AgentDpop | undefined> {
    const found = await this.discovery();
    return this.dpop.signerFor(found.issuer, found.metadata, client.clientId, bound);
  }

  /** The pre-registered client (`clientId`, its secret or key, its method). */
  private preRegistered(clientId: string): ActiveClient {
    const { clientSecret, clientKey, tokenEndpointAuthMethod } = this.options;
    return { clientId, clientSecret, method: 'pre-registered', ...(clientKey ? { key: clientKey } : {}), ...(tokenEndpointAuthMethod ? { authMethod: tokenEndpointAuthMethod } : {}) };
  }

  /** The registration kept for this issuer, if any. */
  async registration(): Promise<RegisteredClient | undefined> {
    return (await this.store.get((await this.discovery()).issuer))?.registered;
  }

  /**
   * The client for a new sign-in: the pre-registered one, else the one registered before (when it
   * fits what was asked for), else a new registration in the MCP spec's order.
   */
  private async clientForSignIn(redirectUri: string): Promise<ActiveClient> {
    const { clientId, clientMetadataUrl } = this.options;
    if (clientId) return this.preRegistered(clientId);
    const found = await this.discovery();
    const prefer = this.options.register ?? 'auto';
    const kept = await this.registration();
    const documentUrl = clientMetadataUrl ? new URL(clientMetadataUrl).href : undefined;
    // Reuse what was asked for; a metadata document named now must be the one kept (in auto, it comes first).
    const sameDocument = !documentUrl || kept?.client_id === documentUrl;
    if (kept && (prefer === 'auto' || kept.method === prefer) && (sameDocument || prefer === 'dynamic' || prefer === 'agent')) return fromRegistered(kept);
    const fresh = await registerAgent(found, { prefer, clientMetadataUrl, clientName: this.options.clientName ?? 'Mandate agent', redirectUri });
    await this.store.update(found.issuer, (current) => ({ ...current, registered: fresh }));
    await this.options.onRegistered?.(fresh, found.issuer);
    return fromRegistered(fresh);
  }

  /** The client a stored sign-in belongs to: refresh, exchange and revocation must use it. */
  private async clientOf(tokens: StoredTokens): Promise<ActiveClient> {
    const { clientId } = this.options;
    const owner = tokens.client_id ?? clientId;
    if (clientId && owner !== clientId) throw new AgentError('not_signed_in', `signed in through ${owner}, not ${clientId}: run \`mandate agent login\``);
    if (owner === clientId && clientId) return this.preRegistered(clientId);
    const kept = await this.registration();
    if (!owner) throw new AgentError('not_signed_in', `the sign-in for ${this.options.mcpUrl} names no client: run \`mandate agent login\``);
    if (kept?.client_id !== owner) {
      throw new AgentError('not_signed_in', `the sign-in for ${this.options.mcpUrl} was made through ${owner}, which is not the agent's registration: pass --client-id ${owner} (and its AGENT_SECRET), or run \`mandate agent login\``);
    }
    return fromRegistered(kept);
  }

  /** The mode of a sign-in by the person through the agent. */
  private modeFor(client: ActiveClient): 'delegated' | 'direct' {
    const { mode } = this.options;
    if (mode === 'enterprise') throw new AgentError('usage', 'in enterprise mode the person signs in at the identity provider: signInAtIdp() (`mandate agent login --idp`), then connect() or callTool()');
    if (mode === 'client' || mode === 'workload') throw new AgentError('usage', `in ${mode} mode the person does not sign in through the agent: call connect() or callTool() directly`);
    return mode ?? (client.clientSecret ? 'delegated' : 'direct');
  }

  /** The agent's own access token (client credentials): the actor of every exchange. */
  async actorToken(client?: ActiveClient): Promise<string> {
    client ??= await this.currentClient();
    if (this.actor?.clientId === client.clientId && this.actor.expiresAt > Date.now() / 1000 + 30) return this.actor.token;
    if (!client.clientSecret) throw new AgentError('usage', 'the agent needs its secret for its own token: set AGENT_SECRET');
    // Audienced to the agent's own resource, like the person's sign-in (seed 001: both are for "agent").
    const token = await this.tokenRequest({ grant_type: 'client_credentials', resource: this.agentResource }, client, "the agent's own token");
    this.actor = { clientId: client.clientId, token: token.access_token, expiresAt: Math.floor(Date.now() / 1000) + (token.expires_in ?? 300) };
    return token.access_token;
  }

  /** The client of the current sign-in, else the pre-registered or registered one. */
  private async currentClient(): Promise<ActiveClient> {
    const { issuer } = await this.discovery();
    const stored = (await this.store.get(issuer))?.subject?.[this.options.mcpUrl];
    if (stored) return this.clientOf(stored);
    if (this.options.clientId) return this.preRegistered(this.options.clientId);
    const kept = await this.registration();
    if (!kept) throw new AgentError('not_signed_in', `the agent has no client id at ${issuer}: run \`mandate agent login\` (it registers) or pass --client-id`);
    return fromRegistered(kept);
  }

  /** Scopes to ask the person for: as given, else what the MCP server's challenge or metadata lists. */
  private async defaultScopes(): Promise<string[]> {
    const found = await this.discovery();
    return found.challengedScopes?.length ? found.challengedScopes : ((found.resourceMetadata.scopes_supported as string[] | undefined) ?? []);
  }

  /**
   * The scopes of a sign-in: as given, else what the MCP server lists; plus `openid profile` when
   * the AS is an OpenID provider, so that its ID token names the person (shown by name, not by
   * subject identifier). A self-registered client the AS withholds them from still signs in.
   */
  private async scopesToAsk(scopes?: string[]): Promise<string> {
    const found = await this.discovery();
    const asked = scopes?.length ? scopes : await this.defaultScopes();
    const supported = found.metadata.scopes_supported;
    const oidc = Array.isArray(supported) && supported.includes('openid') ? ['openid', 'profile'] : [];
    // SEP-2207: a client that wants a refresh token asks for offline_access — only where the AS lists it.
    const offline = Array.isArray(supported) && supported.includes('offline_access') ? ['offline_access'] : [];
    return formatScope([...new Set([...oidc, ...offline, ...asked])]);
  }

  /**
   * Before the person is sent to sign in: a delegated agent gets its own token (client
   * credentials, which the exchange needs anyway), so that a wrong AGENT_SECRET, or a disabled or
   * expired agent, is found before the person signs in — not after a page that says it worked.
   */
  private async checkCredentials(client: ActiveClient, mode: 'delegated' | 'direct'): Promise<void> {
    if (mode !== 'delegated' || !client.clientSecret) return;
    this.actor = undefined;
    try {
      await this.actorToken(client);
    } catch (error) {
      if (!(error instanceof AgentError) || error.kind !== 'agent_disabled' || client.method !== 'pre-registered') throw error;
      const { issuer } = await this.discovery();
      // Mandate says which after checking the secret (a wrong secret never learns the agent's state); other servers may not.
      const why = /disabled|expired/i.test(error.oauthDescription ?? '')
        ? `${client.clientId} is disabled or has expired at ${issuer}: an administrator can enable it again`
        : `the authorization server at ${issuer} did not accept the agent's credentials (${error.oauthError}${error.oauthDescription ? `: ${error.oauthDescription}` : ''}): is AGENT_SECRET the secret of ${client.clientId}?`;
      throw new AgentError('agent_disabled', `${why} — checked before the sign-in, so nothing was signed in`, error.oauthError, error.oauthDescription);
    }
  }

  /**
   * The token exchange. A subject token the AS no longer accepts (RFC 8693 §2.2.2 answers
   * `invalid_request`; revoked when an administrator disabled the agent, even once it is enabled
   * again) is refreshed and the exchange tried once more; when the sign-in cannot be refreshed,
   * the person is asked to sign in again (exit 7), not told of a protocol error.
   */
  private async exchange(form: Record<string, string>, subject: StoredTokens, client: ActiveClient): Promise<TokenResponse> {
    try {
      return await this.tokenRequest(form, client, 'the token exchange');
    } catch (error) {
      // Only a refusal of the subject (or actor) token itself is worth a refresh: a may_act
      // mismatch, a chain too long or a disabled actor would be refused again, at the price of a
      // refresh-token rotation and a second exchange.
      const staleToken = error instanceof AgentError && (error.oauthError === 'invalid_grant' || (error.oauthError === 'invalid_request' && /\b(subject|actor) token is invalid, expired or revoked\b|issued before its client was disabled/.test(error.oauthDescription ?? '')));
      if (!staleToken) throw error;
      const renewed = await this.renewSubject(subject, client);
      if (!renewed) {
        throw new AgentError('not_signed_in', `the authorization server no longer accepts your sign-in for ${this.options.mcpUrl} (${error.message}) — revoked, or the agent was disabled since: sign in again with \`mandate agent login\``);
      }
      // The agent's own token may be the one refused (cut off in the second the agent was enabled again): a fresh one too.
      const retry: Record<string, string> = { ...form, subject_token: renewed.access_token };
      if (form.actor_token) {
        this.actor = undefined;
        retry.actor_token = await this.actorToken(client);
      }
      return await this.tokenRequest(retry, client, 'the token exchange');
    }
  }

  /** A fresh subject token from the refresh token; undefined when the sign-in cannot be refreshed. */
  private async renewSubject(subject: StoredTokens, client: ActiveClient): Promise<StoredTokens | undefined> {
    if (!subject.refresh_token) return undefined;
    const { issuer } = await this.discovery();
    try {
      const token = await this.tokenRequest({ grant_type: 'refresh_token', refresh_token: subject.refresh_token }, client, 'refreshing the sign-in');
      return await this.saveSubject(toStored({ ...token, refresh_token: token.refresh_token ?? subject.refresh_token }, subject.scope, client, subject.mode, issuer, subject.user));
    } catch (error) {
      if (error instanceof AgentError && error.kind === 'not_signed_in') return undefined;
      throw error;
    }
  }

  /** Signs the person in through the agent in a browser and keeps the tokens; registers the agent first if it has no client id (person-sign-in.ts). */
  async login(scopes?: string[]): Promise<StoredTokens> {
    return signInInBrowser(this.host, scopes);
  }

  /** Signs the person in without a browser on this machine (RFC 8628; person-sign-in.ts). */
  async loginWithDevice(scopes?: string[]): Promise<StoredTokens> {
    return signInOnDevice(this.host, scopes);
  }

  private async saveSubject(tokens: StoredTokens): Promise<StoredTokens> {
    const { issuer } = await this.discovery();
    await this.store.update(issuer, (current) => ({ ...current, subject: { ...current?.subject, [this.options.mcpUrl]: tokens } }));
    this.exchanged.clear();
    return tokens;
  }

  /** The person's token (refreshed when it is about to expire). */
  async subjectToken(): Promise<StoredTokens> {
    const { issuer } = await this.discovery();
    const stored = (await this.store.get(issuer))?.subject?.[this.options.mcpUrl];
    if (!stored) throw new AgentError('not_signed_in', `not signed in for ${this.options.mcpUrl}: run \`mandate agent login\``);
    const client = await this.clientOf(stored);
    if (stored.expires_at > Date.now() / 1000 + 30) return stored;
    if (!stored.refresh_token) throw new AgentError('not_signed_in', 'the sign-in has expired: run `mandate agent login`');
    const token = await this.tokenRequest({ grant_type: 'refresh_token', refresh_token: stored.refresh_token }, client, 'refreshing the sign-in');
    const next = toStored({ ...token, refresh_token: token.refresh_token ?? stored.refresh_token }, stored.scope, client, stored.mode, issuer, stored.user);
    await this.saveSubject(next);
    return next;
  }

  /**
   * The token for the MCP resource: subject + actor exchanged (RFC 8693), `act` = the agent; or,
   * signed in directly, the person's token itself.
   */
  async mcpToken(scopes?: string[]): Promise<string> {
    if (this.options.mode === 'client') return this.clientToken(scopes);
    if (this.options.mode === 'enterprise') return this.enterpriseToken(scopes);
    if (this.options.mode === 'workload') return this.workloadToken(scopes);
    const subject = await this.subjectToken();
    if (subject.mode === 'direct') {
      // A token bound in an earlier run: proven with the key kept for its client.
      if (isDpop(subject) && !this.dpop.boundTo(subject.access_token)) {
        const signer = await this.dpopFor(await this.clientOf(subject), true);
        if (signer) this.dpop.bind(subject.access_token, signer);
      }
      return subject.access_token;
    }
    // The ID token's scopes are about the sign-in; the MCP resource offers none of them.
    const scope = formatScope(resourceScopes(scopes ?? parseScope(subject.scope)));
    const cached = this.exchanged.get(scope);
    if (cached && cached.expiresAt > Date.now() / 1000 + 30) return cached.token;
    const found = await this.discovery();
    const client = await this.clientOf(subject);
    const form: Record<string, string> = {
      grant_type: TOKEN_EXCHANGE_GRANT,
      subject_token: subject.access_token,
      subject_token_type: TOKEN_TYPES.accessToken,
      requested_token_type: TOKEN_TYPES.accessToken,
      resource: found.resource,
    };
    if (scope) form.scope = scope;
    if (client.clientSecret) Object.assign(form, { actor_token: await this.actorToken(client), actor_token_type: TOKEN_TYPES.accessToken });
    const token = await this.exchange(form, subject, client);
    this.exchanged.set(scope, { token: token.access_token, expiresAt: Math.floor(Date.now() / 1000) + (token.expires_in ?? 300) });
    return token.access_token;
  }

  /** A token cached under `key` while it lives (30 s margin); else `fetch` one. */
  private async cachedToken(key: string, fetchToken: () => Promise<TokenResponse>): Promise<string> {
    const cached = this.exchanged.get(key);
    if (cached && cached.expiresAt > Date.now() / 1000 + 30) return cached.token;
    const token = await fetchToken();
    this.exchanged.set(key, { token: token.access_token, expiresAt: Math.floor(Date.now() / 1000) + (token.expires_in ?? 300) });
    return token.access_token;
  }

  /** The scopes to ask for the MCP resource without a person: as given, else the challenge's or the metadata's. */
  private async resourceScopesToAsk(scopes?: string[]): Promise<string> {
    return formatScope(scopes?.length ? scopes : await this.defaultScopes());
  }

  /** `client` mode (token-modes.ts). */
  private async clientToken(scopes?: string[]): Promise<string> {
    const scope = await this.resourceScopesToAsk(scopes);
    return this.cachedToken(`client ${scope}`, () => clientModeToken(this.host, scope));
  }

  /** `enterprise` mode (token-modes.ts): a new IdP exchange for every new access token. */
  private async enterpriseToken(scopes?: string[]): Promise<string> {
    const scope = await this.resourceScopesToAsk(scopes);
    return this.cachedToken(`enterprise ${scope}`, () => enterpriseModeToken(this.host, scope));
  }

  /** `workload` mode (token-modes.ts). */
  private async workloadToken(scopes?: string[]): Promise<string> {
    const scope = await this.resourceScopesToAsk(scopes);
    return this.cachedToken(`workload ${scope}`, () => workloadModeToken(this.host, scope));
  }

  /**
   * Enterprise mode: signs the person in at the IdP (`enterprise.idpIssuer`) — in a browser, or on
   * another device with `device` (RFC 8628) — and keeps the sign-in (its ID token and refresh
   * token) in the credentials file, so that later calls run the ID-JAG chain without a browser.
   */
  async signInAtIdp(options: { device?: boolean } = {}): Promise<IdpSignIn> {
    const { enterprise } = this.options;
    if (this.options.mode !== 'enterprise' || !enterprise) throw new AgentError('usage', 'signing in at an identity provider is for enterprise mode (--idp)');
    const how = { store: this.store, callbackPort: this.options.callbackPort ?? 3000, onAuthorizationUrl: this.options.onAuthorizationUrl, onDeviceCode: this.options.onDeviceCode };
    const signIn = options.device ? await signInAtIdpWithDevice(enterprise, how) : await signInAtIdp(enterprise, how);
    this.exchanged.clear();
    return signIn;
  }

  /** Enterprise mode: forgets the sign-in kept at the IdP (and revokes its refresh token there). */
  async signOutAtIdp(): Promise<boolean> {
    const { enterprise } = this.options;
    if (this.options.mode !== 'enterprise' || !enterprise) throw new AgentError('usage', 'signing out at an identity provider is for enterprise mode (--idp)');
    this.exchanged.clear();
    return signOutAtIdp(enterprise, this.store);
  }

  /**
   * Who the agent is at the AS and how it signed the person in: its client id, how it came by it,
   * and whether its tokens are delegated (exchanged, with `act`) or direct.
   */
  async identity(): Promise<{ clientId: string; registration: string; mode: 'delegated' | 'direct' }> {
    const { client, mode } = await this.signedIn();
    return { clientId: client.clientId, registration: METHOD_NAMES[client.method], mode };
  }

  /**
   * The current sign-in as `identity()` sees it, from the credential file alone while its token is
   * fresh: no discovery, no network (`mandate agent whoami` answers at once). An expired sign-in is
   * refreshed as usual. Nothing read here is sent anywhere: tokens leave only after discovery names
   * the issuer they were stored under.
   */
  async storedIdentity(): Promise<{ subject: StoredTokens; clientId: string; registration: string; mode: 'delegated' | 'direct' }> {
    const found = await this.store.signInsFor(this.options.mcpUrl);
    const fresh = found.length === 1 && found[0]!.tokens.expires_at > Date.now() / 1000 + 30 ? found[0]! : undefined;
    if (found.length === 0) throw new AgentError('not_signed_in', `not signed in for ${this.options.mcpUrl}: run \`mandate agent login\``);
    if (!fresh) {
      const { subject, client, mode } = await this.signedIn();
      return { subject, clientId: client.clientId, registration: METHOD_NAMES[client.method], mode };
    }
    const { tokens, credentials } = fresh;
    const { clientId, clientSecret } = this.options;
    const owner = tokens.client_id ?? clientId;
    if (clientId && owner !== clientId) throw new AgentError('not_signed_in', `signed in through ${owner}, not ${clientId}: run \`mandate agent login\``);
    const kept = credentials.registered;
    const client: ActiveClient | undefined =
      clientId && owner === clientId ? { clientId, clientSecret, method: 'pre-registered' } : kept && owner && kept.client_id === owner ? fromRegistered(kept) : undefined;
    if (!client) {
      throw new AgentError('not_signed_in', `the sign-in for ${this.options.mcpUrl} was made through ${owner ?? 'no client'}, which is not the agent's registration: pass --client-id ${owner} (and its AGENT_SECRET), or run \`mandate agent login\``);
    }
    return { subject: tokens, clientId: client.clientId, registration: METHOD_NAMES[client.method], mode: tokens.mode ?? this.modeFor(client) };
  }

  /** The current sign-in, the client it was made through, and its mode. */
  private async signedIn(): Promise<{ subject: StoredTokens; client: ActiveClient; mode: 'delegated' | 'direct' }> {
    const subject = await this.subjectToken();
    const client = await this.clientOf(subject);
    return { subject, client, mode: subject.mode ?? this.modeFor(client) };
  }

  /** The three tokens' claims: the agent's own, the person's, and the one the MCP server gets. */
  async tokens(): Promise<{ actor?: Record<string, unknown>; subject: Record<string, unknown>; mcp: Record<string, unknown>; mode: 'delegated' | 'direct' }> {
    const { subject, client, mode } = await this.signedIn();
    return {
      actor: client.clientSecret && mode === 'delegated' ? decode(await this.actorToken(client)) : undefined,
      subject: decode(subject.access_token),
      mcp: decode(await this.mcpToken()),
      mode,
    };
  }

  /**
   * `fetch` for the MCP transport: attaches the exchanged token; on 401 gets a fresh one and
   * retries once; on 403 `insufficient_scope`, signs the person in again for the scopes the
   * challenge names (step-up, bounded) and retries. A 403 `insufficient_authorization` with an
   * `approval_uri` (a call that needs the person's approval) throws an `ApprovalRequiredError`,
   * which `callTool` handles.
   */
  authorizedFetch(): typeof fetch {
    return authorizedFetch(this.host);
  }

  /** An MCP client connected with the agent's tokens. */
  async connect(name = 'mandate-agent'): Promise<Client> {
    // Loaded here rather than with the module: the MCP SDK client takes ~150 ms to load, which
    // commands that never reach an MCP server (whoami, login, tokens, logout) need not pay.
    const [{ Client }, { StreamableHTTPClientTransport }] = await Promise.all([
      import('@modelcontextprotocol/sdk/client/index.js'),
      import('@modelcontextprotocol/sdk/client/streamableHttp.js'),
    ]);
    const client = new Client({ name, version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(this.options.mcpUrl), { fetch: this.authorizedFetch() }));
    return client;
  }

  /**
   * Calls a tool; when the MCP server answers that the call needs the person's approval — in any of
   * the three forms (MCP 2025-11-25 error -32042 with a URL elicitation, the 2026-07-28
   * `input_required` result, or 403 `insufficient_authorization` with an `approval_uri`) — tells
   * `onApproval`, polls `GET <issuer>/transactions/{id}` with the token the call carried every 2 s
   * until the transaction's `expires_at`, and on `approved` makes the same call once more (2026-07-28:
   * with its `requestState` and `inputResponses`). Denied: an `approval_denied` AgentError;
   * expired (or used by another call): `approval_expired`; never retried.
   *
   * @example
   * ```ts
   * const result = await agent.callTool('transfer', { to: 'bob', amount: 250 }, {
   *   onApproval: (request) => console.error(`${request.message}: open ${request.url}`),
   * });
   * ```
   */
  async callTool(name: string, args: Record<string, unknown> = {}, options: CallToolOptions = {}): Promise<ToolResult> {
    const client = options.client ?? (await this.connect());
    try {
      const params: CallParams = { name, arguments: args };
      const first = await this.attempt(client, params);
      if ('result' in first) return first.result;
      await this.awaitApproval(first.request, first.token, options);
      const { requestState, inputKey } = first.request;
      // MCP 2026-07-28: the retry echoes the opaque state and answers the URL elicitation.
      const retry: CallParams = first.request.form === 'input-required' ? { ...params, ...(requestState !== undefined && { requestState }), inputResponses: { [inputKey ?? 'approval']: { action: 'accept' } } } : params;
      const second = await this.attempt(client, retry);
      if ('result' in second) return second.result;
      throw new AgentError('refused', `the call to ${name} was approved, but the MCP server asks for an approval again (${second.request.url}): not retried`);
    } finally {
      if (!options.client) await client.close();
    }
  }

  /** One call: its result, or the approval it needs (with the token it carried). */
  private async attempt(client: Client, params: CallParams): Promise<{ result: ToolResult } | { request: ApprovalRequest; token: string | undefined }> {
    let ask: ApprovalAsk | undefined;
    try {
      const result = await client.callTool(params);
      ask = askOfResult(result);
      if (!ask) return { result };
    } catch (error) {
      if (error instanceof ApprovalRequiredError) return { request: { ...error.request, tool: params.name, arguments: params.arguments }, token: this.lastToken };
      ask = askOfError(error);
      if (!ask) throw error;
    }
    return { request: approvalRequestOf(ask, params, (await this.discovery()).issuer), token: this.lastToken };
  }

  /**
   * Waits for the person's decision (docs/agent.md): resolves once the AS says `approved`, throws
   * on anything else.
   */
  private async awaitApproval(request: ApprovalRequest, token: string | undefined, options: CallToolOptions): Promise<void> {
    const { issuer } = await this.discovery();
    await waitForApproval(request, {
      issuer,
      token: () => this.pollToken(token),
      onApproval: options.onApproval ?? this.options.onApproval,
      onProgress: options.onApprovalProgress ?? this.options.onApprovalProgress,
      intervalMs: this.options.approvalPollIntervalMs ?? 2_000,
      signal: options.signal,
    });
  }

  /** The token to poll with: the one the call carried, or — once that expired — a fresh one of the same sign-in. */
  private async pollToken(token: string | undefined): Promise<string> {
    const exp = token ? decode(token).exp : undefined;
    if (token && (typeof exp !== 'number' || exp > Date.now() / 1000 + 5)) return token;
    return this.mcpToken();
  }

  /** Forgets the sign-in (and revokes its refresh token). */
  async logout(): Promise<boolean> {
    const found = await this.discovery();
    const stored = (await this.store.get(found.issuer))?.subject?.[this.options.mcpUrl];
    const revocation = found.metadata.revocation_endpoint;
    const client = stored ? await this.clientOf(stored).catch(() => undefined) : undefined;
    if (stored?.refresh_token && client && typeof revocation === 'string') await revokeToken(revocation, { token: stored.refresh_token, token_type_hint: 'refresh_token' }, client);
    await this.store.update(found.issuer, (current) => {
      if (!current?.subject) return current;
      const { [this.options.mcpUrl]: _gone, ...rest } = current.subject;
      return { ...current, subject: rest };
    });
    this.exchanged.clear();
    return stored !== undefined;
  }

  /**
   * Forgets the agent's own registration at this issuer, and every sign-in made through it; deletes
   * it at the AS too when the registration can be managed (RFC 7592). The next login registers anew.
   */
  async forgetRegistration(): Promise<RegisteredClient | undefined> {
    const found = await this.discovery();
    const kept = await this.registration();
    if (!kept) return undefined;
    if (kept.registration_client_uri && kept.registration_access_token) {
      await reach(kept.registration_client_uri, { method: 'DELETE', headers: { authorization: `Bearer ${kept.registration_access_token}` } }, 'the registration').catch(() => undefined);
    }
    await this.store.update(found.issuer, (current) => {
      const subject = Object.fromEntries(Object.entries(current?.subject ?? {}).filter(([, tokens]) => tokens.client_id !== kept.client_id));
      return { subject };
    });
    this.actor = undefined;
    this.exchanged.clear();
    return kept;
  }
}

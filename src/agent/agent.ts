import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { decodeJwt } from 'jose';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { TOKEN_EXCHANGE_GRANT, TOKEN_TYPES } from '../core/delegation.ts';
import { formatScope, parseScope } from '../core/scopes.ts';
import { discover, parseChallenge, type Discovery } from './discovery.ts';
import { AgentError, fromOAuthError } from './errors.ts';
import { deviceAuthorization, pkce, pollDevice, revokeToken, startLoopbackSignIn, tokenRequest, type ClientCredentials, type TokenResponse } from './oauth.ts';
import { CredentialStore, type StoredTokens } from './store.ts';

export interface AgentOptions {
  /** The MCP endpoint the agent works with (the gateway's route, or a self-protected server). */
  mcpUrl: string;
  /** The agent's pre-registered client id. */
  clientId: string;
  /** Its secret (the CLI reads AGENT_SECRET). */
  clientSecret?: string;
  /**
   * The agent's own resource at the AS: the audience of the user's sign-in through the agent, whose
   * `may_act` names the agent (seed 001's "agent" audience). Default http://localhost:3000.
   */
  agentResource?: string;
  /** Port of the loopback redirect URI (default 3000, as registered for the sample agent; 0 = any free port). */
  callbackPort?: number;
  store?: CredentialStore;
  /** Shows the authorization URL to the person (print it, open a browser). */
  onAuthorizationUrl?: (url: string) => void | Promise<void>;
  /** Shows the device grant's verification URL and user code (RFC 8628 §3.3). */
  onDeviceCode?: (verification: { verificationUri: string; verificationUriComplete?: string; userCode: string; expiresIn: number }) => void | Promise<void>;
  /** Step-up re-authorizations allowed per call (default 1). */
  maxStepUps?: number;
}

/** The claims of a JWT, unverified: shown to the person, never trusted. */
const decode = (jwt: string): Record<string, unknown> => {
  try {
    return decodeJwt(jwt);
  } catch {
    return {};
  }
};

const toStored = (token: TokenResponse, fallbackScope: string): StoredTokens => ({
  access_token: token.access_token,
  refresh_token: token.refresh_token,
  expires_at: Math.floor(Date.now() / 1000) + (token.expires_in ?? 300),
  scope: token.scope ?? fallbackScope,
});

/**
 * The client side of every flow, for an AI agent acting for a person (seed 001):
 * discovery from the MCP URL, the agent's own token (client credentials, the actor), the person's
 * sign-in through the agent (authorization code + PKCE on a loopback redirect; the subject token),
 * the token exchange for the MCP resource (`act` = the agent), refresh, and step-up when a tool
 * needs a scope the person has not granted yet.
 */
export class MandateAgent {
  private found: Discovery | undefined;
  private actor: { token: string; expiresAt: number } | undefined;
  private exchanged = new Map<string, { token: string; expiresAt: number }>();
  readonly store: CredentialStore;

  constructor(readonly options: AgentOptions) {
    this.store = options.store ?? new CredentialStore();
  }

  private get agentResource(): string {
    return this.options.agentResource ?? 'http://localhost:3000';
  }

  private get client(): ClientCredentials {
    return { clientId: this.options.clientId, clientSecret: this.options.clientSecret };
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

  /** The agent's own access token (client credentials): the actor of every exchange. */
  async actorToken(): Promise<string> {
    if (this.actor && this.actor.expiresAt > Date.now() / 1000 + 30) return this.actor.token;
    if (!this.options.clientSecret) throw new AgentError('usage', 'the agent needs its secret for its own token: set AGENT_SECRET');
    // Audienced to the agent's own resource, like the person's sign-in (seed 001: both are for "agent").
    const token = await tokenRequest(await this.tokenEndpoint(), { grant_type: 'client_credentials', resource: this.agentResource }, this.client, "the agent's own token");
    this.actor = { token: token.access_token, expiresAt: Math.floor(Date.now() / 1000) + (token.expires_in ?? 300) };
    return token.access_token;
  }

  /** Scopes to ask the person for: as given, else what the MCP server's challenge or metadata lists. */
  private async defaultScopes(): Promise<string[]> {
    const found = await this.discovery();
    return found.challengedScopes?.length ? found.challengedScopes : ((found.resourceMetadata.scopes_supported as string[] | undefined) ?? []);
  }

  /** Signs the person in through the agent (authorization code + PKCE, loopback redirect) and keeps the tokens. */
  async login(scopes?: string[]): Promise<StoredTokens> {
    const found = await this.discovery();
    const authorize = found.metadata.authorization_endpoint;
    if (typeof authorize !== 'string') throw new AgentError('protocol', 'the authorization server metadata has no authorization_endpoint');
    const wanted = formatScope(scopes?.length ? scopes : await this.defaultScopes());
    const loopback = await startLoopbackSignIn({ port: this.options.callbackPort ?? 3000 });
    try {
      const { verifier, challenge } = pkce();
      const state = crypto.randomUUID();
      const url = new URL(authorize);
      url.search = new URLSearchParams({
        response_type: 'code',
        client_id: this.options.clientId,
        redirect_uri: loopback.redirectUri,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        resource: this.agentResource,
        scope: wanted,
        state,
      }).toString();
      await this.options.onAuthorizationUrl?.(url.href);
      const answer = await loopback.result;
      if (answer.get('error')) {
        throw fromOAuthError(answer.get('error') ?? undefined, answer.get('error_description') ?? undefined, 'the sign-in');
      }
      // RFC 9207: the response names its issuer; RFC 6749 §10.12: the state is ours.
      if (answer.get('state') !== state) throw new AgentError('protocol', 'the sign-in answer carries another state: ignored');
      if (answer.get('iss') !== null && answer.get('iss') !== found.issuer) throw new AgentError('protocol', `the sign-in answer comes from ${answer.get('iss')}, not ${found.issuer}`);
      const token = await tokenRequest(
        await this.tokenEndpoint(),
        { grant_type: 'authorization_code', code: answer.get('code') ?? '', code_verifier: verifier, redirect_uri: loopback.redirectUri },
        this.client,
        'the sign-in',
      );
      const stored = toStored(token, wanted);
      await this.saveSubject(stored);
      this.exchanged.clear();
      return stored;
    } finally {
      loopback.close();
    }
  }

  /**
   * Signs the person in without a browser on this machine (RFC 8628): shows a URL and a code to
   * enter on any device, then polls the token endpoint at the interval the AS asks for.
   */
  async loginWithDevice(scopes?: string[]): Promise<StoredTokens> {
    const found = await this.discovery();
    const endpoint = found.metadata.device_authorization_endpoint;
    if (typeof endpoint !== 'string') throw new AgentError('protocol', `${found.issuer} does not offer the device authorization grant`);
    const wanted = formatScope(scopes?.length ? scopes : await this.defaultScopes());
    const started = await deviceAuthorization(endpoint, { scope: wanted, resource: this.agentResource }, this.client);
    await this.options.onDeviceCode?.({
      verificationUri: started.verification_uri,
      verificationUriComplete: started.verification_uri_complete,
      userCode: started.user_code,
      expiresIn: started.expires_in,
    });
    let interval = (started.interval ?? 5) * 1000;
    const deadline = Date.now() + started.expires_in * 1000;
    const tokenEndpoint = await this.tokenEndpoint();
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, interval));
      const answer = await pollDevice(tokenEndpoint, started.device_code, this.client);
      if (answer === 'authorization_pending') continue;
      if (answer === 'slow_down') {
        interval += 5_000;
        continue;
      }
      const stored = toStored(answer, wanted);
      await this.saveSubject(stored);
      this.exchanged.clear();
      return stored;
    }
    throw new AgentError('consent_denied', 'the code expired before the sign-in was completed');
  }

  private async saveSubject(tokens: StoredTokens): Promise<void> {
    const { issuer } = await this.discovery();
    await this.store.update(issuer, (current) => ({ ...current, client_id: this.options.clientId, subject: { ...current?.subject, [this.options.mcpUrl]: tokens } }));
  }

  /** The person's token (refreshed when it is about to expire). */
  async subjectToken(): Promise<StoredTokens> {
    const { issuer } = await this.discovery();
    const stored = (await this.store.get(issuer))?.subject?.[this.options.mcpUrl];
    if (!stored) throw new AgentError('not_signed_in', `not signed in for ${this.options.mcpUrl}: run \`mandate agent login\``);
    if (stored.expires_at > Date.now() / 1000 + 30) return stored;
    if (!stored.refresh_token) throw new AgentError('not_signed_in', 'the sign-in has expired: run `mandate agent login`');
    const token = await tokenRequest(await this.tokenEndpoint(), { grant_type: 'refresh_token', refresh_token: stored.refresh_token }, this.client, 'refreshing the sign-in');
    const next = toStored({ ...token, refresh_token: token.refresh_token ?? stored.refresh_token }, stored.scope);
    await this.saveSubject(next);
    return next;
  }

  /** The token for the MCP resource: subject + actor exchanged (RFC 8693), `act` = the agent. */
  async mcpToken(scopes?: string[]): Promise<string> {
    const subject = await this.subjectToken();
    const scope = formatScope(scopes ?? parseScope(subject.scope));
    const cached = this.exchanged.get(scope);
    if (cached && cached.expiresAt > Date.now() / 1000 + 30) return cached.token;
    const found = await this.discovery();
    const form: Record<string, string> = {
      grant_type: TOKEN_EXCHANGE_GRANT,
      subject_token: subject.access_token,
      subject_token_type: TOKEN_TYPES.accessToken,
      requested_token_type: TOKEN_TYPES.accessToken,
      resource: found.resource,
    };
    if (scope) form.scope = scope;
    if (this.options.clientSecret) Object.assign(form, { actor_token: await this.actorToken(), actor_token_type: TOKEN_TYPES.accessToken });
    const token = await tokenRequest(await this.tokenEndpoint(), form, this.client, 'the token exchange');
    this.exchanged.set(scope, { token: token.access_token, expiresAt: Math.floor(Date.now() / 1000) + (token.expires_in ?? 300) });
    return token.access_token;
  }

  /** The three tokens' claims: the agent's own, the person's, and the exchanged one. */
  async tokens(): Promise<{ actor?: Record<string, unknown>; subject: Record<string, unknown>; mcp: Record<string, unknown> }> {
    const subject = await this.subjectToken();
    return {
      actor: this.options.clientSecret ? decode(await this.actorToken()) : undefined,
      subject: decode(subject.access_token),
      mcp: decode(await this.mcpToken()),
    };
  }

  /**
   * `fetch` for the MCP transport: attaches the exchanged token; on 401 gets a fresh one and
   * retries once; on 403 `insufficient_scope`, signs the person in again for the scopes the
   * challenge names (step-up, bounded) and retries.
   */
  authorizedFetch(): typeof fetch {
    return async (input, init) => {
      let stepUps = 0;
      let refreshed = false;
      for (;;) {
        const headers = new Headers(init?.headers);
        headers.set('authorization', `Bearer ${await this.mcpToken()}`);
        const response = await fetch(input, { ...init, headers });
        if (response.status === 401 && !refreshed) {
          refreshed = true;
          this.exchanged.clear();
          continue;
        }
        const challenge = parseChallenge(response.headers.get('www-authenticate'));
        if (response.status === 403 && challenge.error === 'insufficient_scope' && stepUps < (this.options.maxStepUps ?? 1)) {
          stepUps++;
          const current = parseScope((await this.subjectToken()).scope);
          await this.login([...new Set([...current, ...parseScope(challenge.scope)])]);
          continue;
        }
        if (response.status === 403 && challenge.error === 'insufficient_scope') {
          throw new AgentError('scope_refused', `the MCP server needs scope ${challenge.scope ?? '(unnamed)'}, which was not granted`);
        }
        return response;
      }
    };
  }

  /** An MCP client connected with the agent's tokens. */
  async connect(name = 'mandate-agent'): Promise<Client> {
    const client = new Client({ name, version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(this.options.mcpUrl), { fetch: this.authorizedFetch() }));
    return client;
  }

  /** Forgets the sign-in (and revokes its refresh token). */
  async logout(): Promise<boolean> {
    const found = await this.discovery();
    const stored = (await this.store.get(found.issuer))?.subject?.[this.options.mcpUrl];
    const revocation = found.metadata.revocation_endpoint;
    if (stored?.refresh_token && typeof revocation === 'string') await revokeToken(revocation, { token: stored.refresh_token, token_type_hint: 'refresh_token' }, this.client);
    await this.store.update(found.issuer, (current) => {
      if (!current?.subject) return current;
      const { [this.options.mcpUrl]: _gone, ...rest } = current.subject;
      return { ...current, subject: rest };
    });
    return stored !== undefined;
  }
}

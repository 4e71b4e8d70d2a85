/**
 * The person's sign-in through the agent (seed 001): in a browser (authorization code + PKCE on a
 * loopback redirect, RFC 8252 §7.3; RFC 9207 `iss` checked; a DPoP-bound code with `dpop_jkt`) or on
 * another device (RFC 8628). The agent (agent.ts) lends what these flows need as a {@link SignInHost},
 * as it does for the token modes without a person (token-modes.ts).
 */
import { decodeJwt } from 'jose';
import type { Discovery } from './discovery.ts';
import type { AgentDpop, DpopKeys } from './dpop.ts';
import { AgentError, fromOAuthError } from './errors.ts';
import { deviceAuthorization, pkce, pollDevice, startLoopbackSignIn, type TokenResponse } from './oauth.ts';
import type { ActiveClient, AgentOptions } from './options.ts';
import type { SignedInUser, StoredTokens } from './store.ts';

/** What the sign-in flows use of the agent. */
export interface SignInHost {
  readonly options: AgentOptions;
  readonly dpop: DpopKeys;
  /** The resource of the agent itself (a delegated sign-in asks a token for it). */
  readonly agentResource: string;
  discovery(): Promise<Discovery>;
  scopesToAsk(scopes?: string[]): Promise<string>;
  /** The client to sign in as (registered first when the agent has none). */
  clientForSignIn(redirectUri: string): Promise<ActiveClient>;
  modeFor(client: ActiveClient): 'delegated' | 'direct';
  checkCredentials(client: ActiveClient, mode: 'delegated' | 'direct'): Promise<void>;
  dpopFor(client: ActiveClient): Promise<AgentDpop | undefined>;
  tokenRequest(form: Record<string, string>, client: ActiveClient, what: string): Promise<TokenResponse>;
  tokenEndpoint(): Promise<string>;
  authenticating(client: ActiveClient): Promise<ActiveClient>;
  saveSubject(tokens: StoredTokens): Promise<StoredTokens>;
}

/** The claims of a JWT, unverified: shown to the person, never trusted. */
export const decode = (jwt: string): Record<string, unknown> => {
  try {
    return decodeJwt(jwt);
  } catch {
    return {};
  }
};

export const toStored = (token: TokenResponse, fallbackScope: string, client: ActiveClient, mode: StoredTokens['mode'], issuer: string, previous?: SignedInUser): StoredTokens => ({
  access_token: token.access_token,
  refresh_token: token.refresh_token,
  expires_at: Math.floor(Date.now() / 1000) + (token.expires_in ?? 300),
  scope: token.scope ?? fallbackScope,
  client_id: client.clientId,
  mode,
  ...(isDpop(token) ? { token_type: 'DPoP' } : {}),
  user: userOf(token.id_token, issuer, client.clientId) ?? previous,
});

export const isDpop = (token: { token_type?: string }) => token.token_type?.toLowerCase() === 'dpop';

/**
 * The person an ID token names, for display: only from an ID token of this issuer for this client
 * (OIDC Core §3.1.3.7 items 2–3). Not a proof of anything — the access token is what servers check.
 */
function userOf(idToken: string | undefined, issuer: string, clientId: string): SignedInUser | undefined {
  if (!idToken) return undefined;
  const claims = decode(idToken);
  const audience = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (claims.iss !== issuer || !audience.includes(clientId) || typeof claims.sub !== 'string') return undefined;
  const text = (value: unknown) => (typeof value === 'string' && value ? value : undefined);
  return { sub: claims.sub, preferred_username: text(claims.preferred_username), name: text(claims.name) };
}



/**
 * Signs the person in through the agent (authorization code + PKCE, loopback redirect) and keeps
 * the tokens. Registers the agent first when it has no client id.
 */
export async function signInInBrowser(host: SignInHost, scopes?: string[]): Promise<StoredTokens> {
  const found = await host.discovery();
  const authorize = found.metadata.authorization_endpoint;
  if (typeof authorize !== 'string') throw new AgentError('protocol', 'the authorization server metadata has no authorization_endpoint');
  const wanted = await host.scopesToAsk(scopes);
  const loopback = await startLoopbackSignIn({ port: host.options.callbackPort ?? 3000 });
  try {
    const client = await host.clientForSignIn(loopback.redirectUri);
    const mode = host.modeFor(client);
    await host.checkCredentials(client, mode);
    const { verifier, challenge } = pkce();
    const state = crypto.randomUUID();
    // RFC 9449 §10: the code is bound to the proof key that will redeem it.
    const dpop = await host.dpopFor(client);
    const url = new URL(authorize);
    // Delegated: a token for the agent itself, whose may_act names it; direct: for the MCP server.
    const resource = mode === 'delegated' ? host.agentResource : found.resource;
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: client.clientId,
      redirect_uri: loopback.redirectUri,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      resource,
      // An empty scope is left out (MCP scope selection: none known, none asked).
      ...(wanted ? { scope: wanted } : {}),
      ...(dpop ? { dpop_jkt: await dpop.thumbprint() } : {}),
      state,
    }).toString();
    await host.options.onAuthorizationUrl?.(url.href);
    const answer = await loopback.result;
    if (answer.get('error')) {
      throw fromOAuthError(answer.get('error') ?? undefined, answer.get('error_description') ?? undefined, 'the sign-in');
    }
    // RFC 9207: the response names its issuer; RFC 6749 §10.12: the state is ours.
    if (answer.get('state') !== state) throw new AgentError('protocol', 'the sign-in answer carries another state: ignored');
    // RFC 9207 §2.4: an AS that says it sends `iss` must send it, and a present `iss` must be the issuer (a mix-up otherwise).
    const iss = answer.get('iss');
    if (iss === null && found.metadata.authorization_response_iss_parameter_supported === true) {
      throw new AgentError('protocol', `the sign-in answer carries no iss, though ${found.issuer} says it sends one (RFC 9207): not redeemed`);
    }
    if (iss !== null && iss !== found.issuer) throw new AgentError('protocol', `the sign-in answer comes from ${iss}, not ${found.issuer}: not redeemed`);
    const token = await host.tokenRequest(
      // RFC 8707 §2.2: the resource again at the token endpoint, the one the code was asked for.
      { grant_type: 'authorization_code', code: answer.get('code') ?? '', code_verifier: verifier, redirect_uri: loopback.redirectUri, resource },
      client,
      'the sign-in',
    );
    return await host.saveSubject(toStored(token, wanted, client, mode, found.issuer));
  } finally {
    loopback.close();
  }
}

/**
 * Signs the person in without a browser on this machine (RFC 8628): shows a URL and a code to
 * enter on any device, then polls the token endpoint at the interval the AS asks for.
 */
export async function signInOnDevice(host: SignInHost, scopes?: string[]): Promise<StoredTokens> {
  const found = await host.discovery();
  const endpoint = found.metadata.device_authorization_endpoint;
  if (typeof endpoint !== 'string') throw new AgentError('protocol', `${found.issuer} does not offer the device authorization grant`);
  const wanted = await host.scopesToAsk(scopes);
  const client = await host.clientForSignIn(`http://localhost:${host.options.callbackPort || 3000}/callback`);
  const mode = host.modeFor(client);
  await host.checkCredentials(client, mode);
  const started = await deviceAuthorization(endpoint, { scope: wanted, resource: mode === 'delegated' ? host.agentResource : found.resource }, client);
  await host.options.onDeviceCode?.({
    verificationUri: started.verification_uri,
    verificationUriComplete: started.verification_uri_complete,
    userCode: started.user_code,
    expiresIn: started.expires_in,
  });
  let interval = (started.interval ?? 5) * 1000;
  const deadline = Date.now() + started.expires_in * 1000;
  const tokenEndpoint = await host.tokenEndpoint();
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, interval));
    const dpop = await host.dpopFor(client);
    const answer = await pollDevice(tokenEndpoint, started.device_code, await host.authenticating(client), dpop);
    if (answer === 'authorization_pending') continue;
    if (answer === 'slow_down') {
      interval += 5_000;
      continue;
    }
    if (dpop && isDpop(answer)) host.dpop.bind(answer.access_token, dpop);
    return host.saveSubject(toStored(answer, wanted, client, mode, found.issuer));
  }
  throw new AgentError('consent_denied', 'the code expired before the sign-in was completed');
}

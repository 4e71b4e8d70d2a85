import { createHash, createPrivateKey, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentError, fromOAuthError, reach } from './errors.ts';
import { importJWK, SignJWT, type JWK } from 'jose';
import { basicAuthorization } from '../core/encoding.ts';
import type { AgentDpop } from './dpop.ts';

/** How the agent authenticates at a token endpoint (RFC 7591 §2 `token_endpoint_auth_method`). */
export type TokenEndpointAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none' | 'private_key_jwt' | 'workload_identity';

/** The agent's private key for `private_key_jwt` (RFC 7523 §2.2): PEM (PKCS#8) or a private JWK. */
export interface ClientKey {
  privateKeyPem?: string;
  jwk?: JWK;
  /** Signing algorithm, e.g. ES256 (default: the JWK's `alg`, else ES256). */
  alg?: string;
  kid?: string;
}

export interface ClientCredentials {
  clientId: string;
  clientSecret?: string;
  /**
   * How to authenticate: as registered (the registration response's `token_endpoint_auth_method`);
   * absent = `client_secret_basic` with a secret, `private_key_jwt` with a key, else `none`.
   */
  authMethod?: TokenEndpointAuthMethod;
  key?: ClientKey;
  /** The `aud` of a client assertion: the AS issuer (RFC 7523 §3 item 3). */
  assertionAudience?: string;
  /** `workload_identity` (a Mandate extension): the platform's JWT is the client assertion, read fresh for each request. */
  workloadToken?: () => Promise<string>;
}

/** The method a client authenticates with when none was named. */
export function authMethodOf(client: ClientCredentials): TokenEndpointAuthMethod {
  if (client.authMethod) return client.authMethod;
  if (client.key) return 'private_key_jwt';
  return client.clientSecret ? 'client_secret_basic' : 'none';
}

/** RFC 7523 §2.2 / §3: a client assertion, `iss` = `sub` = client id, `aud` = the AS, one minute, a fresh `jti`. */
export async function clientAssertion(client: ClientCredentials, audience: string): Promise<string> {
  const key = client.key;
  if (!key) throw new AgentError('usage', `private_key_jwt needs the agent's private key (clientKey)`);
  const alg = key.alg ?? key.jwk?.alg ?? 'ES256';
  const signingKey = key.jwk ? await importJWK(key.jwk, alg) : key.privateKeyPem ? createPrivateKey(key.privateKeyPem) : undefined;
  if (!signingKey) throw new AgentError('usage', 'clientKey needs privateKeyPem or jwk');
  return new SignJWT({})
    .setProtectedHeader({ alg, ...(key.kid ?? key.jwk?.kid ? { kid: key.kid ?? key.jwk?.kid } : {}) })
    .setIssuer(client.clientId)
    .setSubject(client.clientId)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime('60s')
    .setJti(randomUUID())
    .sign(signingKey);
}

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in?: number;
  refresh_token?: string;
  scope?: string;
  issued_token_type?: string;
  id_token?: string;
}

/**
 * A form POST to an AS endpoint, the client authenticated by its method (`none`: the client id
 * alone). With `dpop`, a proof rides along; a `400 use_dpop_nonce` (RFC 9449 §8) is retried once
 * with the nonce the AS gave (a new proof, a new `jti`, a new client assertion).
 */
async function postAs(endpoint: string, form: Record<string, string>, client: ClientCredentials, dpop?: AgentDpop): Promise<{ response: Response; json: Record<string, unknown> }> {
  for (let attempt = 0; ; attempt++) {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    const body = new URLSearchParams(form);
    const method = authMethodOf(client);
    if (method === 'client_secret_basic' || method === 'client_secret_post') {
      if (!client.clientSecret) throw new AgentError('usage', `${client.clientId} authenticates with ${method}: the agent needs its secret (AGENT_SECRET)`);
      if (method === 'client_secret_basic') headers.authorization = basicAuthorization(client.clientId, client.clientSecret);
      else {
        body.set('client_id', client.clientId);
        body.set('client_secret', client.clientSecret);
      }
    } else if (method === 'private_key_jwt') {
      body.set('client_id', client.clientId);
      body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      body.set('client_assertion', await clientAssertion(client, client.assertionAudience ?? endpoint));
    } else if (method === 'workload_identity') {
      if (!client.workloadToken) throw new AgentError('usage', 'workload_identity needs the platform token (workloadIdentity)');
      body.set('client_id', client.clientId);
      body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      body.set('client_assertion', await client.workloadToken());
    } else if (client.clientId) body.set('client_id', client.clientId);
    if (dpop) headers.dpop = await dpop.proof('POST', endpoint);
    const response = await reach(endpoint, { method: 'POST', headers, body }, 'the authorization server');
    dpop?.remember(endpoint, response.headers.get('dpop-nonce'));
    const json = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    if (dpop && attempt === 0 && response.status === 400 && json.error === 'use_dpop_nonce' && response.headers.get('dpop-nonce')) continue;
    return { response, json };
  }
}

const oauthError = (json: Record<string, unknown>) => [json.error as string | undefined, json.error_description as string | undefined] as const;

/** A token request; an OAuth error becomes the AgentError a person can act on. */
export async function tokenRequest(endpoint: string, form: Record<string, string>, client: ClientCredentials, what: string, dpop?: AgentDpop): Promise<TokenResponse> {
  const { response, json } = await postAs(endpoint, form, client, dpop);
  if (!response.ok || typeof json.access_token !== 'string') throw fromOAuthError(...oauthError(json), what, response.status);
  return json as unknown as TokenResponse;
}

export interface DeviceAuthorizationResponse {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete?: string;
  expires_in: number;
  interval?: number;
}

/** RFC 7009: revokes a token; a failure is ignored (the caller forgets the token anyway). */
export async function revokeToken(endpoint: string, form: Record<string, string>, client: ClientCredentials): Promise<void> {
  await postAs(endpoint, form, client).catch(() => undefined);
}

/** RFC 8628 §3.1 */
export async function deviceAuthorization(endpoint: string, form: Record<string, string>, client: ClientCredentials): Promise<DeviceAuthorizationResponse> {
  const { response, json } = await postAs(endpoint, form, client);
  if (!response.ok || typeof json.device_code !== 'string') throw fromOAuthError(...oauthError(json), 'the device authorization request', response.status);
  return json as unknown as DeviceAuthorizationResponse;
}

/** RFC 8628 §3.4: one poll; `authorization_pending` and `slow_down` are answers, not failures. */
export async function pollDevice(endpoint: string, deviceCode: string, client: ClientCredentials, dpop?: AgentDpop): Promise<TokenResponse | 'authorization_pending' | 'slow_down'> {
  const { response, json } = await postAs(endpoint, { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: deviceCode }, client, dpop);
  if (response.ok && typeof json.access_token === 'string') return json as unknown as TokenResponse;
  if (json.error === 'authorization_pending' || json.error === 'slow_down') return json.error;
  if (json.error === 'expired_token') throw new AgentError('consent_denied', 'the code expired before the sign-in was completed');
  throw fromOAuthError(...oauthError(json), 'the sign-in', response.status);
}

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export interface LoopbackSignIn {
  /** The redirect URI to send in the authorization request (its port is the real one). */
  redirectUri: string;
  /** Resolves with the authorization response's parameters once the browser comes back. */
  result: Promise<URLSearchParams>;
  close(): void;
}

/**
 * The callback page's style: the authorization server's page look in miniature (light and dark),
 * inline so the page needs nothing but this process. The CSP allows this one style by its hash.
 */
const CALLBACK_STYLE =
  ':root{color-scheme:light dark;font-family:system-ui,-apple-system,"Segoe UI",sans-serif;line-height:1.45;--bg:#f3f4f7;--card:#fff;--text:#1b1e24;--muted:#5b6270;--line:#dde1e7;--primary:#2f5bea}' +
  '@media (prefers-color-scheme:dark){:root{--bg:#0e1014;--card:#181b21;--text:#e7e9ed;--muted:#a0a7b3;--line:#2d323b;--primary:#6d8cff}}' +
  'body{margin:0;min-height:100vh;display:grid;place-items:center;background:var(--bg);color:var(--text)}' +
  'main{width:min(28rem,92vw);box-sizing:border-box;padding:1.75rem 2rem;background:var(--card);border:1px solid var(--line);border-radius:14px;box-shadow:0 6px 24px rgb(0 0 0/.07)}' +
  '.brand{display:flex;align-items:center;gap:.6rem;margin-bottom:1.25rem;font-weight:650}' +
  '.mark{width:28px;height:28px;border-radius:8px;background:var(--primary);color:#fff;display:grid;place-items:center;font-weight:700}' +
  'h1{font-size:1.35rem;margin:0 0 .75rem}p{margin:.6rem 0}.muted{color:var(--muted);font-size:.88rem}';
const CALLBACK_CSP = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(CALLBACK_STYLE).digest('base64')}'; base-uri 'none'; form-action 'none'`;
const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

/** The page the browser shows on the loopback redirect: plain words, no script, nothing loaded. */
const PAGE = (title: string, text: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
  `<meta http-equiv="Content-Security-Policy" content="${CALLBACK_CSP}"><title>${escapeHtml(title)}</title><style>${CALLBACK_STYLE}</style></head>` +
  `<body><main><div class="brand"><span class="mark" aria-hidden="true">M</span><span>Mandate agent</span></div>` +
  `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p><p class="muted">This page was served by the agent on your own computer.</p></main></body></html>`;

/**
 * The redirect URI of a native app (RFC 8252 §7.3): a one-shot HTTP server on the loopback
 * interface. Port 0 picks a free one (the AS lets loopback redirect ports vary).
 */
export async function startLoopbackSignIn(options: { port: number; path?: string; timeoutMs?: number }): Promise<LoopbackSignIn> {
  const path = options.path ?? '/callback';
  let settle!: (params: URLSearchParams) => void;
  let fail!: (error: Error) => void;
  const result = new Promise<URLSearchParams>((resolve, reject) => {
    settle = resolve;
    fail = reject;
  });
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== path) {
      res.writeHead(404).end();
      return;
    }
    const error = url.searchParams.get('error');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(error ? PAGE('Sign-in not completed', 'The agent was not authorized. You can close this tab.') : PAGE('Signed in', 'The agent has what it needs. You can close this tab and return to the terminal.'));
    settle(url.searchParams);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new AgentError('usage', `port ${options.port} is in use: pass --callback-port 0 (any free port) or free it`) : error),
    );
    server.listen(options.port, '127.0.0.1', () => resolve());
  });
  const timer = setTimeout(() => fail(new AgentError('consent_denied', 'no sign-in within the time allowed')), options.timeoutMs ?? 300_000);
  const close = () => {
    clearTimeout(timer);
    server.close();
    server.closeAllConnections();
  };
  void result.finally(close).catch(() => undefined);
  return { redirectUri: `http://localhost:${(server.address() as AddressInfo).port}${path}`, result, close };
}

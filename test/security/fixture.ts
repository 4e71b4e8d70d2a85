import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { AS_DEFAULTS } from './runner.ts';

export const WEB_REDIRECT = 'https://client.example/cb';
export const LOOPBACK_REDIRECT = 'http://127.0.0.1:4000/callback';
export const SECRETS = {
  web: 'security-web-secret-0123456789abcdef0123',
  post: 'security-post-secret-0123456789abcdef012',
  machine: 'security-machine-secret-0123456789abcdef',
} as const;

/**
 * The suite's authorization server, configured as shipped (registration defaults untouched) with
 * configured clients, so cases need no registration: `web` (client_secret_basic), `post`
 * (client_secret_post), `spa` (public, PKCE) and `machine` (client credentials only).
 */
export async function startSuiteServer(overrides: Record<string, unknown> = {}, extraClients: Record<string, unknown>[] = []): Promise<TestAuthServer> {
  process.env.SECURITY_WEB_SECRET = SECRETS.web;
  process.env.SECURITY_POST_SECRET = SECRETS.post;
  process.env.SECURITY_MACHINE_SECRET = SECRETS.machine;
  const redirect_uris = [WEB_REDIRECT, LOOPBACK_REDIRECT];
  return startTestAuthServer({
    ...AS_DEFAULTS,
    clients: [
      { client_id: 'web', client_secret_env: 'SECURITY_WEB_SECRET', redirect_uris },
      { client_id: 'post', client_secret_env: 'SECURITY_POST_SECRET', token_endpoint_auth_method: 'client_secret_post', redirect_uris },
      { client_id: 'spa', token_endpoint_auth_method: 'none', redirect_uris },
      { client_id: 'machine', client_secret_env: 'SECURITY_MACHINE_SECRET', grant_types: ['client_credentials'] },
      ...extraClients,
    ],
    ...overrides,
  } as never);
}

export const clientAuth = {
  web: { authorization: basic('web', SECRETS.web) },
  machine: { authorization: basic('machine', SECRETS.machine) },
};

/** An authorization URL for `client` with good defaults; `undefined` removes a parameter. */
export function authorizeUrl(as: TestAuthServer, params: Record<string, string | undefined> = {}, challenge = pkcePair().challenge): string {
  const base: Record<string, string> = {
    response_type: 'code',
    client_id: 'web',
    redirect_uri: WEB_REDIRECT,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: 'st',
    resource: as.resource,
    scope: 'mcp:read',
  };
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return `${as.issuer}/authorize?${new URLSearchParams(base)}`;
}

/** Signs the demo user in and returns a fresh code with its verifier. */
export async function freshCode(as: TestAuthServer, params: Record<string, string | undefined> = {}, browser = new FormBrowser(as.issuer)) {
  const { verifier, challenge } = pkcePair();
  const back = await browser.authorize(authorizeUrl(as, params, challenge));
  const code = back.searchParams.get('code');
  if (!code) throw new Error(`no code: ${back.href}`);
  return { code, verifier, browser };
}

/** A code redeemed for tokens by `web`. */
export async function freshTokens(as: TestAuthServer, params: Record<string, string | undefined> = {}) {
  const { code, verifier } = await freshCode(as, params);
  const res = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: params.redirect_uri ?? WEB_REDIRECT }, clientAuth.web);
  if (res.status !== 200) throw new Error(`token: ${res.text}`);
  return res.json as { access_token: string; refresh_token: string };
}

import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, DEMO_PASSWORD_HASH, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import type { AuthServerConfigInput } from '../../src/config/schema.ts';

export const ADMIN_CLIENT = 'admin-test-console';
export const REDIRECT_URI = 'http://127.0.0.1:5999/callback';

/**
 * An authorization server with users of every kind of role (password "demo" for all) and a
 * public client, as an admin console would be: authorization code + PKCE, no secret.
 */
export async function startAdminServer(overrides: Partial<AuthServerConfigInput> = {}): Promise<TestAuthServer & { admin: string }> {
  const user = (username: string, roles: string[]) => ({ username, password_hash: DEMO_PASSWORD_HASH, roles });
  const as = await startTestAuthServer({
    users: [
      { username: 'demo', name: 'Demo User', email: 'demo@example.com', password_hash: DEMO_PASSWORD_HASH },
      user('alice', ['admin:write']),
      user('reader', ['admin:read']),
      user('agents-admin', ['admin:agents:write']),
    ],
    clients: [{ client_id: ADMIN_CLIENT, client_name: 'Admin test console', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI] }],
    agents: [{ client_id: 'sample-agent', client_name: 'Sample agent', owner: 'demo' }],
    ...overrides,
  });
  return { ...as, admin: `${as.issuer}/admin` };
}

/** Signs a user in through the admin client (code + PKCE, over HTTP) and redeems the code. */
export async function signIn(as: TestAuthServer, username: string, options: { scope?: string; resource?: string; client?: { id: string; secret: string } } = {}) {
  const { verifier, challenge } = pkcePair();
  const url = new URL(`${as.issuer}/authorize`);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: options.client?.id ?? ADMIN_CLIENT,
    redirect_uri: REDIRECT_URI,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: 'st',
    scope: options.scope ?? 'admin:read admin:write',
    resource: options.resource ?? `${as.issuer}/admin`,
  }).toString();
  const back = await new FormBrowser(as.issuer).authorize(url.href, { username, password: 'demo' });
  const code = back.searchParams.get('code');
  if (!code) return { error: back.searchParams.get('error') ?? 'no code', description: back.searchParams.get('error_description') };
  const token = options.client
    ? await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier }, { authorization: basic(options.client.id, options.client.secret) })
    : await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, client_id: ADMIN_CLIENT, code_verifier: verifier });
  if (token.status !== 200) throw new Error(`token: ${token.status} ${token.text}`);
  return { accessToken: token.json.access_token as string, scope: token.json.scope as string };
}

/** Calls the admin API with a bearer token. */
export async function api(as: TestAuthServer, token: string | undefined, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${as.issuer}/admin/api/v1${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: (text ? JSON.parse(text) : undefined) as Record<string, unknown> & { items?: Record<string, unknown>[]; next_cursor?: string | null } };
}

/** The audit events of the server so far (flushed first). */
export async function auditEvents(as: TestAuthServer) {
  await as.ctx.audit.flush();
  return as.store.audit.list({ limit: 1000 });
}

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pkcePair, postForm } from './auth-server.ts';

/**
 * Admin access for tests, the way a person gets it (docs/admin.md): the static admin token only
 * creates the first admin (`POST /admin/api/v1/bootstrap`); that admin then signs in through the
 * console's public client (`mandate-console`, code + PKCE) for the admin resource, and the token
 * it receives calls `/admin/api/v1`.
 */

/** The bootstrapped admin's username in tests. */
export const BOOTSTRAP_ADMIN = 'root';

/** An authorization server as the helpers need it: where it is, and its static token (or the data dir holding it). */
export interface AdminTarget {
  issuer: string;
  adminToken?: string;
  dataDir?: string;
}

export interface AdminAccess {
  accessToken: string;
  /** Authorization and JSON content type, for `fetch`. */
  headers: Record<string, string>;
  /** Calls `/admin/api/v1<path>` with this token. */
  api: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<AdminAnswer>;
}

export interface AdminAnswer {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown> & { items?: Record<string, unknown>[]; next_cursor?: string | null; error?: string };
}

/** The static admin token of a server started from a data dir: `<dataDir>/secrets/admin.token`. */
export function staticAdminToken(target: AdminTarget): string {
  if (target.adminToken) return target.adminToken;
  if (!target.dataDir) throw new Error('the static admin token: give adminToken or dataDir');
  return readFileSync(join(target.dataDir, 'secrets', 'admin.token'), 'utf8').trim();
}

/** Calls the admin API (`/admin/api/v1<path>`) with a bearer token, or none. */
export async function adminApi(issuer: string, token: string | undefined, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<AdminAnswer> {
  const res = await fetch(`${issuer}/admin/api/v1${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: AdminAnswer['json'] = {};
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** The first admin, created with the static token. Refused (409) once any admin exists. */
export async function bootstrapAdmin(target: AdminTarget, username = BOOTSTRAP_ADMIN): Promise<{ username: string; password: string }> {
  const password = randomBytes(18).toString('base64url');
  const res = await adminApi(target.issuer, staticAdminToken(target), 'POST', '/bootstrap', { username, password });
  if (res.status !== 201) throw new Error(`bootstrap: ${res.status} ${res.text}`);
  return { username, password };
}

const bootstrapped = new Map<string, Promise<{ username: string; password: string }>>();
const signedIn = new Map<string, Promise<{ accessToken: string; expiresAt: number }>>();

/**
 * An `admin:write` token of the first admin: bootstrapped with the static token on the first call
 * for this issuer, then signed in; both kept for the next calls (a fresh sign-in once the token
 * is about to expire).
 */
export async function adminAccess(target: AdminTarget): Promise<AdminAccess> {
  let credentials = bootstrapped.get(target.issuer);
  if (!credentials) {
    credentials = bootstrapAdmin(target);
    bootstrapped.set(target.issuer, credentials);
    credentials.catch(() => bootstrapped.delete(target.issuer));
  }
  const { username, password } = await credentials;
  let session = signedIn.get(target.issuer);
  const current = session ? await session.catch(() => undefined) : undefined;
  if (!current || current.expiresAt - Date.now() < 30_000) {
    session = signInAdmin(target.issuer, username, password);
    signedIn.set(target.issuer, session);
    session.catch(() => signedIn.delete(target.issuer));
  }
  return accessWith(target.issuer, (await session!).accessToken);
}

/** Wraps an admin access token: headers and an API caller. */
export function accessWith(issuer: string, accessToken: string): AdminAccess {
  return {
    accessToken,
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
    api: (method, path, body, headers) => adminApi(issuer, accessToken, method, path, body, headers),
  };
}

/**
 * Signs an admin in through the console's client, over HTTP as a browser would (login page, any
 * agreement, consent, ticking what needs a tick), stops at the redirect to the console's callback and redeems
 * the code itself. The console creates its client on its first sign-in; starting one does that.
 */
export async function signInAdmin(issuer: string, username: string, password: string, scope = 'admin:write'): Promise<{ accessToken: string; expiresAt: number }> {
  await fetch(`${issuer}/console/login`, { redirect: 'manual' });
  const redirectUri = `${issuer}/console/callback`;
  const { verifier, challenge } = pkcePair();
  const url = new URL(`${issuer}/authorize`);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: 'mandate-console',
    redirect_uri: redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: randomBytes(8).toString('hex'),
    scope,
    resource: `${issuer}/admin`,
  }).toString();
  const back = await walkToRedirect(url.href, redirectUri, { username, password });
  const code = back.searchParams.get('code');
  if (!code) throw new Error(`admin sign-in of ${username}: ${back.searchParams.get('error')} ${back.searchParams.get('error_description')}`);
  const token = await postForm(`${issuer}/token`, { grant_type: 'authorization_code', code, redirect_uri: redirectUri, client_id: 'mandate-console', code_verifier: verifier });
  if (token.status !== 200) throw new Error(`admin token: ${token.status} ${token.text}`);
  return { accessToken: token.json.access_token as string, expiresAt: Date.now() + Number(token.json.expires_in) * 1000 };
}

/**
 * The login and consent pages, followed with cookies until a redirect to `stopAt` (which is on
 * the authorization server's own origin, so the form browser of browser-driver.ts would follow it).
 */
async function walkToRedirect(start: string, stopAt: string, login: { username: string; password: string }): Promise<URL> {
  const cookies = new Map<string, string>();
  let current = start;
  let form: URLSearchParams | undefined;
  for (let hops = 0; hops < 12; hops++) {
    const res = await fetch(current, {
      method: form ? 'POST' : 'GET',
      redirect: 'manual',
      headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; '), accept: 'text/html', ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      body: form,
    });
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const [name, ...value] = pair!.split('=');
      if (attributes.some((a) => /max-age=0/i.test(a.trim()))) cookies.delete(name!.trim());
      else cookies.set(name!.trim(), value.join('='));
    }
    const location = res.headers.get('location');
    if (location && res.status >= 300 && res.status < 400) {
      const next = new URL(location, current);
      if (next.href.startsWith(`${stopAt}?`)) return next;
      current = next.href;
      form = undefined;
      continue;
    }
    const html = await res.text();
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    if (!action) throw new Error(`admin sign-in stopped at ${current} (${res.status}): ${html.slice(0, 300)}`);
    form = new URLSearchParams([...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (html.includes('name="password"')) {
      form.set('username', login.username);
      form.set('password', login.password);
    } else if (/action="[^"]*\/agreement"/.test(html)) {
      form.set('decision', 'accept');
    } else if (html.includes('name="decision"')) {
      form.set('decision', 'allow');
      for (const tick of html.matchAll(/<input type="checkbox" name="high_risk" value="([^"]+)"/g)) form.append('high_risk', tick[1]!);
    } else {
      throw new Error(`admin sign-in: an unexpected page at ${current}: ${html.slice(0, 300)}`);
    }
    current = new URL(action.replace(/&amp;/g, '&'), current).href;
  }
  throw new Error('admin sign-in: too many steps');
}

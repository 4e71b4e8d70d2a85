import assert from 'node:assert/strict';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { DEMO_PASSWORD_HASH, pkcePair, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import type { AuthServerConfigInput } from '../../src/config/schema.ts';
import type { AuditEvent } from '../../src/store/types.ts';

/** Shared by the remember-me tests: a server, a browser whose cookies and headers a test can change, one sign-in. */

export const REDIRECT = 'http://127.0.0.1:4100/cb';
export const CHROME_LINUX = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
export const FIREFOX_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0';
export const COUNTRY_HEADER = 'x-test-country';

/** Users with the demo password, one per test, so their histories (velocity, devices) stay apart. */
export const USERS = ['demo', 'ann', 'ben', 'cat', 'dan', 'eve', 'fay', 'gus', 'hal', 'ivy', 'jon', 'kim', 'lou', 'max'];

/** Remember me on, behind a trusted proxy (127.0.0.1) that reports the country: each test sets its address and country. */
export function startRememberServer(overrides: Partial<AuthServerConfigInput> = {}): Promise<TestAuthServer> {
  return startTestAuthServer({
    users: USERS.map((username) => ({ username, password_hash: DEMO_PASSWORD_HASH })),
    clients: [{ client_id: 'remember-app', client_name: 'Remember app', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT] }],
    trusted_proxies: ['127.0.0.1', '::1'],
    remember_me: { enabled: true, risk: { country_header: COUNTRY_HEADER } },
    ...overrides,
  });
}

export const authorizeUrl = (as: TestAuthServer, extra: Record<string, string> = {}) =>
  `${as.issuer}/authorize?${new URLSearchParams({
    response_type: 'code',
    client_id: 'remember-app',
    redirect_uri: REDIRECT,
    code_challenge: pkcePair().challenge,
    code_challenge_method: 'S256',
    resource: as.resource,
    scope: 'mcp:read',
    state: 's1',
    ...extra,
  })}`;

/** A FormBrowser whose cookies and request headers the test may read and change between requests. */
export class Browser extends FormBrowser {
  /** The headers sent with every request (the same object FormBrowser reads): change them between requests. */
  readonly sent: Record<string, string>;
  constructor(as: TestAuthServer, headers: Record<string, string> = {}) {
    const own = { 'x-forwarded-for': '203.0.113.5', 'user-agent': CHROME_LINUX, ...headers };
    super(as.issuer, own);
    this.sent = own;
  }
  get jar(): Map<string, string> {
    return (this as unknown as { cookies: Map<string, string> }).cookies;
  }
  /** The session ended (its 8 hours passed): the session cookie is gone; the device and remember cookies stay. */
  closeSession() {
    this.jar.delete('mandate_session');
  }
}

export type Page = Awaited<ReturnType<FormBrowser['open']>>;

/** Signs in with the password (ticking "Keep me signed in" unless told not to), allows, returns the redirect. */
export async function passwordSignIn(as: TestAuthServer, browser: Browser, username: string, options: { remember?: boolean; extra?: Record<string, string>; password?: string } = {}): Promise<Page> {
  let page = await browser.open(authorizeUrl(as, options.extra));
  assert.match(page.html, /name="password"/, 'the login page');
  page = await browser.submit(page, { username, password: options.password ?? 'demo', ...(options.remember === false ? {} : { remember: '1' }) });
  if (page.html.includes('name="decision"')) page = await browser.submit(page, { decision: 'allow' });
  return page;
}

/** Comes back to the client's sign-in with no session: the redirect (silent) or the login page. */
export const comeBack = (as: TestAuthServer, browser: Browser, extra: Record<string, string> = {}) => browser.open(authorizeUrl(as, extra));

export async function events(as: TestAuthServer, type: string, sub?: string): Promise<(AuditEvent & { id: number })[]> {
  await as.ctx.audit.flush();
  return (await as.store.audit.list({ type, limit: 100 })).filter((e) => sub === undefined || e.sub === sub);
}

export const subOf = async (as: TestAuthServer, username: string) => (await as.store.users.findByUsername(username))!.sub;

export const signals = (event: AuditEvent | undefined) => event?.data?.signals as Record<string, unknown> | undefined;

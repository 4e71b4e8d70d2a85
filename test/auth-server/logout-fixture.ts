import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import type { AuthServerConfigInput } from '../../src/config/schema.ts';
import type { AuditEvent } from '../../src/store/types.ts';
import { logoutDeliveriesSettled } from '../../src/auth-server/backchannel-logout.ts';

/** Where the configured test clients send the browser after signing in and after signing out. */
export const CALLBACK = 'http://127.0.0.1:4000/callback';
export const LOGGED_OUT = 'http://127.0.0.1:4000/logged-out';

/**
 * A client's back-channel logout endpoint on loopback: records every POST and answers with the
 * statuses given (the last one repeats); `hang` never answers (a timeout).
 */
export interface Receiver {
  uri: string;
  received: { body: URLSearchParams; headers: IncomingHttpHeaders }[];
  tokens(): string[];
  close(): Promise<void>;
}

export async function startReceiver(statuses: (number | 'hang')[] = [200], path = '/backchannel-logout'): Promise<Receiver> {
  const received: Receiver['received'] = [];
  const hanging: (() => void)[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== path) return res.writeHead(404).end();
      received.push({ body: new URLSearchParams(Buffer.concat(chunks).toString('utf8')), headers: req.headers });
      const status = statuses[Math.min(received.length - 1, statuses.length - 1)]!;
      if (status === 'hang') return void hanging.push(() => res.destroy());
      res.writeHead(status, { 'cache-control': 'no-store' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    uri: `http://127.0.0.1:${port}${path}`,
    received,
    tokens: () => received.map((r) => r.body.get('logout_token')!),
    close: () =>
      new Promise<void>((resolve) => {
        hanging.forEach((h) => h());
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A configured public client of the test server, with logout metadata. */
export function rpClient(clientId: string, extra: Record<string, unknown> = {}) {
  return {
    client_id: clientId,
    client_name: `App ${clientId}`,
    token_endpoint_auth_method: 'none' as const,
    redirect_uris: [CALLBACK],
    post_logout_redirect_uris: [LOGGED_OUT],
    ...extra,
  };
}

/** An authorization server for logout tests: fast retries, the given clients. */
export function startLogoutServer(clients: NonNullable<AuthServerConfigInput['clients']>, overrides: Partial<AuthServerConfigInput> = {}): Promise<TestAuthServer> {
  return startTestAuthServer({ clients, logout: { backchannel_retry_delay_ms: 20, backchannel_timeout_ms: 1000 }, ...overrides } as Partial<AuthServerConfigInput>);
}

/** Signs in through `browser` (login and consent as needed) and redeems the code: the client's tokens. */
export async function signIn(as: TestAuthServer, browser: FormBrowser, clientId: string, scope = 'openid profile', user?: { username: string; password: string }) {
  const { verifier, challenge } = pkcePair();
  const url = new URL(`${as.issuer}/authorize`);
  url.search = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: CALLBACK, code_challenge: challenge, code_challenge_method: 'S256', scope, state: 's' }).toString();
  const back = await browser.authorize(url.href, user);
  const code = back.searchParams.get('code');
  assert.ok(code, `a code: ${back.href}`);
  const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: CALLBACK, client_id: clientId });
  assert.equal(token.status, 200, token.text);
  return token.json as { access_token: string; id_token: string; refresh_token?: string };
}

/** Whether the browser is still signed in: the account page answers it, or sends it to sign in. */
export async function signedIn(browser: FormBrowser): Promise<boolean> {
  const page = await browser.open('/account/security');
  return page.html.includes('id="account-username"');
}

/** The audit events of a type, oldest first, after the deliveries under way have finished. */
export async function auditOf(as: TestAuthServer, type: string): Promise<AuditEvent[]> {
  await logoutDeliveriesSettled(as.ctx);
  await as.ctx.audit.flush();
  return (await as.store.audit.list({ type, limit: 500 })).reverse();
}

export const claimsOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
export const headerOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;

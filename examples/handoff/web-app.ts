import { randomBytes, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import { html } from 'hono/html';
import { createRemoteJWKSet, jwtVerify } from 'jose';

/**
 * The handoff example's web app (docs/browser-sessions.md, "App-to-web session transfer"): a
 * plain OpenID Connect relying party, authorization code + PKCE with plain fetch. A visitor without
 * a session is sent to the authorization server with `prompt=none`: after a session transfer the
 * browser is already signed in there, so the user lands signed in, with no page on the way. When
 * the answer is `login_required`, the page offers an ordinary sign-in instead.
 *
 * @example
 * const app = await startHandoffWebApp({ issuer: 'http://localhost:9000', clientId: 'handoff-web', port: 8003 });
 * console.log(`${app.url}/app/`);
 */
export interface HandoffWebAppOptions {
  issuer: string;
  /** A public client of the authorization server, `first_party` so no consent page interrupts. */
  clientId: string;
  host?: string;
  port?: number;
  /** The URL the browser reaches the app at; defaults to http://<host>:<port>. */
  baseUrl?: string;
}

export interface HandoffWebApp {
  url: string;
  close(): Promise<void>;
}

interface Pending {
  verifier: string;
  nonce: string;
}

interface SignedIn {
  sub: string;
  name?: string;
  username?: string;
}

const b64url = (bytes: Buffer) => bytes.toString('base64url');

export async function startHandoffWebApp(options: HandoffWebAppOptions): Promise<HandoffWebApp> {
  const issuer = options.issuer.replace(/\/$/, '');
  const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { authorization_endpoint: string; token_endpoint: string; jwks_uri: string };
  const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
  // Short-lived and in memory: this is an example. A real app keeps them in its session store.
  const pending = new Map<string, Pending>();
  const sessions = new Map<string, SignedIn>();
  let base = options.baseUrl ?? '';
  const app = new Hono();

  const page = (c: Context, title: string, body: unknown, status: 200 | 400 = 200) =>
    c.html(html`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body><main><h1>${title}</h1>${body}</main></body></html>`, status);

  /** To the authorization server: silently (prompt=none) unless the user asked to sign in. */
  const signIn = (c: Context, silent: boolean) => {
    const state = b64url(randomBytes(16));
    const verifier = b64url(randomBytes(32));
    const nonce = b64url(randomBytes(16));
    pending.set(state, { verifier, nonce });
    setTimeout(() => pending.delete(state), 600_000).unref();
    setCookie(c, 'handoff_state', state, { path: '/app/', httpOnly: true, sameSite: 'Lax', maxAge: 600 });
    const url = new URL(discovery.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: options.clientId,
      redirect_uri: `${base}/app/callback`,
      scope: 'openid profile',
      state,
      nonce,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      ...(silent ? { prompt: 'none' } : {}),
    }).toString();
    return c.redirect(url.href, 303);
  };

  app.get('/app/', (c) => {
    const who = sessions.get(getCookie(c, 'handoff_session') ?? '');
    if (!who) return signIn(c, true);
    return page(c, 'Profile', html`<p id="signed-in">Signed in as <strong>${who.name ?? who.username ?? who.sub}</strong> (${who.username ?? ''}).</p><p class="muted">subject: <code>${who.sub}</code></p>`);
  });

  app.get('/app/login', (c) => signIn(c, false));

  app.get('/app/callback', async (c) => {
    const state = c.req.query('state');
    const expected = getCookie(c, 'handoff_state');
    const request = state && state === expected ? pending.get(state) : undefined;
    deleteCookie(c, 'handoff_state', { path: '/app/' });
    if (!request) return page(c, 'Sign-in failed', html`<p role="alert">This sign-in was not started here, or has expired.</p>`, 400);
    pending.delete(state!);
    const error = c.req.query('error');
    if (error) {
      // login_required after prompt=none: no session at the authorization server; offer a sign-in.
      return page(c, 'Not signed in', html`<p role="alert" id="error">${error}</p><p><a href="/app/login">Sign in</a></p>`, 400);
    }
    if (c.req.query('iss') !== issuer) return page(c, 'Sign-in failed', html`<p role="alert">Wrong issuer.</p>`, 400);
    const res = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: c.req.query('code') ?? '', redirect_uri: `${base}/app/callback`, client_id: options.clientId, code_verifier: request.verifier }),
    });
    const tokens = (await res.json()) as { id_token?: string; error?: string };
    if (!res.ok || !tokens.id_token) return page(c, 'Sign-in failed', html`<p role="alert">${tokens.error ?? 'no ID token'}</p>`, 400);
    const { payload } = await jwtVerify(tokens.id_token, jwks, { issuer, audience: options.clientId });
    if (payload.nonce !== request.nonce) return page(c, 'Sign-in failed', html`<p role="alert">Wrong nonce.</p>`, 400);
    const id = b64url(randomBytes(24));
    sessions.set(id, { sub: payload.sub!, name: payload.name as string | undefined, username: payload.preferred_username as string | undefined });
    setCookie(c, 'handoff_session', id, { path: '/app/', httpOnly: true, sameSite: 'Lax', secure: base.startsWith('https://') });
    return c.redirect('/app/', 303);
  });

  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: options.host ?? '127.0.0.1', port: options.port ?? 0 }, () => resolve(s as Server));
  });
  const { port } = server.address() as AddressInfo;
  base ||= `http://${options.host ?? '127.0.0.1'}:${port}`;
  return {
    url: base,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// Run directly: node --import tsx examples/handoff/web-app.ts [issuer] [client_id] [port]
if (import.meta.url === `file://${process.argv[1]}`) {
  const [issuer = 'http://localhost:9000', clientId = 'handoff-web', port = '8003'] = process.argv.slice(2);
  const app = await startHandoffWebApp({ issuer, clientId, host: 'localhost', port: Number(port), baseUrl: `http://localhost:${port}` });
  console.log(`handoff web app at ${app.url}/app/`);
}

import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { html, raw } from 'hono/html';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';

/**
 * The demo's plain web app behind the gateway (issue 15, seed 002 "Rapidly deploying PingGateway").
 * It has no sign-in code at all: the gateway signs people in and forwards every request with a
 * short-lived identity assertion (`X-Mandate-Identity`, an ES256 JWT). All the app does is verify
 * it against the gateway's JWKS — issuer, audience, `typ`, expiry — and show who is signed in.
 * Which pages a person may open is the gateway's decision (its CEL rules); the app trusts it.
 */
export interface WebApp {
  url: string;
  close(): Promise<void>;
}

export interface WebAppOptions {
  /** The gateway's public URL: the assertions' issuer; its JWKS is at /.well-known/mandate-gateway-jwks.json. */
  gateway: string;
  /** This app's own URL as the gateway's route names it (`identity.audience`, default the upstream URL). */
  audience: string;
  /** Where the gateway serves the app (the route path): its links point there. Default /app/. */
  basePath?: string;
  host?: string;
  port?: number;
}

const STYLE = `:root{color-scheme:light dark;font-family:system-ui,-apple-system,"Segoe UI",sans-serif;line-height:1.5;--bg:#f6f7fb;--card:#fff;--text:#1b1e24;--muted:#5b6270;--line:#dde1e7;--accent:#2f5bea}
@media (prefers-color-scheme:dark){:root{--bg:#0e1014;--card:#181b21;--text:#e7e9ed;--muted:#a0a7b3;--line:#2d323b;--accent:#7c9bff}}
body{margin:0;background:var(--bg);color:var(--text)}header{display:flex;justify-content:space-between;align-items:center;padding:.9rem 1.5rem;background:var(--card);border-bottom:1px solid var(--line)}
header strong{font-size:1.05rem}header nav{display:flex;gap:1.1rem}a{color:var(--accent)}main{max-width:44rem;margin:2rem auto;padding:0 1.5rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:1.4rem 1.6rem;margin-bottom:1.2rem}h1{font-size:1.4rem;margin:0 0 .6rem}
table{border-collapse:collapse;width:100%;font-size:.92rem}td{padding:.35rem .5rem;border-top:1px solid var(--line);vertical-align:top}td:first-child{color:var(--muted);width:11rem}code{font-size:.85rem}.muted{color:var(--muted)}`;

function layout(base: string, title: string, who: string, body: unknown) {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${title} · Example web app</title><style>${raw(STYLE)}</style></head>
<body><header><strong>Example web app</strong><nav><span>Signed in as <b>${who}</b></span><a href="${base}">Home</a><a href="${base}admin/">Admin area</a><a href="${base}logout">Sign out</a></nav></header>
<main>${body}</main></body></html>`;
}

export async function startWebApp(options: WebAppOptions): Promise<WebApp> {
  const gateway = options.gateway.replace(/\/$/, '');
  const base = options.basePath ?? '/app/';
  const jwks = createRemoteJWKSet(new URL(`${gateway}/.well-known/mandate-gateway-jwks.json`), { cooldownDuration: 5_000 });

  /** The person the gateway vouches for, or undefined (a request that did not come through it). */
  const identity = async (c: Context): Promise<JWTPayload | undefined> => {
    const assertion = c.req.header('x-mandate-identity');
    if (!assertion) return undefined;
    try {
      const { payload } = await jwtVerify(assertion, jwks, { issuer: gateway, audience: options.audience, typ: 'mandate-id+jwt', algorithms: ['ES256'], clockTolerance: 5 });
      return payload;
    } catch {
      return undefined;
    }
  };

  const app = new Hono<{ Variables: { who: JWTPayload } }>();
  app.use('*', async (c, next) => {
    const who = await identity(c);
    if (!who) return c.text('This app is reachable only through the Mandate gateway (no valid identity assertion).', 401);
    c.set('who', who);
    c.header('cache-control', 'no-store');
    await next();
  });
  const name = (who: JWTPayload) => String(who.name ?? who.preferred_username ?? who.sub);

  app.get('/', (c) => {
    const who = c.get('who');
    const rows = (['sub', 'preferred_username', 'name', 'email', 'acr', 'amr', 'auth_time'] as const)
      .filter((claim) => who[claim] !== undefined)
      .map((claim) => html`<tr><td>${claim}</td><td><code>${claim === 'auth_time' ? new Date(Number(who[claim]) * 1000).toISOString() : JSON.stringify(who[claim])}</code></td></tr>`);
    return c.html(
      layout(
        base,
        'Home',
        name(who),
        html`<div class="card"><h1>Signed in as ${name(who)}</h1>
<p>This app has no sign-in code of its own. The Mandate gateway signed you in at the authorization server and tells the app who you are with a signed identity assertion, which the app checks against the gateway's keys.</p></div>
<div class="card"><h1>What the gateway asserts</h1><table>${rows}</table>
<p class="muted">Assertion valid until ${new Date(Number(who.exp) * 1000).toISOString()} (one per request).</p></div>`,
      ),
    );
  });

  app.get('/admin/', (c) => {
    const who = c.get('who');
    return c.html(layout(base, 'Admin area', name(who), html`<div class="card"><h1>Admin area</h1><p>Only administrators see this page: the gateway's rule for <code>${base}admin/</code> let ${name(who)} in.</p></div>`));
  });

  app.notFound((c) => c.html(layout(base, 'Not found', name(c.get('who')), html`<div class="card"><h1>Not found</h1><p>No page at ${c.req.path}.</p></div>`), 404));

  const server = serve({ fetch: app.fetch, hostname: options.host ?? 'localhost', port: options.port ?? 8002 }) as Server;
  await new Promise<void>((resolve, reject) => {
    if (server.listening) resolve();
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${options.host ?? 'localhost'}:${address.port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

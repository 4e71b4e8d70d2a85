import { html, raw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';

/**
 * The few pages the gateway itself shows on a web route: refused (403), signed out, and a sign-in
 * that could not complete. Small and self-contained, with the look of the AS pages: no script, and
 * one inline style the Content-Security-Policy allows by its hash (nothing else loads).
 */
const STYLE = `:root{color-scheme:light dark;font-family:system-ui,-apple-system,"Segoe UI",sans-serif;line-height:1.45;--bg:#f3f4f7;--card:#fff;--text:#1b1e24;--muted:#5b6270;--line:#dde1e7;--primary:#2f5bea;--on-primary:#fff;--bad:#b42318}
@media (prefers-color-scheme:dark){:root{--bg:#0e1014;--card:#181b21;--text:#e7e9ed;--muted:#a0a7b3;--line:#2d323b;--primary:#7c9bff;--on-primary:#111;--bad:#ff8b80}}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:var(--bg);color:var(--text)}
main{width:min(28rem,92vw);box-sizing:border-box;padding:1.75rem 2rem 1.5rem;background:var(--card);border:1px solid var(--line);border-radius:12px;box-shadow:0 1px 3px rgb(0 0 0/.06)}
h1{font-size:1.3rem;margin:0 0 .75rem}p{margin:.5rem 0}.muted{color:var(--muted);font-size:.9rem}.code{color:var(--bad);font-weight:600}
a.button{display:inline-block;margin-top:1rem;padding:.55rem 1rem;border-radius:8px;background:var(--primary);color:var(--on-primary);text-decoration:none;font-weight:600}
nav{margin-top:.75rem;display:flex;gap:1rem;flex-wrap:wrap}nav a{color:var(--primary)}`;

let styleHash: Promise<string> | undefined;
async function cspStyleHash(): Promise<string> {
  styleHash ??= crypto.subtle.digest('SHA-256', new TextEncoder().encode(STYLE)).then((d) => `'sha256-${btoa(String.fromCharCode(...new Uint8Array(d)))}'`);
  return styleHash;
}

export interface GatewayPage {
  status: number;
  body: string;
  headers: Record<string, string>;
}

async function page(status: number, title: string, content: HtmlEscapedString | Promise<HtmlEscapedString>): Promise<GatewayPage> {
  const body = await html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title><style>${raw(STYLE)}</style></head>
<body><main>${content}</main></body></html>`;
  return {
    status,
    body: String(body),
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': `default-src 'none'; style-src ${await cspStyleHash()}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'`,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    },
  };
}

/** 403: a rule refused the request; the reason is the configured one (never the rule itself). */
export function forbiddenPage(options: { who: string; path: string; reason?: string; home: string; logout: string }): Promise<GatewayPage> {
  return page(
    403,
    'Access denied',
    html`<h1>Access denied</h1>
<p>You are signed in as <strong>${options.who}</strong>, but you may not open <code>${options.path}</code>.</p>
${options.reason ? html`<p class="code">${options.reason}</p>` : ''}
<p class="muted">If you think you should have access, ask your administrator. Error 403.</p>
<nav><a href="${options.home}">Back to the start page</a><a href="${options.logout}">Sign out</a></nav>`,
  );
}

export function signedOutPage(options: { signIn: string }): Promise<GatewayPage> {
  return page(
    200,
    'Signed out',
    html`<h1>You are signed out</h1>
<p>Your session at this app has ended.</p>
<a class="button" href="${options.signIn}">Sign in again</a>`,
  );
}

/** A sign-in that could not complete (denied, expired, replayed…); the detail is in the audit log. */
export function signInFailedPage(options: { status: number; message: string; retry: string; title?: string }): Promise<GatewayPage> {
  const title = options.title ?? 'Sign-in did not complete';
  return page(
    options.status,
    title,
    html`<h1>${title}</h1>
<p>${options.message}</p>
<a class="button" href="${options.retry}">Try again</a>`,
  );
}

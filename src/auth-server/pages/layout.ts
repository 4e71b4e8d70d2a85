import type { Context } from 'hono';
import { html, raw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { randomToken } from '../../core/encoding.ts';

type Markup = HtmlEscapedString | Promise<HtmlEscapedString>;

/** Inline, nonce-protected styles: the pages load nothing from anywhere. */
const STYLE = `
  :root { color-scheme: light dark; font-family: system-ui, sans-serif; }
  body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: Canvas; color: CanvasText; }
  main { width: min(26rem, 92vw); padding: 2rem; border: 1px solid GrayText; border-radius: 0.75rem; }
  h1 { font-size: 1.35rem; margin: 0 0 1rem; }
  label { display: block; margin: 0.9rem 0 0.3rem; font-weight: 600; }
  input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: 0.55rem; font-size: 1rem; }
  button { margin-top: 1.2rem; padding: 0.6rem 1.2rem; font-size: 1rem; cursor: pointer; }
  .row { display: flex; gap: 0.75rem; }
  .error { color: #b00020; font-weight: 600; }
  .muted { color: GrayText; font-size: 0.9rem; overflow-wrap: anywhere; }
  ul { padding-left: 1.2rem; }
  :focus-visible { outline: 3px solid Highlight; outline-offset: 2px; }
`;

/**
 * Renders a full page with the security headers every interaction page carries: a CSP that allows
 * only this page's own inline style, no framing (clickjacking), no caching, no referrer.
 */
export function renderPage(c: Context, title: string, body: Markup, status: 200 | 400 | 401 | 403 | 404 = 200) {
  const nonce = randomToken(16);
  c.header('Content-Security-Policy', `default-src 'none'; style-src 'nonce-${nonce}'; frame-ancestors 'none'; base-uri 'none'`);
  c.header('X-Frame-Options', 'DENY');
  c.header('Cache-Control', 'no-store');
  c.header('Referrer-Policy', 'no-referrer');
  c.header('X-Content-Type-Options', 'nosniff');
  return c.html(
    html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Mandate</title>
<style nonce="${nonce}">${raw(STYLE)}</style>
</head>
<body><main>${body}</main></body>
</html>`,
    status,
  );
}

/** The form of a yes-or-no page (consent, agreement): its CSRF token and two `decision` buttons. */
export function decisionForm(action: string, csrf: string, choices: readonly [value: string, label: string][]) {
  return html`<form method="post" action="${action}">
  <input type="hidden" name="csrf" value="${csrf}">
  <div class="row">
    ${choices.map(([value, label]) => html`<button type="submit" name="decision" value="${value}">${label}</button>`)}
  </div>
</form>`;
}

export function errorPage(c: Context, code: string, description: string, status: 400 | 401 | 403 | 404 = 400) {
  return renderPage(
    c,
    'Request refused',
    html`<h1>This request cannot continue</h1>
<p class="error" role="alert">${description}</p>
<p class="muted">Error code: <code id="error-code">${code}</code></p>
<p>Return to the application and try again.</p>`,
    status,
  );
}

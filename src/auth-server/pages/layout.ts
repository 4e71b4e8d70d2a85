import type { Context } from 'hono';
import { html, raw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { randomToken } from '../../core/encoding.ts';
import type { BrandingConfig } from '../../config/schema.ts';
import { english, type Strings } from './strings.ts';

type Body = HtmlEscapedString | Promise<HtmlEscapedString>;

/** What every page needs from the configuration: the product's look and the words to use. */
export interface PageLook {
  productName: string;
  logoUrl?: string;
  supportUrl?: string;
  /** The CSP `img-src` source of the logo: `data:`, its https origin, or nothing. */
  imgSrc?: string;
  /** CSS custom properties of the brand colours (validated hex colours only). */
  colors: string;
  text: Strings;
}

/** The text colour that reads on a background of this hex colour (WCAG relative luminance). */
function onColor(hex: string): string {
  const full = hex.length === 4 ? hex.replace(/[0-9a-f]/gi, (d) => d + d) : hex;
  const [r, g, b] = [1, 3, 5].map((i) => {
    const v = Number.parseInt(full.slice(i, i + 2), 16) / 255;
    return v <= 0.039_28 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  }) as [number, number, number];
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  // Whichever of white and near-black has the higher contrast ratio ((L1 + 0.05) / (L2 + 0.05)).
  return 1.05 / (luminance + 0.05) >= (luminance + 0.05) / 0.0556 ? '#ffffff' : '#111111';
}

/** Built once per server from `branding` (already validated by the config schema). */
export function pageLook(branding: BrandingConfig, text: Strings = english): PageLook {
  const dark = branding.primary_color_dark ?? branding.primary_color;
  const logo = branding.logo_url;
  return {
    productName: branding.product_name,
    logoUrl: logo,
    supportUrl: branding.support_url,
    imgSrc: logo === undefined ? undefined : logo.startsWith('data:') ? 'data:' : new URL(logo).origin,
    colors:
      `:root { --primary: ${branding.primary_color}; --on-primary: ${onColor(branding.primary_color)}; }\n` +
      `@media (prefers-color-scheme: dark) { :root { --primary: ${dark}; --on-primary: ${onColor(dark)}; } }`,
    text,
  };
}

/** Inline, nonce-protected styles: the pages load nothing from anywhere (but a configured https logo). */
export const STYLE = `
  :root { color-scheme: light dark; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 1.45;
    --bg: #f3f4f7; --card: #ffffff; --text: #1b1e24; --muted: #5b6270; --line: #dde1e7; --soft: #f6f7f9;
    --ok: #17773a; --ok-bg: #e6f4ea; --warn: #8a4a00; --warn-bg: #fff3e0; --warn-line: #e8a33d; --bad: #b42318; }
  @media (prefers-color-scheme: dark) { :root {
    --bg: #0e1014; --card: #181b21; --text: #e7e9ed; --muted: #a0a7b3; --line: #2d323b; --soft: #1f232a;
    --ok: #5cc97c; --ok-bg: #15301f; --warn: #f5c06f; --warn-bg: #30230f; --warn-line: #a8741f; --bad: #ff8b80; } }
  body { margin: 0; min-height: 100vh; display: flex; flex-direction: column; align-items: center; justify-content: center;
    background: var(--bg); color: var(--text); }
  main { width: min(28rem, 92vw); box-sizing: border-box; padding: 1.75rem 2rem 1.5rem; margin: 1.5rem 0; background: var(--card);
    border: 1px solid var(--line); border-radius: 14px; box-shadow: 0 6px 24px rgb(0 0 0 / 0.07); }
  .brand { display: flex; align-items: center; gap: 0.6rem; margin-bottom: 1.25rem; font-weight: 650; font-size: 1.05rem; }
  .brand img { height: 28px; max-width: 120px; object-fit: contain; }
  .mark { width: 28px; height: 28px; border-radius: 8px; background: var(--primary); color: var(--on-primary);
    display: grid; place-items: center; font-weight: 700; }
  h1 { font-size: 1.35rem; line-height: 1.3; margin: 0 0 0.75rem; overflow-wrap: anywhere; }
  p { margin: 0.6rem 0; }
  a { color: var(--primary); }
  label, .field-name { display: block; margin: 0.9rem 0 0.3rem; font-weight: 600; }
  input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: 0.6rem 0.7rem; font-size: 1rem;
    border: 1px solid var(--line); border-radius: 8px; background: var(--soft); color: var(--text); }
  .actions { display: flex; gap: 0.75rem; justify-content: flex-end; margin-top: 1.4rem; }
  button { padding: 0.65rem 1.3rem; font-size: 1rem; font-weight: 600; border-radius: 8px; cursor: pointer; border: 1px solid transparent; }
  .primary { background: var(--primary); color: var(--on-primary); }
  .primary:hover { filter: brightness(1.08); }
  .secondary { background: transparent; color: var(--text); border-color: var(--line); }
  .secondary:hover { background: var(--soft); }
  .actions > .primary:only-child { flex: 1; }
  .error { color: var(--bad); font-weight: 600; }
  .muted { color: var(--muted); font-size: 0.88rem; overflow-wrap: anywhere; }
  .badge { display: inline-block; padding: 0.05rem 0.5rem; margin-left: 0.3rem; border-radius: 99px; font-size: 0.75rem;
    font-weight: 650; vertical-align: 0.15em; letter-spacing: 0.02em; }
  .verified { background: var(--ok-bg); color: var(--ok); }
  .unverified, .risk { background: var(--warn-bg); color: var(--warn); }
  .agent { background: var(--soft); color: var(--text); border: 1px solid var(--line); }
  .note { padding: 0.6rem 0.75rem; border-radius: 8px; background: var(--soft); font-size: 0.9rem; }
  .note.warn { background: var(--warn-bg); color: var(--warn); }
  dl { display: grid; grid-template-columns: auto 1fr; gap: 0.35rem 0.9rem; margin: 0.9rem 0; }
  dt { color: var(--muted); font-size: 0.88rem; } dd { margin: 0; overflow-wrap: anywhere; }
  h2 { font-size: 0.95rem; margin: 1.1rem 0 0.4rem; }
  ul.scopes { list-style: none; padding: 0; margin: 0; border: 1px solid var(--line); border-radius: 10px; }
  ul.scopes li { padding: 0.55rem 0.75rem; border-top: 1px solid var(--line); }
  ul.scopes li:first-child { border-top: 0; }
  ul.scopes li.high { background: var(--warn-bg); border-left: 4px solid var(--warn-line); }
  ul.scopes code, dd code { display: block; font-size: 0.8rem; color: var(--muted); }
  ul.scopes label { display: flex; gap: 0.45rem; align-items: center; margin: 0.4rem 0 0; font-weight: 600; }
  label.check { display: flex; gap: 0.5rem; align-items: center; margin: 1rem 0 0; font-weight: 500; }
  label.check input { width: 1.1rem; height: 1.1rem; margin: 0; accent-color: var(--primary); }
  ul.remembered { list-style: none; padding: 0; margin: 0; } ul.remembered li { display: flex; justify-content: space-between; align-items: center; gap: 0.75rem; padding: 0.5rem 0; border-top: 1px solid var(--line); }
  ul.remembered li:first-child { border-top: 0; } ul.remembered form { margin: 0; } ul.remembered button { padding: 0.35rem 0.8rem; font-size: 0.9rem; }
  .summary { margin-top: 1rem; }
  .agreement { padding: 0.75rem 0.9rem; border: 1px solid var(--line); border-radius: 10px;
    background: var(--soft); white-space: pre-wrap; }
  .code-input { font-family: ui-monospace, monospace; letter-spacing: 0.15em; text-transform: uppercase; }
  table.args { width: 100%; border-collapse: separate; border-spacing: 0; border: 1px solid var(--line); border-radius: 10px; font-size: 0.92rem; }
  table.args th, table.args td { text-align: left; vertical-align: top; padding: 0.45rem 0.75rem; border-top: 1px solid var(--line); overflow-wrap: anywhere; }
  table.args tr:first-child th, table.args tr:first-child td { border-top: 0; }
  table.args th { width: 35%; color: var(--muted); font-weight: 600; }
  .action { font-size: 1.1rem; font-weight: 650; padding: 0.7rem 0.9rem; border-radius: 10px; background: var(--warn-bg);
    border-left: 4px solid var(--warn-line); overflow-wrap: anywhere; }
  .secret { font-family: ui-monospace, monospace; font-size: 1.05rem; word-spacing: 0.35em; padding: 0.6rem 0.75rem;
    border: 1px solid var(--line); border-radius: 8px; background: var(--soft); overflow-wrap: anywhere; }
  .notice { color: var(--ok); font-weight: 600; }
  .qr { width: 180px; margin: 0.9rem auto 0.3rem; } .qr svg { display: block; width: 100%; height: auto; border-radius: 6px; }
  footer { width: min(28rem, 92vw); display: flex; justify-content: center; gap: 1rem; margin-bottom: 1.5rem; }
  :focus-visible { outline: 3px solid var(--primary); outline-offset: 2px; }
`;

/**
 * Renders a full page with the security headers every interaction page carries: a CSP that allows
 * only this page's own inline style (and the configured logo), no script, no framing
 * (clickjacking), no caching, no referrer.
 */
export function renderPage(c: Context, look: PageLook, title: string, body: Body, status: 200 | 400 | 401 | 403 | 404 = 200) {
  const nonce = randomToken(16);
  const img = look.imgSrc ? `; img-src ${look.imgSrc}` : '';
  c.header('Content-Security-Policy', `default-src 'none'; style-src 'nonce-${nonce}'${img}; frame-ancestors 'none'; base-uri 'none'`);
  c.header('X-Frame-Options', 'DENY');
  c.header('Cache-Control', 'no-store');
  c.header('Referrer-Policy', 'no-referrer');
  c.header('X-Content-Type-Options', 'nosniff');
  return c.html(
    html`<!doctype html>
<html lang="${look.text.lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · ${look.productName}</title>
<style nonce="${nonce}">${raw(STYLE)}${raw(look.colors)}</style>
</head>
<body><main>
<div class="brand" id="brand">${look.logoUrl ? html`<img src="${look.logoUrl}" alt="">` : html`<span class="mark" aria-hidden="true">${[...look.productName][0]}</span>`}<span id="product-name">${look.productName}</span></div>
${body}
</main>
${look.supportUrl ? html`<footer><a id="support-link" href="${look.supportUrl}" rel="noopener noreferrer">${look.text.help}</a></footer>` : ''}
</body>
</html>`,
    status,
  );
}

/**
 * The form of a yes-or-no page (consent, agreement): its CSRF token, any extra fields, then the
 * secondary "no" and the primary "yes" `decision` buttons. "No" comes first in the markup, so the
 * Enter key (the form's default button) never says yes.
 */
export function decisionForm(action: string, csrf: string, choices: { no: [value: string, label: string]; yes: [value: string, label: string] }, fields: Body | '' = '') {
  return html`<form method="post" action="${action}">
  <input type="hidden" name="csrf" value="${csrf}">
  ${fields}
  <div class="actions">
    <button type="submit" class="secondary" name="decision" value="${choices.no[0]}">${choices.no[1]}</button>
    <button type="submit" class="primary" name="decision" value="${choices.yes[0]}">${choices.yes[1]}</button>
  </div>
</form>`;
}

export function errorPage(c: Context, look: PageLook, code: string, description: string, status: 400 | 401 | 403 | 404 = 400) {
  const t = look.text.error;
  return renderPage(
    c,
    look,
    t.title,
    html`<h1>${t.heading}</h1>
<p class="error" role="alert">${description}</p>
<p class="muted">${t.code}: <code id="error-code">${code}</code></p>
<p>${t.retry}</p>`,
    status,
  );
}

import type { Context } from 'hono';
import { html, raw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { randomToken } from '../../core/encoding.ts';
import { STYLE, type PageLook } from '../pages/layout.ts';

export type Body = HtmlEscapedString | Promise<HtmlEscapedString>;
export type Status = 200 | 400 | 403 | 404 | 409 | 412 | 500;

/** The console's pages: the interaction pages' look (STYLE), on a wider sheet with a menu and tables. */
const CONSOLE_STYLE = `
  body { display: block; }
  header.bar { display: flex; align-items: center; gap: 1.25rem; padding: 0.6rem 1.25rem; background: var(--card);
    border-bottom: 1px solid var(--line); flex-wrap: wrap; }
  header.bar .brand { margin: 0; }
  nav.menu { display: flex; gap: 0.2rem; flex-wrap: wrap; flex: 1; }
  nav.menu a { padding: 0.35rem 0.7rem; border-radius: 8px; color: var(--text); text-decoration: none; font-weight: 550; }
  nav.menu a:hover { background: var(--soft); }
  nav.menu a[aria-current=page] { background: var(--primary); color: var(--on-primary); }
  .who { display: flex; gap: 0.6rem; align-items: center; font-size: 0.9rem; color: var(--muted); }
  .who form { margin: 0; }
  .who button { padding: 0.35rem 0.8rem; font-size: 0.88rem; }
  main.wide { width: min(76rem, 96vw); margin: 1.25rem auto; }
  main.narrow { margin: 12vh auto 0; }
  table { width: 100%; border-collapse: collapse; font-size: 0.9rem; margin: 0.6rem 0 1rem; }
  th, td { text-align: left; padding: 0.45rem 0.55rem; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
  th { color: var(--muted); font-weight: 600; font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.03em; }
  tr:hover td { background: var(--soft); }
  code, .mono { font-family: ui-monospace, monospace; font-size: 0.85em; }
  .on { background: var(--ok-bg); color: var(--ok); }
  .off { background: var(--warn-bg); color: var(--warn); }
  .fail { color: var(--bad); font-weight: 600; }
  .denied { background: var(--warn-bg); color: var(--bad); }
  th.nowrap, td.nowrap { white-space: nowrap; overflow-wrap: normal; }
  .row { display: flex; gap: 0.75rem; flex-wrap: wrap; align-items: end; }
  .row > label, .row > div { margin: 0; }
  .row label { font-size: 0.8rem; margin: 0 0 0.2rem; }
  form.inline { display: inline; }
  input[type=text], input[type=datetime-local], select, textarea { box-sizing: border-box; padding: 0.45rem 0.55rem; font-size: 0.92rem;
    border: 1px solid var(--line); border-radius: 8px; background: var(--soft); color: var(--text); }
  textarea { width: 100%; font-family: ui-monospace, monospace; font-size: 0.85rem; }
  button.small { padding: 0.35rem 0.8rem; font-size: 0.88rem; }
  .danger { background: var(--bad); color: var(--card); }
  .panel { border: 1px solid var(--line); border-radius: 10px; padding: 0.8rem 1rem; margin: 0.8rem 0; background: var(--card); }
  .flash { padding: 0.55rem 0.8rem; border-radius: 8px; background: var(--ok-bg); color: var(--ok); font-weight: 600; }
  .flash.error { background: var(--warn-bg); color: var(--bad); }
  .chain { display: flex; align-items: center; flex-wrap: wrap; gap: 0; margin: 0.15rem 0; padding: 0; list-style: none; }
  .chain li.node { border: 1.5px solid var(--line); border-radius: 8px; padding: 0.2rem 0.55rem; background: var(--soft);
    font-size: 0.82rem; line-height: 1.25; max-width: 16rem; overflow-wrap: anywhere; }
  .chain li.node small { display: block; color: var(--muted); font-size: 0.68rem; text-transform: uppercase; letter-spacing: 0.04em; }
  .chain li.node.user { border-color: var(--primary); }
  .chain li.node.agent { border-color: var(--warn-line); }
  .chain li.node.resource { border-style: dashed; }
  .chain li.arrow { width: 1.6rem; height: 2px; background: var(--muted); position: relative; margin: 0 0.25rem 0 0.1rem; }
  .chain li.arrow::after { content: ""; position: absolute; right: -6px; top: -4px; border: 5px solid transparent; border-left: 7px solid var(--muted); border-right: 0; }
  meter { width: 10rem; height: 0.9rem; vertical-align: middle; margin-right: 0.4rem; }
  .pager { display: flex; justify-content: flex-end; gap: 1rem; }
`;

/** One navigation entry per area: href, label. */
export const MENU: [string, string][] = [
  ['agents', 'Agents'],
  ['audit', 'Audit'],
  ['approvals', 'Approvals'],
  ['tool-pins', 'Tool pins'],
  ['usage', 'Usage'],
  ['users', 'Users'],
  ['clients', 'Clients'],
  ['resources', 'Resources'],
  ['agreements', 'Agreements'],
  ['keys', 'Keys'],
];

/** The security headers of every console page: no script, no framing, no caching, forms to here only. */
function secure(c: Context, look: PageLook): string {
  const nonce = randomToken(16);
  const img = look.imgSrc ? `; img-src ${look.imgSrc}` : '';
  c.header('Content-Security-Policy', `default-src 'none'; style-src 'nonce-${nonce}'${img}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`);
  c.header('X-Frame-Options', 'DENY');
  c.header('Cache-Control', 'no-store');
  c.header('Referrer-Policy', 'no-referrer');
  c.header('X-Content-Type-Options', 'nosniff');
  return nonce;
}

const brand = (look: PageLook) =>
  html`<div class="brand" id="brand">${look.logoUrl ? html`<img src="${look.logoUrl}" alt="">` : html`<span class="mark" aria-hidden="true">${[...look.productName][0]}</span>`}<span id="product-name">${look.productName}</span> <span class="muted">console</span></div>`;

const head = (look: PageLook, title: string, nonce: string) => html`<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · ${look.productName} console</title>
<style nonce="${nonce}">${raw(STYLE)}${raw(CONSOLE_STYLE)}${raw(look.colors)}</style>
</head>`;

/** A page of the signed-in console: menu, who is signed in, sign-out (a CSRF-protected POST). */
export function consolePage(
  c: Context,
  look: PageLook,
  view: { title: string; area: string; username: string; csrf: string; body: Body; status?: Status },
) {
  const nonce = secure(c, look);
  return c.html(
    html`<!doctype html>
<html lang="${look.text.lang}">
${head(look, view.title, nonce)}
<body>
<header class="bar">
${brand(look)}
<nav class="menu" aria-label="Console">${MENU.map(([href, label]) => html`<a href="/console/${href}"${href === view.area ? raw(' aria-current="page"') : ''}>${label}</a>`)}</nav>
<div class="who"><span>Signed in as <strong id="admin-name">${view.username}</strong></span>
<form method="post" action="/console/logout"><input type="hidden" name="csrf" value="${view.csrf}"><button type="submit" class="secondary">Sign out</button></form></div>
</header>
<main class="wide">
<h1>${view.title}</h1>
${view.body}
</main>
</body>
</html>`,
    view.status ?? 200,
  );
}

/** A page outside a session: the sign-in invitation, the not-an-administrator page, errors. */
export function plainPage(c: Context, look: PageLook, title: string, body: Body, status: Status = 200) {
  const nonce = secure(c, look);
  return c.html(
    html`<!doctype html>
<html lang="${look.text.lang}">
${head(look, title, nonce)}
<body><main class="narrow">
${brand(look)}
<h1>${title}</h1>
${body}
</main></body>
</html>`,
    status,
  );
}

/** The form fields a POST needs: the session's CSRF token. */
export const csrfField = (csrf: string) => html`<input type="hidden" name="csrf" value="${csrf}">`;

/** Epoch seconds as a UTC time a person reads. */
export const when = (seconds: number | null | undefined) => (seconds === null || seconds === undefined ? '—' : new Date(seconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'));

export const state = (enabled: boolean) => (enabled ? html`<span class="badge on">enabled</span>` : html`<span class="badge off">disabled</span>`);

import type { Context } from 'hono';
import { html } from 'hono/html';
import { renderPage } from './layout.ts';

/** A consent agreement (seed 001): its text, its version, and a plain accept or decline. */
export function agreementPage(c: Context, view: { action: string; csrf: string; name: string; version: number; text: string; clientName: string }) {
  return renderPage(
    c,
    view.name,
    html`<h1 id="agreement-name">${view.name}</h1>
<p class="muted">Version ${view.version} · requested by <strong>${view.clientName}</strong></p>
<blockquote id="agreement-text">${view.text}</blockquote>
<form method="post" action="${view.action}">
  <input type="hidden" name="csrf" value="${view.csrf}">
  <div class="row">
    <button type="submit" name="decision" value="accept">Accept</button>
    <button type="submit" name="decision" value="decline">Decline</button>
  </div>
</form>`,
  );
}

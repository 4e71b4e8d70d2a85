import type { Context } from 'hono';
import { html } from 'hono/html';
import { decisionForm, renderPage } from './layout.ts';

/** A consent agreement (seed 001): its text, its version, and a plain accept or decline. */
export function agreementPage(c: Context, view: { action: string; csrf: string; name: string; version: number; text: string; clientName: string }) {
  return renderPage(
    c,
    view.name,
    html`<h1 id="agreement-name">${view.name}</h1>
<p class="muted">Version ${view.version} · requested by <strong>${view.clientName}</strong></p>
<blockquote id="agreement-text">${view.text}</blockquote>
${decisionForm(view.action, view.csrf, [
  ['accept', 'Accept'],
  ['decline', 'Decline'],
])}`,
  );
}

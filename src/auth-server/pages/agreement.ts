import type { Context } from 'hono';
import { html } from 'hono/html';
import { decisionForm, renderPage, type PageLook } from './layout.ts';
import { clientLabel, type ClientView } from './parts.ts';

/**
 * A consent agreement (seed 001): its full text (line breaks kept), its version, and a plain
 * accept or decline.
 */
export function agreementPage(c: Context, look: PageLook, view: { action: string; csrf: string; name: string; version: number; text: string; client: ClientView }) {
  const t = look.text.agreement;
  return renderPage(
    c,
    look,
    view.name,
    html`<h1 id="agreement-name">${view.name}</h1>
<p class="muted"><span id="agreement-version">${t.version(view.version)}</span> · ${t.requestedBy(clientLabel(look, view.client))}</p>
<div class="agreement" id="agreement-text" tabindex="0">${view.text.trim()}</div>
${decisionForm(view.action, view.csrf, { no: ['decline', t.decline], yes: ['accept', t.accept] })}`,
  );
}

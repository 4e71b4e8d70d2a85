import type { Context } from 'hono';
import { html } from 'hono/html';
import { decisionForm, renderPage } from './layout.ts';

export interface ConsentView {
  action: string;
  csrf: string;
  clientName: string;
  clientId: string;
  username: string;
  resource: { id: string; name: string };
  scopes: { name: string; description?: string }[];
  /** Who may act for the user with the token (RFC 8693 may_act), when someone may. */
  delegate?: { name: string; clientId: string; isAgent: boolean };
}

/** Says plainly who will act, where, and with which permissions, then asks. */
export function consentPage(c: Context, view: ConsentView) {
  return renderPage(
    c,
    'Allow access',
    html`<h1>Allow <span id="client-name">${view.clientName}</span> to act for you?</h1>
<p class="muted">Client: <code>${view.clientId}</code></p>
<p>Signed in as <strong>${view.username}</strong>. The application will act for you at
<strong id="resource-name">${view.resource.name}</strong> <span class="muted">(<code>${view.resource.id}</code>)</span> with these permissions:</p>
<ul id="scopes">
${view.scopes.map((s) => html`<li><code>${s.name}</code>${s.description ? html` — ${s.description}` : ''}</li>`)}
</ul>
${view.scopes.length === 0 ? html`<p class="muted">No specific permissions: it can only confirm who you are.</p>` : ''}
${
  view.delegate
    ? html`<p id="delegate"><strong>${view.delegate.name}</strong>${view.delegate.isAgent ? ' (an AI agent)' : ''} <span class="muted">(<code>${view.delegate.clientId}</code>)</span> will be allowed to act on your behalf with these permissions, and to pass them on, narrowed, to the services it calls.</p>`
    : ''
}
${decisionForm(view.action, view.csrf, [
  ['allow', 'Allow'],
  ['deny', 'Deny'],
])}`,
  );
}

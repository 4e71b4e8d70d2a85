import type { Context } from 'hono';
import { html } from 'hono/html';
import { decisionForm, renderPage, type PageLook } from './layout.ts';

export interface LogoutConfirmView {
  username: string;
  /** The client that sent the browser here, when it said who it is. */
  clientName?: string;
  action: string;
  csrf: string;
  /** The pending request this page answers (single use, bound to the session). */
  request: string;
}

/**
 * "Sign out of <product>?": asked when /logout cannot tell that the signed-in user's own client
 * asked (no ID token hint for this session), so that a link on another site cannot sign anyone
 * out. "Stay signed in" comes first in the markup: Enter never signs out.
 */
export function logoutConfirmPage(c: Context, look: PageLook, view: LogoutConfirmView) {
  const t = look.text.logout;
  return renderPage(
    c,
    look,
    t.title,
    html`<h1 id="logout-heading">${t.heading(look.productName)}</h1>
<p id="logout-user">${t.signedInAs(html`<strong>${view.username}</strong>`)}</p>
${view.clientName ? html`<p class="muted" id="logout-client">${t.requestedBy(html`<strong>${view.clientName}</strong>`)}</p>` : ''}
<p class="muted">${t.intro}</p>
${decisionForm(view.action, view.csrf, { no: ['stay', t.stay], yes: ['logout', t.signOut] }, html`<input type="hidden" name="logout_request" value="${view.request}">`)}`,
  );
}

/** The end of a sign-out that has no client to return to (or a "stay signed in"). */
export function loggedOutPage(c: Context, look: PageLook, stayed = false) {
  const t = look.text.logout;
  return renderPage(
    c,
    look,
    stayed ? t.stayedTitle : t.doneTitle,
    stayed
      ? html`<h1 id="logout-done">${t.stayedTitle}</h1>
<p>${t.stayedText}</p>`
      : html`<h1 id="logout-done">${t.doneHeading(look.productName)}</h1>
<p>${t.doneText}</p>`,
  );
}

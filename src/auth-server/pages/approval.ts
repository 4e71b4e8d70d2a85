import type { Context } from 'hono';
import { html } from 'hono/html';
import { renderPage, type PageLook } from './layout.ts';
import type { ClientView } from './parts.ts';

/** Everything the approval page shows of one pending transaction. */
export interface ApprovalView {
  action: string;
  csrf: string;
  username: string;
  summary: string;
  tool: string;
  resource: { id: string; name: string };
  /** Who asks: the token's client, then the actors it acts for (most recent first). */
  parties: ClientView[];
  /** The bound arguments, as sent by the gateway. */
  details?: Record<string, unknown>;
  secondsLeft: number;
  /** The fresh authentication asked: the password, or the one-time code of an enrolled user. */
  factor: 'password' | 'totp';
  error?: string;
}

/** A party as the chain sentence names it: its name (quoted when self-chosen) and its id. */
const party = (p: ClientView, i?: number) => {
  const name = i === undefined ? html`<bdi>${p.name}</bdi>` : html`<bdi id="party-${i}">${p.name}</bdi>`;
  return p.verified ? html`<strong>${name}</strong> (<bdi>${p.id}</bdi>)` : html`<strong>“${name}”</strong> (<bdi>${p.id}</bdi>)`;
};

/** A bound argument as text: strings as they are, anything else as JSON. */
const shown = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

/**
 * Asks the signed-in user to approve exactly one action: who asks and for whom, what (the
 * summary, the tool, where, the bound arguments), for how long; a fresh authentication; Deny
 * first in the markup, so Enter never approves, and sendable without the password.
 */
export function approvalPage(c: Context, look: PageLook, view: ApprovalView) {
  const t = look.text.approval;
  const entries = Object.entries(view.details ?? {});
  const factor =
    view.factor === 'totp'
      ? html`<label for="code">${t.code}</label>
  <input id="code" name="code" type="text" inputmode="numeric" pattern="[0-9]{6}" maxlength="6" autocomplete="one-time-code" class="code-input" required autofocus aria-describedby="factor-hint">`
      : html`<label for="password">${t.password}</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required autofocus aria-describedby="factor-hint">`;
  return renderPage(
    c,
    look,
    t.title,
    html`<h1>${t.heading}</h1>
<p class="note" id="chain">${t.asks(view.parties.map(party))}</p>
<p class="action" id="summary"><bdi>${view.summary}</bdi></p>
<dl>
  <dt>${t.tool}</dt>
  <dd><bdi id="tool">${view.tool}</bdi></dd>
  <dt>${t.where}</dt>
  <dd><strong id="resource-name">${view.resource.name}</strong><code>${view.resource.id}</code></dd>
  <dt>${t.timeLeft}</dt>
  <dd id="time-left">${t.duration(view.secondsLeft)}</dd>
</dl>
${
  entries.length > 0
    ? html`<h2>${t.details}</h2>
<table class="args" id="details">
${entries.map(([name, value]) => html`<tr><th scope="row"><bdi>${name}</bdi></th><td><bdi>${shown(value)}</bdi></td></tr>`)}
</table>`
    : ''
}
<p class="muted" id="signed-in-as">${look.text.consent.signedInAs(html`<strong>${view.username}</strong>`)}</p>
${view.error ? html`<p class="error" role="alert" id="approval-error">${view.error}</p>` : ''}
<form method="post" action="${view.action}">
  <input type="hidden" name="csrf" value="${view.csrf}">
  ${factor}
  <p class="muted" id="factor-hint">${view.factor === 'totp' ? t.codeHint : t.passwordHint}</p>
  <div class="actions">
    <button type="submit" class="secondary" name="decision" value="deny" formnovalidate>${t.deny}</button>
    <button type="submit" class="primary" name="decision" value="approve">${t.approve}</button>
  </div>
</form>`,
    view.error ? 401 : 200,
  );
}

/** Where a transaction ended up, or why this browser cannot see it. */
export type ApprovalOutcome = 'approved' | 'denied' | 'used' | 'expired' | 'not_found' | 'other_account';

export function approvalOutcomePage(c: Context, look: PageLook, outcome: ApprovalOutcome, username?: string) {
  const t = look.text.approval;
  const [title, text, status]: [string, ReturnType<typeof t.otherAccountText>, 200 | 403 | 404] = {
    approved: [t.approvedTitle, t.approvedText, 200],
    denied: [t.deniedTitle, t.deniedText, 200],
    used: [t.usedTitle, t.usedText, 200],
    expired: [t.expiredTitle, t.expiredText, 200],
    not_found: [t.notFoundTitle, t.notFoundText, 404],
    other_account: [t.otherAccountTitle, t.otherAccountText(html`<strong>${username ?? ''}</strong>`), 403],
  }[outcome] as [string, ReturnType<typeof t.otherAccountText>, 200 | 403 | 404];
  return renderPage(
    c,
    look,
    title,
    html`<h1>${title}</h1>
<p id="approval-outcome" data-outcome="${outcome}"${status === 200 ? '' : html` class="error" role="alert"`}>${text}</p>
<p><a href="/approvals" id="pending-link">${t.pendingLink}</a></p>`,
    status,
  );
}

/** Sign-in before a request is shown: nothing of it is revealed to a browser that is not signed in. */
export function approvalSignInPage(c: Context, look: PageLook, options: { csrf: string; next: string; error?: string; username?: string }) {
  const t = look.text.login;
  return renderPage(
    c,
    look,
    t.title,
    html`<h1>${t.title}</h1>
<p>${look.text.approval.signInIntro}</p>
${options.error ? html`<p class="error" role="alert" id="login-error">${options.error}</p>` : ''}
<form method="post" action="/approvals/login">
  <input type="hidden" name="csrf" value="${options.csrf}">
  <input type="hidden" name="next" value="${options.next}">
  <label for="username">${t.username}</label>
  <input id="username" name="username" type="text" autocomplete="username" required autofocus value="${options.username ?? ''}">
  <label for="password">${t.password}</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <div class="actions"><button type="submit" class="primary">${t.submit}</button></div>
</form>`,
    options.error ? 401 : 200,
  );
}

/** The signed-in user's pending approvals, each a link to its page. */
export function approvalsListPage(
  c: Context,
  look: PageLook,
  options: { username: string; items: { id: string; summary: string; parties: ClientView[]; secondsLeft: number }[] },
) {
  const t = look.text.approval;
  return renderPage(
    c,
    look,
    t.listTitle,
    html`<h1>${t.listTitle}</h1>
<p class="muted" id="signed-in-as">${look.text.consent.signedInAs(html`<strong>${options.username}</strong>`)}</p>
${
  options.items.length === 0
    ? html`<p id="approvals-empty">${t.listEmpty}</p>`
    : html`<p>${t.listIntro}</p>
<ul class="scopes" id="approvals">
${options.items.map(
  (item) => html`<li data-transaction="${item.id}"><a href="/approve/${item.id}"><bdi>${item.summary}</bdi></a><div class="muted">${t.asks(item.parties.map((p) => party(p)))} ${t.timeLeft}: ${t.duration(item.secondsLeft)}.</div></li>`,
)}
</ul>`
}`,
  );
}

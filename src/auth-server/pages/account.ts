import type { Context } from 'hono';
import { html, raw } from 'hono/html';
import { renderSVG } from 'uqr';
import { renderPage, type PageLook } from './layout.ts';
import type { RememberedView } from '../remember/index.ts';

export interface AccountView {
  username: string;
  csrf: string;
  totp: { state: 'none' | 'pending' | 'enrolled'; enrolledAt?: number };
  /** In the answer to the setup request only: the secret (base32) and its `otpauth://` URI. */
  setup?: { secret: string; uri: string };
  /** Whether this answer may offer the confirmation form (the session that started the setup, within its time). */
  confirmable?: boolean;
  notice?: string;
  error?: string;
  /** Browsers that keep the user signed in (`remember_me.enabled` only). */
  remembered?: RememberedView[];
}

/** Base32 in groups of four, as people copy it by hand; apps ignore the spaces. */
export const groupSecret = (secret: string) => secret.replace(/(.{4})(?=.)/g, '$1 ');

/**
 * The setup link as a QR code for the phone's camera: inline SVG made of rectangles only (no
 * script, no image to load, no style attribute), so the page's CSP stays as strict as the others'.
 * Dark modules on white in both colour schemes: cameras read that best.
 */
const qrCode = (uri: string) => raw(renderSVG(uri, { ecc: 'M', border: 2 }));

const day = (epoch: number) => new Date(epoch * 1000).toISOString().slice(0, 10);

const codeInput = (id: string, required: boolean) =>
  html`<input id="${id}" name="code" class="code-input" type="text" inputmode="numeric" pattern="[0-9]{6}" maxlength="6" autocomplete="one-time-code" spellcheck="false"${required ? html` required autofocus` : ''}>`;

/** /account/security: the signed-in user's second factor, set up, confirmed or removed here. */
export function accountPage(c: Context, look: PageLook, view: AccountView) {
  const t = look.text.account;
  const csrf = html`<input type="hidden" name="csrf" value="${view.csrf}">`;
  const status =
    view.totp.state === 'enrolled' ? t.statusEnrolled(day(view.totp.enrolledAt ?? 0)) : view.totp.state === 'pending' ? t.statusPending : t.statusNone;
  const setup = view.setup;
  const cancel = html`<form method="post" action="/account/security/totp/cancel" id="totp-cancel-form">${csrf}</form>`;
  const setupForm = (again: boolean) => html`<form method="post" action="/account/security/totp/setup">
  ${csrf}
  <label for="password">${t.setUpPassword}</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <div class="actions">${again ? html`
    <button type="submit" class="secondary" id="totp-cancel" form="totp-cancel-form">${t.cancel}</button>` : ''}
    <button type="submit" class="primary" id="totp-setup">${again ? t.startAgain : t.setUp}</button>
  </div>
</form>`;
  const body = html`<h1>${t.title}</h1>
<p class="muted">${t.signedInAs(html`<strong id="account-username">${view.username}</strong>`)}</p>
${view.notice ? html`<p class="notice" role="status" id="account-notice">${view.notice}</p>` : ''}
${view.error ? html`<p class="error" role="alert" id="account-error">${view.error}</p>` : ''}
<h2>${t.totpHeading}</h2>
<p>${t.totpIntro}</p>
<dl><dt>${t.status}</dt><dd id="totp-status" data-state="${view.totp.state}">${status}</dd></dl>
${
  view.totp.state === 'enrolled'
    ? html`<p>${t.removeIntro}</p>
<form method="post" action="/account/security/totp/remove">
  ${csrf}
  <label for="code">${t.currentCode}</label>
  ${codeInput('code', false)}
  <div class="actions"><button type="submit" class="primary" id="totp-remove">${t.remove}</button></div>
</form>
<p class="muted" id="totp-lost">${t.lostPhone}</p>`
    : view.totp.state === 'pending' && view.confirmable
      ? html`${
          setup
            ? html`<p>${t.setupSteps}</p>
<div class="qr" id="totp-qr" role="img" aria-label="${t.qr}">${qrCode(setup.uri)}</div>
<div class="field-name">${t.key}</div>
<p class="secret" id="totp-secret">${groupSecret(setup.secret)}</p>
<div class="field-name">${t.link}</div>
<p><a id="totp-link" href="${setup.uri}">${t.linkText}</a></p>
<p class="muted" id="totp-uri">${setup.uri}</p>
<p class="muted">${t.keyOnce}</p>`
            : html`<p>${t.codeAgain}</p>`
        }
<form method="post" action="/account/security/totp/confirm">
  ${csrf}
  <label for="code">${t.code}</label>
  ${codeInput('code', true)}
  <div class="actions">
    <button type="submit" class="secondary" id="totp-cancel" form="totp-cancel-form">${t.cancel}</button>
    <button type="submit" class="primary" id="totp-confirm">${t.confirm}</button>
  </div>
</form>
${cancel}`
      : view.totp.state === 'pending'
        ? html`<p id="totp-unfinished">${t.unfinished}</p>
${setupForm(true)}
${cancel}`
        : setupForm(false)
}`;
  const signOut = html`<h2>${look.text.logout.accountHeading}</h2>
<p class="muted">${look.text.logout.accountIntro}</p>
<form method="post" action="/account/security/sign-out">
  ${csrf}
  <div class="actions"><button type="submit" class="secondary" id="sign-out">${look.text.logout.signOut}</button></div>
</form>`;
  return renderPage(c, look, t.title, html`${body}${view.remembered ? rememberedList(look, csrf, view.remembered) : ''}
${signOut}`, view.error ? 400 : 200);
}

/** The browsers that keep the user signed in, each with a "Forget" button. */
function rememberedList(look: PageLook, csrf: ReturnType<typeof html>, list: RememberedView[]) {
  const r = look.text.remember;
  return html`<h2>${r.heading}</h2>
<p>${r.intro}</p>
${
  list.length === 0
    ? html`<p class="muted" id="remembered-none">${r.none}</p>`
    : html`<ul class="remembered" id="remembered">${list.map(
        (item) => html`<li data-id="${item.id}"><span><strong>${item.userAgent ?? '?'}</strong>${item.thisBrowser ? html` <span class="badge verified">${r.thisBrowser}</span>` : ''}
<br><span class="muted">${item.addressPrefix ?? ''}${item.country ? ` (${item.country})` : ''} · ${r.lastUsed(day(item.lastUsedAt))} · ${r.until(day(item.expiresAt))}</span></span>
<form method="post" action="/account/security/remembered/forget">${csrf}<input type="hidden" name="id" value="${item.id}"><button type="submit" class="secondary" aria-label="${r.forget}: ${item.userAgent ?? item.id}">${r.forget}</button></form></li>`,
      )}</ul>`
}`;
}

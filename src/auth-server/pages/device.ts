import type { Context } from 'hono';
import { html } from 'hono/html';
import { renderPage, type PageLook } from './layout.ts';

/** RFC 8628 §3.3: the page where the person types the user code shown by the device. */
export function deviceCodePage(c: Context, look: PageLook, options: { userCode?: string; error?: string }) {
  const t = look.text.device;
  return renderPage(
    c,
    look,
    t.title,
    html`<h1>${t.title}</h1>
<p>${t.intro}</p>
${options.error ? html`<p class="error" role="alert" id="code-error">${options.error}</p>` : ''}
<form method="post" action="/device">
  <label for="user_code">${t.code}</label>
  <input id="user_code" class="code-input" name="user_code" type="text" autocomplete="one-time-code" autocapitalize="characters" spellcheck="false" required autofocus value="${options.userCode ?? ''}">
  <div class="actions"><button type="submit" class="primary">${t.submit}</button></div>
</form>`,
    options.error ? 400 : 200,
  );
}

/** The end of a device sign-in: the device has what it asked for, or nothing. */
export function deviceDonePage(c: Context, look: PageLook, denied: boolean) {
  const t = look.text.device;
  const [title, text] = denied ? [t.notConnected, t.notConnectedText] : [t.connected, t.connectedText];
  return renderPage(c, look, title, html`<h1>${title}</h1><p id="device-result">${text}</p>`);
}

import type { Context } from 'hono';
import { html } from 'hono/html';
import { renderPage, type PageLook } from './layout.ts';
import { clientLabel, type ClientView } from './parts.ts';

export interface LoginOptions {
  action: string;
  csrf: string;
  client: ClientView;
  error?: string;
  username?: string;
  /** Offer "Keep me signed in" (`remember_me.enabled`). */
  remember?: boolean;
  /** The box as it was sent, when the page comes back with an error. */
  rememberTicked?: boolean;
  /** A neutral note: the remembered sign-in was not used (docs/browser-sessions.md); never why. */
  signInAgain?: boolean;
}

export function loginPage(c: Context, look: PageLook, options: LoginOptions) {
  const t = look.text.login;
  const r = look.text.remember;
  return renderPage(
    c,
    look,
    t.title,
    html`<h1>${t.title}</h1>
<p>${t.continueTo(clientLabel(look, options.client))}</p>
${options.signInAgain && !options.error ? html`<p class="muted" role="status" id="login-note">${r.signInAgain}</p>` : ''}
${options.error ? html`<p class="error" role="alert" id="login-error">${options.error}</p>` : ''}
<form method="post" action="${options.action}">
  <input type="hidden" name="csrf" value="${options.csrf}">
  <label for="username">${t.username}</label>
  <input id="username" name="username" type="text" autocomplete="username" required autofocus value="${options.username ?? ''}">
  <label for="password">${t.password}</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  ${
    options.remember
      ? html`<label class="check" for="remember"><input id="remember" name="remember" type="checkbox" value="1" aria-describedby="remember-hint"${options.rememberTicked ? html` checked` : ''}> ${r.keepSignedIn}</label>
  <p class="muted" id="remember-hint">${r.hint}</p>`
      : ''
  }
  <div class="actions"><button type="submit" class="primary">${t.submit}</button></div>
</form>`,
    options.error ? 401 : 200,
  );
}

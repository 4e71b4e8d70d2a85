import type { Context } from 'hono';
import { html } from 'hono/html';
import { renderPage, type PageLook } from './layout.ts';
import { clientLabel, type ClientView } from './parts.ts';

export function loginPage(c: Context, look: PageLook, options: { action: string; csrf: string; client: ClientView; error?: string; username?: string }) {
  const t = look.text.login;
  return renderPage(
    c,
    look,
    t.title,
    html`<h1>${t.title}</h1>
<p>${t.continueTo(clientLabel(look, options.client))}</p>
${options.error ? html`<p class="error" role="alert" id="login-error">${options.error}</p>` : ''}
<form method="post" action="${options.action}">
  <input type="hidden" name="csrf" value="${options.csrf}">
  <label for="username">${t.username}</label>
  <input id="username" name="username" type="text" autocomplete="username" required autofocus value="${options.username ?? ''}">
  <label for="password">${t.password}</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <div class="actions"><button type="submit" class="primary">${t.submit}</button></div>
</form>`,
    options.error ? 401 : 200,
  );
}

import type { Context } from 'hono';
import { html } from 'hono/html';
import { renderPage } from './layout.ts';

export function loginPage(c: Context, options: { action: string; csrf: string; clientName: string; error?: string; username?: string }) {
  return renderPage(
    c,
    'Sign in',
    html`<h1>Sign in</h1>
<p>to continue to <strong>${options.clientName}</strong></p>
${options.error ? html`<p class="error" role="alert" id="login-error">${options.error}</p>` : ''}
<form method="post" action="${options.action}">
  <input type="hidden" name="csrf" value="${options.csrf}">
  <label for="username">Username</label>
  <input id="username" name="username" type="text" autocomplete="username" required autofocus value="${options.username ?? ''}">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button type="submit">Sign in</button>
</form>`,
    options.error ? 401 : 200,
  );
}

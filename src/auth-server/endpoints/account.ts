import type { Context, Hono } from 'hono';
import { constantTimeEqual } from '../../core/encoding.ts';
import type { AppEnv, ServerContext } from '../context.ts';
import { hashSecret } from '../hash.ts';
import { clearSessionCookie, currentSession, signInThenReturn, type Session } from '../interaction.ts';
import { accountPage } from '../pages/account.ts';
import { loggedOutPage } from '../pages/logout.ts';
import { endSessionsAndNotify } from '../sign-out.ts';
import { errorPage, pageLook } from '../pages/layout.ts';
import { dummyHash, verifyPassword } from '../passwords.ts';
import { forgetRemembered, forgetThisBrowser, listRemembered } from '../remember/index.ts';
import { beginTotpEnrolment, checkTotp, confirmTotpEnrolment, removeTotp, totpStatus, type TotpRefusal, type TotpSetup } from '../totp.ts';

const PAGE = '/account/security';

/**
 * The signed-in user's own page: set up, confirm or remove an authenticator app (TOTP, docs/totp.md).
 * A browser that is not signed in signs in first and comes back. Every POST carries a CSRF token
 * derived from the session (unguessable without the session cookie, which the page never shows).
 *
 * What a stolen session cookie cannot do here: start a setup (the password is asked), read the key
 * of a setup (shown once, in the answer to the password-checked request), confirm a setup another
 * session started or one older than ten minutes, or remove a confirmed app (a current code is asked).
 */
export function accountEndpoints(app: Hono<AppEnv>, ctx: ServerContext) {
  const look = pageLook(ctx.config.branding);
  const t = look.text.account;
  const csrfFor = (session: Session) => hashSecret(`account-csrf:${session.id}`);

  // The sign-in limiter per account (endpoints/interaction.ts): a password guessed here counts
  // there too. Never the TOTP code limiter: a right password must not buy more code guesses.
  const passwordAttempts = ctx.limiter('login-account', { points: ctx.config.limits.login_per_account, perSeconds: ctx.config.limits.login_window_seconds });

  /** The page; `setup` (the key) only in the answer to a setup, `confirmable` for its own session's retries. */
  const show = async (c: Context, session: Session, extra: { notice?: string; error?: string; setup?: TotpSetup; confirmable?: boolean } = {}) =>
    accountPage(c, look, {
      username: session.username,
      csrf: csrfFor(session),
      totp: await totpStatus(ctx, session.sub),
      ...(ctx.config.remember_me.enabled ? { remembered: await listRemembered(ctx, c, session.sub) } : {}),
      ...extra,
    });

  /** A refused POST: audited with the detail (STYLE 5), a generic page for the user. */
  const refusePage = (c: Context, status: 400 | 403, description: string, reason: string, sub?: string) => {
    ctx.audit.record({ at: ctx.now(), type: 'account.refused', outcome: 'failure', sub, error: 'invalid_request', reason: `${c.req.method} ${c.req.path}: ${reason}` });
    return errorPage(c, look, 'invalid_request', description, status);
  };

  /** The common start of every POST: a signed-in session and the form with its CSRF token checked. */
  const signedInForm = async (c: Context) => {
    const session = await currentSession(ctx, c);
    if (!session) return { refused: await refusePage(c, 403, look.text.error.expired, 'no signed-in session') };
    const form = await c.req.parseBody();
    const token = typeof form.csrf === 'string' ? form.csrf : '';
    if (!constantTimeEqual(token, csrfFor(session))) return { refused: await refusePage(c, 403, look.text.error.csrf, 'CSRF token mismatch', session.sub) };
    // A password is taken as typed (spaces may be part of it); a code is trimmed.
    const raw = (name: string) => (typeof form[name] === 'string' ? (form[name] as string) : '');
    return { session, raw, field: (name: string) => raw(name).trim() };
  };

  const messages: Partial<Record<TotpRefusal, string>> = {
    'too many attempts': t.throttled,
    'enrolment changed': t.changed,
    'secret unreadable': t.unreadable,
    'setup expired': t.setupExpired,
    'setup of another session': t.otherSession,
  };
  const message = (reason: TotpRefusal) => messages[reason] ?? t.wrongCode;

  app.get(PAGE, async (c) => {
    const session = await currentSession(ctx, c);
    if (!session) return signInThenReturn(ctx, c, PAGE);
    const done = c.req.query('done');
    return show(c, session, { notice: done === 'enrolled' ? t.enrolled : done === 'removed' ? t.removed : done === 'forgotten' ? look.text.remember.forgotten : undefined });
  });

  /**
   * The password typed again to set up: otherwise whoever holds a stolen session could enrol an
   * app of their own and then approve high-risk actions with its codes, where the approval page
   * would have asked the password. Limited as sign-in is; it never touches the code budget.
   */
  const passwordChecked = async (c: Context, session: Session, password: string) => {
    const refuse = (reason: 'too many attempts' | 'wrong password', error: string) => {
      ctx.audit.record({ at: ctx.now(), type: 'totp.refused', outcome: 'failure', sub: session.sub, error: reason === 'too many attempts' ? 'slow_down' : 'access_denied', reason, data: { purpose: 'setup' } });
      return show(c, session, { error });
    };
    const account = session.username.toLowerCase();
    if (!(await passwordAttempts.consume(account)).allowed) return { refused: await refuse('too many attempts', t.throttled) };
    const user = await ctx.store.users.findBySub(session.sub);
    // Always run scrypt, so an account without a password takes as long as a wrong one.
    const valid = (await verifyPassword(password, user?.passwordHash ?? (await dummyHash()))) && user?.passwordHash !== undefined;
    if (!valid) return { refused: await refuse('wrong password', t.wrongPassword) };
    await passwordAttempts.reset(account);
    return {};
  };

  app.post(`${PAGE}/totp/setup`, async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    const checked = await passwordChecked(c, step.session, step.raw('password'));
    if (checked.refused) return checked.refused;
    // Nothing happens when one is confirmed already: it has to be removed first, with a code.
    const setup = await beginTotpEnrolment(ctx, step.session);
    // The key in this answer only (no redirect to a GET that would show it again): the page is
    // `no-store`, and a later visit says the setup is unfinished and asks for the password again.
    return show(c, step.session, setup ? { setup, confirmable: true } : {});
  });

  /** "Sign out": this browser's session ends, and the clients that got grants in it are told (back-channel logout). */
  app.post(`${PAGE}/sign-out`, async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    await endSessionsAndNotify(ctx, step.session.sub, step.session.sid, { via: 'account', device: step.session.device });
    clearSessionCookie(ctx, c);
    // Signed out means not kept signed in either: this browser's remembered sign-in goes too.
    await forgetThisBrowser(ctx, c);
    return loggedOutPage(c, look);
  });

  app.post(`${PAGE}/totp/confirm`, async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    const result = await confirmTotpEnrolment(ctx, step.session, step.field('code'));
    if (!result.ok) {
      // A mistyped code may be tried again from this session; a setup it cannot confirm starts again.
      const confirmable = result.reason === 'wrong code' || result.reason === 'malformed code' || result.reason === 'too many attempts';
      return show(c, step.session, { error: message(result.reason), confirmable });
    }
    return c.redirect(`${PAGE}?done=enrolled`, 303);
  });

  app.post(`${PAGE}/totp/cancel`, async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    // Only a pending setup: a confirmed one needs a current code.
    if ((await totpStatus(ctx, step.session.sub)).state === 'pending') await removeTotp(ctx, step.session.sub, 'cancel');
    return c.redirect(PAGE, 303);
  });

  /**
   * A confirmed app goes away only with a current code from it: the password alone would let a
   * phished password undo the second factor. A lost phone is the administrator's reset (docs/totp.md).
   */
  app.post(`${PAGE}/totp/remove`, async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    const result = await checkTotp(ctx, step.session.sub, step.field('code'), 'remove');
    if (!result.ok) return show(c, step.session, { error: message(result.reason) });
    await removeTotp(ctx, step.session.sub, 'totp');
    return c.redirect(`${PAGE}?done=removed`, 303);
  });

  /** "Forget" a remembered browser (docs/browser-sessions.md): it asks for the password next time. */
  app.post(`${PAGE}/remembered/forget`, async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    if (!ctx.config.remember_me.enabled) return refusePage(c, 400, look.text.error.expired, 'remember_me is disabled', step.session.sub);
    const id = step.field('id');
    if (!(await forgetRemembered(ctx, step.session.sub, 'user', id, { c, server: ctx }))) return refusePage(c, 400, look.text.error.expired, 'no such remembered browser', step.session.sub);
    return c.redirect(`${PAGE}?done=forgotten`, 303);
  });
}

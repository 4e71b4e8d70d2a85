import type { Context, Hono } from 'hono';
import { constantTimeEqual } from '../../core/encoding.ts';
import type { AppEnv, ServerContext } from '../context.ts';
import { hashSecret } from '../hash.ts';
import { currentSession, signInThenReturn, type Session } from '../interaction.ts';
import { accountPage } from '../pages/account.ts';
import { errorPage, pageLook } from '../pages/layout.ts';
import { dummyHash, verifyPassword } from '../passwords.ts';
import { beginTotpEnrolment, checkTotp, confirmTotpEnrolment, pendingTotp, removeTotp, totpAttempts, totpStatus, type TotpRefusal } from '../totp.ts';

const PAGE = '/account/security';

/**
 * The signed-in user's own page: set up, confirm or remove an authenticator app (TOTP, docs/totp.md).
 * A browser that is not signed in signs in first and comes back. Every POST carries a CSRF token
 * derived from the session (unguessable without the session cookie, which the page never shows).
 */
export function accountEndpoints(app: Hono<AppEnv>, ctx: ServerContext) {
  const look = pageLook(ctx.config.branding);
  const t = look.text.account;
  const csrfFor = (session: Session) => hashSecret(`account-csrf:${session.id}`);

  const show = async (c: Context, session: Session, extra: { notice?: string; error?: string } = {}) =>
    accountPage(c, look, {
      username: session.username,
      csrf: csrfFor(session),
      totp: await totpStatus(ctx, session.sub),
      pending: await pendingTotp(ctx, session),
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

  const message = (reason: TotpRefusal) =>
    reason === 'too many attempts' ? t.throttled : reason === 'enrolment changed' ? t.changed : reason === 'secret unreadable' ? t.unreadable : t.wrongCode;

  app.get(PAGE, async (c) => {
    const session = await currentSession(ctx, c);
    if (!session) return signInThenReturn(ctx, c, PAGE);
    const done = c.req.query('done');
    return show(c, session, { notice: done === 'enrolled' ? t.enrolled : done === 'removed' ? t.removed : undefined });
  });

  /**
   * The password typed again, within the per-account budget that codes draw on. Setting up needs
   * it too: otherwise whoever holds a stolen session could enrol an app of their own and then
   * approve high-risk actions with its codes, where the approval page would have asked the password.
   */
  const passwordChecked = async (c: Context, session: Session, password: string, purpose: 'setup' | 'remove') => {
    const refuse = (reason: 'too many attempts' | 'wrong password', error: string) => {
      ctx.audit.record({ at: ctx.now(), type: 'totp.refused', outcome: 'failure', sub: session.sub, error: reason === 'too many attempts' ? 'slow_down' : 'access_denied', reason, data: { purpose } });
      return show(c, session, { error });
    };
    if (!(await totpAttempts(ctx).consume(session.sub)).allowed) return { refused: await refuse('too many attempts', t.throttled) };
    const user = await ctx.store.users.findBySub(session.sub);
    // Always run scrypt, so an account without a password takes as long as a wrong one.
    const valid = (await verifyPassword(password, user?.passwordHash ?? (await dummyHash()))) && user?.passwordHash !== undefined;
    if (!valid) return { refused: await refuse('wrong password', purpose === 'setup' ? t.wrongPassword : t.wrongProof) };
    await totpAttempts(ctx).reset(session.sub);
    return {};
  };

  app.post(`${PAGE}/totp/setup`, async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    const checked = await passwordChecked(c, step.session, step.raw('password'), 'setup');
    if (checked.refused) return checked.refused;
    // Nothing happens when one is confirmed already: it has to be removed first, with proof.
    await beginTotpEnrolment(ctx, step.session.sub);
    return c.redirect(PAGE, 303);
  });

  app.post(`${PAGE}/totp/confirm`, async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    const result = await confirmTotpEnrolment(ctx, step.session.sub, step.field('code'));
    if (!result.ok) return show(c, step.session, { error: message(result.reason) });
    return c.redirect(`${PAGE}?done=enrolled`, 303);
  });

  app.post(`${PAGE}/totp/cancel`, async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    // Only a pending setup: a confirmed one needs the password or a code.
    if ((await totpStatus(ctx, step.session.sub)).state === 'pending') await removeTotp(ctx, step.session.sub, 'cancel');
    return c.redirect(PAGE, 303);
  });

  app.post(`${PAGE}/totp/remove`, async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    const { session, field, raw } = step;
    const code = field('code');
    let how: 'totp' | 'password';
    if (code !== '') {
      const result = await checkTotp(ctx, session.sub, code, 'remove');
      if (!result.ok) return show(c, session, { error: result.reason === 'too many attempts' ? t.throttled : t.wrongProof });
      how = 'totp';
    } else {
      const checked = await passwordChecked(c, session, raw('password'), 'remove');
      if (checked.refused) return checked.refused;
      how = 'password';
    }
    await removeTotp(ctx, session.sub, how);
    return c.redirect(`${PAGE}?done=removed`, 303);
  });
}

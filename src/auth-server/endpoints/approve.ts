import type { Context, Hono } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import { constantTimeEqual, randomToken } from '../../core/encoding.ts';
import { transactionStatus, type TransactionRecord } from '../../store/types.ts';
import type { AppEnv, ServerContext } from '../context.ts';
import { hashSecret } from '../hash.ts';
import { currentSession, startSession, type Session } from '../interaction.ts';
import { dummyHash, verifyPassword } from '../passwords.ts';
import { totpEnrolled, verifyTotp } from '../totp.ts';
import { auditData } from '../transactions.ts';
import { approvalOutcomePage, approvalPage, approvalSignInPage, approvalsListPage } from '../pages/approval.ts';
import { clientView } from '../pages/consent-view.ts';
import { errorPage, pageLook } from '../pages/layout.ts';
import type { ClientView } from '../pages/parts.ts';

/** Transaction ids are base64url; anything else is no transaction (and never a redirect target). */
const ID = /^[A-Za-z0-9_-]{1,64}$/;
/** Where the sign-in of these pages may return: only to them. */
const NEXT = /^\/(?:approvals|approve\/[A-Za-z0-9_-]{1,64})$/;
/** Double-submit token of the sign-in form, before there is a session to bind a token to. */
const SIGNIN_COOKIE = 'mandate_approval_signin';

type Form = Record<string, string | File>;

/**
 * The approval pages of high-risk actions (docs/high-risk-actions.md):
 *
 *   GET  /approve/{id}      sign in if needed, then the request: who asks for whom, what, how long
 *   POST /approve/{id}      Approve (with a fresh password or one-time code) or Deny
 *   GET  /approvals         the signed-in user's pending requests
 *   POST /approvals/login   the sign-in of these pages, returning to where it began
 *
 * A browser that is not signed in learns nothing of a request. Another user's request is refused
 * (403, audited). The decision form's CSRF token is derived from the session and the request; the
 * password or code is limited with the sign-in attempts (same budgets, per account and address).
 */
export function approvalEndpoints(app: Hono<AppEnv>, ctx: ServerContext) {
  const look = pageLook(ctx.config.branding);
  const t = look.text.approval;
  const limits = ctx.config.limits;
  // The sign-in limiters (endpoints/interaction.ts): a password guessed here counts there too.
  const accountAttempts = ctx.limiter('login-account', { points: limits.login_per_account, perSeconds: limits.login_window_seconds });
  const addressFailures = ctx.limiter('login-address', { points: limits.login_per_address, perSeconds: limits.login_window_seconds });

  const csrfFor = (session: Session, id: string) => hashSecret(`approve:${session.id}:${id}`);

  const signInCsrf = (c: Context) => {
    const existing = getCookie(c, SIGNIN_COOKIE);
    if (existing && /^[A-Za-z0-9_-]{32}$/.test(existing)) return existing;
    const value = randomToken(24);
    setCookie(c, SIGNIN_COOKIE, value, { path: '/', httpOnly: true, sameSite: 'Lax', secure: ctx.issuer.startsWith('https://'), maxAge: ctx.config.tokens.interaction_ttl });
    return value;
  };
  const signInPage = (c: Context, next: string, error?: string, username?: string) => approvalSignInPage(c, look, { csrf: signInCsrf(c), next, error, username });

  /** Audits a refusal on these pages, with the detail the page does not show. */
  const refused = (session: Session | undefined, tx: TransactionRecord | undefined, error: string, reason: string) =>
    ctx.audit.record({
      at: ctx.now(),
      type: 'transaction.refused',
      outcome: 'failure',
      clientId: tx?.clientId,
      sub: session?.sub,
      error,
      reason: `approval page: ${reason}`,
      ...(tx ? { data: auditData(tx) } : {}),
    });

  /** Who asks: the token's client, then each actor it acts for, named as the consent page names clients. */
  const parties = async (tx: TransactionRecord): Promise<ClientView[]> => {
    const ids = [tx.clientId, ...tx.act].filter((id, i, all) => i === 0 || id !== all[i - 1]);
    return Promise.all(ids.map(async (id) => clientView(ctx, id, await ctx.findClient(id).catch(() => undefined))));
  };

  /** The transaction this user may decide now, or the page that says why not. */
  const load = async (c: Context, session: Session, id: string): Promise<{ tx: TransactionRecord } | { page: Response | Promise<Response> }> => {
    const tx = ID.test(id) ? await ctx.store.transactions.find(id) : undefined;
    if (!tx) {
      refused(session, undefined, 'not_found', `unknown transaction ${id.slice(0, 64)}`);
      return { page: approvalOutcomePage(c, look, 'not_found') };
    }
    if (tx.sub !== session.sub) {
      refused(session, tx, 'access_denied', `opened by ${session.username} (sub=${session.sub}); the transaction is of sub=${tx.sub}`);
      return { page: approvalOutcomePage(c, look, 'other_account', session.username) };
    }
    const status = transactionStatus(tx, ctx.now());
    if (status !== 'pending') return { page: approvalOutcomePage(c, look, status) };
    return { tx };
  };

  const show = async (c: Context, session: Session, tx: TransactionRecord, error?: string) =>
    approvalPage(c, look, {
      action: `/approve/${tx.id}`,
      csrf: csrfFor(session, tx.id),
      username: session.username,
      summary: tx.summary,
      tool: tx.tool,
      resource: { id: tx.resource, name: ctx.resource(tx.resource)?.name ?? tx.resource },
      parties: await parties(tx),
      details: tx.details,
      secondsLeft: Math.max(0, tx.expiresAt - ctx.now()),
      factor: (await totpEnrolled(ctx, tx.sub)) ? 'totp' : 'password',
      error,
    });

  /** After a decision lost a race (decided in another tab, or expired meanwhile): what it is now. */
  const outcomeNow = async (c: Context, id: string) => {
    const tx = await ctx.store.transactions.find(id);
    const status = tx ? transactionStatus(tx, ctx.now()) : 'expired';
    return approvalOutcomePage(c, look, status === 'pending' ? 'expired' : status);
  };

  /**
   * The fresh authentication an approval needs: the one-time code when the user has enrolled
   * TOTP, else the password. Limited like sign-in attempts, before any scrypt work is spent.
   */
  const freshAuthentication = async (c: Context, session: Session, tx: TransactionRecord, form: Form): Promise<{ how: 'password' | 'totp' } | { error: string }> => {
    const address = ctx.clientAddress(c);
    const account = session.username.toLowerCase();
    const byAddress = await addressFailures.consume(address);
    const byAccount = byAddress.allowed ? await accountAttempts.consume(account) : undefined;
    if (!byAddress.allowed || !byAccount?.allowed) {
      if (byAddress.allowed) await addressFailures.reward(address);
      refused(session, tx, 'slow_down', !byAddress.allowed ? `too many failed sign-ins from ${address}` : `too many attempts for username=${session.username}`);
      return { error: t.throttled };
    }
    const how = (await totpEnrolled(ctx, session.sub)) ? ('totp' as const) : ('password' as const);
    let valid: boolean;
    if (how === 'totp') {
      const code = typeof form.code === 'string' ? form.code.trim() : '';
      valid = /^\d{6}$/.test(code) && (await verifyTotp(ctx, session.sub, code));
    } else {
      const user = await ctx.store.users.findBySub(session.sub);
      const password = typeof form.password === 'string' ? form.password : '';
      // Always run scrypt, so a user without a password takes as long as a wrong one.
      valid = (await verifyPassword(password, user?.passwordHash ?? (await dummyHash()))) && user?.passwordHash !== undefined;
    }
    if (!valid) {
      refused(session, tx, 'access_denied', how === 'totp' ? 'wrong one-time code' : 'wrong password');
      return { error: how === 'totp' ? t.wrongCode : t.wrongPassword };
    }
    await accountAttempts.reset(account);
    await addressFailures.reward(address);
    return { how };
  };

  app.get('/approve/:id', async (c) => {
    const id = c.req.param('id');
    const session = await currentSession(ctx, c);
    if (!session) return ID.test(id) ? signInPage(c, `/approve/${id}`) : approvalOutcomePage(c, look, 'not_found');
    const loaded = await load(c, session, id);
    return 'page' in loaded ? loaded.page : show(c, session, loaded.tx);
  });

  app.post('/approve/:id', async (c) => {
    const id = c.req.param('id');
    const session = await currentSession(ctx, c);
    if (!session || !ID.test(id)) return c.redirect(ID.test(id) ? `/approve/${id}` : '/approvals', 303);
    const form = await c.req.parseBody();
    if (!constantTimeEqual(typeof form.csrf === 'string' ? form.csrf : '', csrfFor(session, id))) {
      refused(session, undefined, 'invalid_request', `CSRF token mismatch on /approve/${id}`);
      return errorPage(c, look, 'invalid_request', look.text.error.csrf, 403);
    }
    const loaded = await load(c, session, id);
    if ('page' in loaded) return loaded.page;
    const { tx } = loaded;
    if (form.decision === 'deny') {
      const at = ctx.now();
      if (!(await ctx.store.transactions.decide(tx.id, session.sub, { status: 'denied', at }))) return outcomeNow(c, tx.id);
      ctx.audit.record({ at, type: 'transaction.denied', outcome: 'failure', clientId: tx.clientId, sub: tx.sub, error: 'access_denied', reason: 'the user denied it', data: auditData(tx) });
      return approvalOutcomePage(c, look, 'denied');
    }
    if (form.decision !== 'approve') {
      refused(session, tx, 'invalid_request', 'no decision in the form');
      return errorPage(c, look, 'invalid_request', t.noDecision, 400);
    }
    const fresh = await freshAuthentication(c, session, tx, form);
    if ('error' in fresh) return show(c, session, tx, fresh.error);
    const at = ctx.now();
    if (!(await ctx.store.transactions.decide(tx.id, session.sub, { status: 'approved', at, how: fresh.how }))) return outcomeNow(c, tx.id);
    ctx.audit.record({ at, type: 'transaction.approved', outcome: 'success', clientId: tx.clientId, sub: tx.sub, data: auditData(tx, { decided_how: fresh.how }) });
    return approvalOutcomePage(c, look, 'approved');
  });

  app.get('/approvals', async (c) => {
    const session = await currentSession(ctx, c);
    if (!session) return signInPage(c, '/approvals');
    const now = ctx.now();
    const pending = await ctx.store.transactions.listPending(session.sub, now);
    const items = await Promise.all(pending.map(async (tx) => ({ id: tx.id, summary: tx.summary, parties: await parties(tx), secondsLeft: tx.expiresAt - now })));
    return approvalsListPage(c, look, { username: session.username, items });
  });

  app.post('/approvals/login', async (c) => {
    const form = await c.req.parseBody();
    const next = typeof form.next === 'string' && NEXT.test(form.next) ? form.next : '/approvals';
    const cookie = getCookie(c, SIGNIN_COOKIE);
    if (!cookie || typeof form.csrf !== 'string' || !constantTimeEqual(form.csrf, cookie)) {
      refused(undefined, undefined, 'invalid_request', 'sign-in: CSRF token mismatch');
      return errorPage(c, look, 'invalid_request', look.text.error.csrf, 403);
    }
    const username = typeof form.username === 'string' ? form.username.trim() : '';
    const password = typeof form.password === 'string' ? form.password : '';
    const data = { via: 'approval page' };
    // As at the interaction's sign-in: bounded per address and per account before any scrypt work.
    const address = ctx.clientAddress(c);
    const account = username.toLowerCase();
    const byAddress = await addressFailures.consume(address);
    const byAccount = byAddress.allowed ? await accountAttempts.consume(account) : undefined;
    if (!byAddress.allowed || !byAccount?.allowed) {
      if (byAddress.allowed) await addressFailures.reward(address);
      const reason = !byAddress.allowed ? `too many failed sign-ins from ${address}` : `too many sign-in attempts for username=${username}`;
      ctx.audit.record({ at: ctx.now(), type: 'login.throttled', outcome: 'failure', error: 'slow_down', reason, data });
      return signInPage(c, next, look.text.login.throttled, username);
    }
    const user = username ? await ctx.store.users.findByUsername(username) : undefined;
    const valid = (await verifyPassword(password, user?.passwordHash ?? (await dummyHash()))) && user?.passwordHash !== undefined;
    if (!user || !valid) {
      ctx.audit.record({ at: ctx.now(), type: 'login.failed', outcome: 'failure', reason: `username=${username}`, data });
      return signInPage(c, next, look.text.login.wrongPassword, username);
    }
    await accountAttempts.reset(account);
    await addressFailures.reward(address);
    await startSession(ctx, c, user);
    ctx.audit.record({ at: ctx.now(), type: 'login.succeeded', outcome: 'success', sub: user.sub, data });
    return c.redirect(next, 303);
  });
}

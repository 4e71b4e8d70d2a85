import type { Context, Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { constantTimeEqual } from '../../core/encoding.ts';
import { formatScope, isSubset, parseScope } from '../../core/scopes.ts';
import type { ServerContext } from '../context.ts';
import {
  completeAuthorization,
  currentSession,
  errorRedirect,
  loadInteraction,
  startSession,
  updateInteraction,
  type Interaction,
  type Session,
} from '../interaction.ts';
import { dummyHash, verifyPassword } from '../passwords.ts';
import { consentPage } from '../pages/consent.ts';
import { settleDevice } from '../device.ts';
import { agreementPage } from '../pages/agreement.ts';
import { pendingAgreement } from '../agreements.ts';
import { errorPage, pageLook } from '../pages/layout.ts';
import { clientView, consentView, scopesNeedingTick } from '../pages/consent-view.ts';
import { loginPage } from '../pages/login.ts';
import { narrowAdminAuthorization } from '../admin-roles.ts';
import { isFirstParty } from '../client-flags.ts';
import { afterPasswordSignIn, noteFailedSignIn, resumeRemembered } from '../remember/index.ts';
import { ensureDevice } from '../remember/cookies.ts';
import { transferredSessionLimit } from '../session-transfer.ts';

/**
 * The interaction pages: login, then consent, then the redirect with a code. Every POST carries
 * the interaction's CSRF token, and the interaction is bound to the browser that began it.
 */
export function interactionEndpoints(app: Hono<AppEnv>, ctx: ServerContext) {
  const limits = ctx.config.limits;
  const look = pageLook(ctx.config.branding);
  const words = look.text;
  const remember = ctx.config.remember_me.enabled;
  // Per account, from anywhere: bounds guessing one password; a third party that keeps spending
  // an account's budget keeps delaying its sign-in (a known limit, docs/security.md). Per address
  // (IPv6 /64), failures only: bounds spraying one password across many accounts.
  const accountAttempts = ctx.limiter('login-account', { points: limits.login_per_account, perSeconds: limits.login_window_seconds });
  const addressFailures = ctx.limiter('login-address', { points: limits.login_per_address, perSeconds: limits.login_window_seconds });
  /** A refused page request: audited with the detail (STYLE 5), a generic page for the user. */
  const refusePage = (c: Context, status: 400 | 403, description: string, reason: string, clientId?: string) => {
    ctx.audit.record({ at: ctx.now(), type: 'interaction.refused', outcome: 'failure', clientId, error: 'invalid_request', reason: `${c.req.method} ${c.req.path}: ${reason}` });
    return errorPage(c, look, 'invalid_request', description, status);
  };
  const expired = async (c: Context, why?: string) => {
    const known = await ctx.cache.get<Interaction>(`interaction:${c.req.param('id') ?? ''}`);
    const reason = why ?? (known ? 'the interaction is bound to another browser' : 'unknown or expired interaction');
    return refusePage(c, 400, words.error.expired, reason, known?.clientId);
  };
  const csrfFailed = (c: Context, interaction: Interaction) =>
    refusePage(c, 403, words.error.csrf, 'CSRF token mismatch', interaction.clientId);

  // A sign-in for this server's own pages (`returnTo`) continues to the service itself.
  const client = async (clientId: string) =>
    clientId === '' ? { id: ctx.issuer, name: look.productName, verified: true, isAgent: false } : clientView(ctx, clientId, await ctx.findClient(clientId));

  const csrfOk = async (c: Context, interaction: Interaction) => {
    // all: a repeated field (high_risk ticks) arrives as a list; a repeated csrf is then no string and fails.
    const form = await c.req.parseBody({ all: true });
    const token = typeof form.csrf === 'string' ? form.csrf : '';
    return { ok: constantTimeEqual(token, interaction.csrf), form };
  };

  /** Decides the next step: login, consent, or done. */
  const next = async (c: Context, interaction: Interaction): Promise<Response> => {
    const existing = await currentSession(ctx, c);
    // No session: a remembered browser may sign in silently, if its risk is low (docs/browser-sessions.md).
    const resumed = existing ? undefined : await resumeRemembered(ctx, c, interaction);
    const session = existing ?? (resumed && 'session' in resumed ? resumed.session : undefined);
    // OIDC Core §3.1.2.1: prompt=login, or a sign-in older than max_age, asks for the password again.
    const stale = session !== undefined && interaction.maxAge !== undefined && ctx.now() - session.authTime >= interaction.maxAge;
    // A session transfer's session (an app's bearer token) is not enough for everything (session-transfer.ts).
    const limited = session && !interaction.loggedIn ? transferredSessionLimit(ctx, session, interaction.resource) : undefined;
    if (limited) ctx.audit.record({ at: ctx.now(), type: 'authorize.password_required', outcome: 'failure', clientId: interaction.clientId || undefined, sub: session!.sub, error: 'login_required', reason: limited });
    const mustLogin = !session || ((interaction.prompt.includes('login') || stale || limited !== undefined) && !interaction.loggedIn);
    if (mustLogin) {
      if (interaction.prompt.includes('none')) return c.redirect(errorRedirect(ctx, interaction, 'login_required', 'the user is not signed in'), 303);
      return loginPage(c, look, { action: `/interaction/${interaction.id}/login`, csrf: interaction.csrf, client: await client(interaction.clientId), remember, signInAgain: resumed !== undefined && 'refused' in resumed });
    }
    if (interaction.returnTo) {
      await ctx.cache.delete(`interaction:${interaction.id}`);
      return c.redirect(interaction.returnTo, 303);
    }
    // Admin scopes are narrowed to the user's roles before consent, so the page asks only for those.
    const narrowed = await narrowAdminAuthorization(ctx, { sub: session.sub, clientId: interaction.clientId, resource: interaction.resource, scopes: interaction.scopes });
    if (narrowed.refused) {
      await ctx.cache.delete(`interaction:${interaction.id}`);
      if (interaction.deviceCodeHash) {
        await settleDevice(ctx, interaction.deviceCodeHash, { status: 'denied' });
        return c.redirect('/device/done?denied=1', 303);
      }
      return c.redirect(errorRedirect(ctx, interaction, 'invalid_scope', 'your account holds no administrative role'), 303);
    }
    if (narrowed.scopes.length !== interaction.scopes.length) {
      interaction = { ...interaction, scopes: narrowed.scopes };
      await updateInteraction(ctx, interaction);
    }
    const agreement = await pendingAgreement(ctx, interaction.acr, session.sub);
    if (agreement) {
      if (interaction.prompt.includes('none')) return c.redirect(errorRedirect(ctx, interaction, 'interaction_required', 'an agreement needs accepting'), 303);
      return agreementPage(c, look, {
        action: `/interaction/${interaction.id}/agreement`,
        csrf: interaction.csrf,
        name: agreement.name,
        version: agreement.version,
        text: agreement.text,
        client: await client(interaction.clientId),
      });
    }
    if (await needsConsent(interaction, session)) {
      if (interaction.prompt.includes('none')) return c.redirect(errorRedirect(ctx, interaction, 'consent_required', 'the user has not consented'), 303);
      return showConsent(c, interaction, session);
    }
    return c.redirect(await completeAuthorization(ctx, c, interaction, session), 303);
  };

  const needsConsent = async (interaction: Interaction, session: Session) => {
    if (interaction.prompt.includes('consent')) return true;
    // A first-party client of the configuration file (never a self-registered one) asks no consent;
    // a device's request still does: the page is what shows the user which device they let in.
    if (isFirstParty(ctx, interaction.clientId) && !interaction.deviceCodeHash) return false;
    const remembered = await ctx.store.consents.find(session.sub, interaction.clientId, interaction.resource);
    if (!remembered || !isSubset(interaction.scopes, parseScope(remembered.scope))) return true;
    // The tick rule holds for remembered consents too: a consent stored before a scope was marked
    // high risk, or while the client's host was verified, covers no high-risk scope it never ticked.
    return !isSubset(await scopesNeedingTick(ctx, interaction), parseScope(remembered.highRiskTicked));
  };

  const showConsent = async (c: Context, interaction: Interaction, session: Session) =>
    consentPage(c, look, await consentView(ctx, look, interaction, { action: `/interaction/${interaction.id}/consent`, username: session.username }));

  app.get('/interaction/:id', async (c) => {
    const interaction = await loadInteraction(ctx, c, c.req.param('id'));
    return interaction ? next(c, interaction) : expired(c);
  });

  app.post('/interaction/:id/login', async (c) => {
    const interaction = await loadInteraction(ctx, c, c.req.param('id'));
    if (!interaction) return expired(c);
    const { ok, form } = await csrfOk(c, interaction);
    if (!ok) return csrfFailed(c, interaction);
    const username = typeof form.username === 'string' ? form.username.trim() : '';
    const password = typeof form.password === 'string' ? form.password : '';
    const ticked = remember && form.remember === '1';
    const again = async (error: string) =>
      loginPage(c, look, { action: `/interaction/${interaction.id}/login`, csrf: interaction.csrf, client: await client(interaction.clientId), error, username, remember, rememberTicked: ticked });
    // Guessing is bounded per address and per account (whatever the interaction) before any scrypt work is spent.
    const address = ctx.clientAddress(c);
    const account = username.toLowerCase();
    const byAddress = await addressFailures.consume(address);
    const byAccount = byAddress.allowed ? await accountAttempts.consume(account) : undefined;
    if (!byAddress.allowed || !byAccount?.allowed) {
      // Refused unchecked, so it taught nothing: it does not use up the address's budget.
      if (byAddress.allowed) await addressFailures.reward(address);
      const reason = !byAddress.allowed ? `too many failed sign-ins from ${address}` : `too many sign-in attempts for username=${username}`;
      ctx.audit.record({ at: ctx.now(), type: 'login.throttled', outcome: 'failure', clientId: interaction.clientId || undefined, error: 'slow_down', reason });
      return again(words.login.throttled);
    }
    const user = username ? await ctx.store.users.findByUsername(username) : undefined;
    // Always run scrypt, so a missing user takes as long as a wrong password.
    const valid = (await verifyPassword(password, user?.passwordHash ?? (await dummyHash()))) && user?.passwordHash !== undefined;
    if (!user || !valid) {
      ctx.audit.record({ at: ctx.now(), type: 'login.failed', outcome: 'failure', clientId: interaction.clientId || undefined, reason: `username=${username}` });
      await noteFailedSignIn(ctx, username);
      return again(words.login.wrongPassword);
    }
    await accountAttempts.reset(account);
    await addressFailures.reward(address);
    // With "Keep me signed in" offered, the browser gets its device id now: its sessions are then known as this browser's.
    const session = await startSession(ctx, c, user, { amr: ['pwd'], ...(ctx.config.remember_me.enabled ? { device: ensureDevice(ctx, c) } : {}) });
    await afterPasswordSignIn(ctx, c, user, session, ticked, interaction.clientId || undefined);
    ctx.audit.record({ at: ctx.now(), type: 'login.succeeded', outcome: 'success', clientId: interaction.clientId || undefined, sub: user.sub });
    await updateInteraction(ctx, { ...interaction, loggedIn: true });
    return c.redirect(`/interaction/${interaction.id}`, 303);
  });

  /** The common start of a POST made by a signed-in user: the interaction, the session, a checked form. */
  const signedInForm = async (c: Context) => {
    const interaction = await loadInteraction(ctx, c, c.req.param('id') ?? '');
    const session = await currentSession(ctx, c);
    if (!interaction || !session) return { refused: await expired(c, interaction && 'no signed-in session') };
    const { ok, form } = await csrfOk(c, interaction);
    if (!ok) return { refused: await csrfFailed(c, interaction) };
    return { interaction, session, form };
  };

  /** The user said no: end the interaction and tell the client `access_denied`. */
  const denied = async (c: Context, interaction: Interaction, why: string) => {
    await ctx.cache.delete(`interaction:${interaction.id}`);
    if (interaction.deviceCodeHash) {
      await settleDevice(ctx, interaction.deviceCodeHash, { status: 'denied' });
      return c.redirect('/device/done?denied=1', 303);
    }
    return c.redirect(errorRedirect(ctx, interaction, 'access_denied', why), 303);
  };

  app.post('/interaction/:id/agreement', async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    const { interaction, session, form } = step;
    const agreement = await pendingAgreement(ctx, interaction.acr, session.sub);
    if (!agreement) return c.redirect(`/interaction/${interaction.id}`, 303);
    const base = { at: ctx.now(), clientId: interaction.clientId, sub: session.sub, data: { agreement: agreement.id, version: agreement.version } };
    if (form.decision !== 'accept') {
      ctx.audit.record({ ...base, type: 'agreement.declined', outcome: 'failure', error: 'access_denied' });
      return denied(c, interaction, 'the user declined the agreement');
    }
    await ctx.store.agreements.accept({ sub: session.sub, agreementId: agreement.id, version: agreement.version, acceptedAt: ctx.now() });
    ctx.audit.record({ ...base, type: 'agreement.accepted', outcome: 'success' });
    return c.redirect(`/interaction/${interaction.id}`, 303);
  });

  app.post('/interaction/:id/consent', async (c) => {
    const step = await signedInForm(c);
    if (step.refused) return step.refused;
    const { interaction, session, form } = step;
    if (form.decision !== 'allow') {
      ctx.audit.record({ at: ctx.now(), type: 'consent.denied', outcome: 'failure', clientId: interaction.clientId, sub: session.sub, error: 'access_denied' });
      return denied(c, interaction, 'the user denied the request');
    }
    // High-risk scopes asked by an unverified client are granted only when ticked on the page (docs/pages.md).
    const ticked = new Set([form.high_risk ?? []].flat().filter((v): v is string => typeof v === 'string'));
    const needTick = await scopesNeedingTick(ctx, interaction);
    const declined = needTick.filter((s) => !ticked.has(s));
    const grantedScopes = interaction.scopes.filter((s) => !declined.includes(s));
    if (grantedScopes.length === 0 && interaction.scopes.length > 0) {
      // Allow with every box left empty grants nothing: no token for no permission.
      ctx.audit.record({
        at: ctx.now(),
        type: 'consent.denied',
        outcome: 'failure',
        clientId: interaction.clientId,
        sub: session.sub,
        error: 'access_denied',
        reason: `no permission granted: high-risk scopes not ticked (${formatScope(declined)})`,
      });
      return denied(c, interaction, 'the user granted no permission');
    }
    const previous = await ctx.store.consents.find(session.sub, interaction.clientId, interaction.resource);
    const scope = formatScope([...parseScope(previous?.scope), ...grantedScopes]);
    const highRiskTicked = formatScope([...parseScope(previous?.highRiskTicked), ...needTick.filter((s) => ticked.has(s))]);
    await ctx.store.consents.upsert({
      sub: session.sub,
      clientId: interaction.clientId,
      resource: interaction.resource,
      scope,
      ...(highRiskTicked ? { highRiskTicked } : {}),
      createdAt: ctx.now(),
    });
    ctx.audit.record({
      at: ctx.now(),
      type: 'consent.granted',
      outcome: 'success',
      clientId: interaction.clientId,
      sub: session.sub,
      data: { resource: interaction.resource, scope: formatScope(grantedScopes), ...(declined.length > 0 ? { scope_not_ticked: formatScope(declined) } : {}) },
    });
    return c.redirect(await completeAuthorization(ctx, c, { ...interaction, scopes: grantedScopes }, session), 303);
  });
}

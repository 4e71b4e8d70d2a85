import type { Context } from 'hono';
import { constantTimeEqual, randomToken } from '../../core/encoding.ts';
import type { AuditEvent, RememberedRecord } from '../../store/types.ts';
import type { ServerContext } from '../context.ts';
import { startSession, type Interaction, type Session } from '../interaction.ts';
import { deleteRememberCookie, deviceHash, ensureDevice, hasRememberCookie, readRememberCookie, setRememberCookie, tokenHash } from './cookies.ts';
import { builtInRiskEvaluator, type RiskAssessment, type RiskEvaluator, type RiskSignals } from './risk.ts';
import { history, requestContext, update } from './signals.ts';
import { endSessionsAndNotify } from '../sign-out.ts';

export type { RiskAssessment, RiskContext, RiskEvaluator, RiskLevel, RiskSignals } from './risk.ts';
export { builtInRiskEvaluator } from './risk.ts';

/**
 * "Keep me signed in", decided by risk (docs/browser-sessions.md). A password sign-in with the box
 * ticked sets the remember cookie only when its risk is low; a later visit without a session
 * presents it, the risk is judged again, and only a low risk signs the browser in silently, with a
 * new cookie value (the old one dies). Anything else deletes the cookie and shows the login page:
 * the password always works. Every decision is audited with its signals, score and reasons.
 */

/** The method a silent sign-in adds to the password sign-in's `amr`: the session was resumed, not re-proved. */
export const REMEMBERED_AMR = 'remembered';

/**
 * Seconds in which the value just rotated away may come back from the same device without
 * counting as theft: two tabs of one browser opening at once both send it (as refresh tokens
 * allow `tokens.refresh_reuse_grace`).
 */
export const ROTATION_GRACE_SECONDS = 10;

/** The sessions a remembered sign-in opened (their sids), ended if its cookie turns out stolen. */
const sessionsKey = (id: string) => `remembered-sessions:${id}`;
const MAX_TRACKED_SESSIONS = 50;

const evaluators = new WeakMap<ServerContext, RiskEvaluator>();

/** Replaces the built-in evaluator of this server (`startAuthServer(config, { riskEvaluator })`). */
export function useRiskEvaluator(ctx: ServerContext, evaluator: RiskEvaluator | undefined): void {
  if (evaluator) evaluators.set(ctx, evaluator);
}

const evaluatorOf = (ctx: ServerContext) => {
  let evaluator = evaluators.get(ctx);
  if (!evaluator) evaluators.set(ctx, (evaluator = builtInRiskEvaluator(ctx.config.remember_me.risk)));
  return evaluator;
};

/** How long an evaluator may take: a risk service that hangs must not hang the sign-in with it. */
export const EVALUATOR_TIMEOUT_MS = 3000;

/** Asks the evaluator; one that fails, hangs or answers nonsense counts as high risk (never a blocked sign-in). */
async function assess(ctx: ServerContext, signals: RiskSignals): Promise<RiskAssessment> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${EVALUATOR_TIMEOUT_MS} ms`)), EVALUATOR_TIMEOUT_MS);
    });
    const result = await Promise.race([Promise.resolve().then(() => evaluatorOf(ctx).evaluate(signals)), late]);
    if (!['low', 'medium', 'high'].includes(result?.level) || typeof result.score !== 'number') throw new Error('malformed assessment');
    return { score: result.score, level: result.level, reasons: Array.isArray(result.reasons) ? result.reasons.map(String) : [] };
  } catch (error) {
    ctx.log.warn({ err: error }, 'risk evaluator failed; treated as high risk');
    return { score: 100, level: 'high', reasons: ['evaluator_failed'] };
  } finally {
    clearTimeout(timer);
  }
}

/** What the audit event says about a decision: the signals, the score, the reasons. */
function auditData(signals: RiskSignals, assessment: RiskAssessment, extra: Record<string, unknown> = {}) {
  return {
    phase: signals.phase,
    score: assessment.score,
    level: assessment.level,
    reasons: assessment.reasons,
    signals: {
      device: signals.device,
      address_prefix: signals.current.addressPrefix,
      user_agent: signals.current.userAgent,
      ...(signals.current.country ? { country: signals.current.country } : {}),
      ...(signals.previous
        ? { previous: { address_prefix: signals.previous.addressPrefix, user_agent: signals.previous.userAgent, country: signals.previous.country, at: signals.previous.at } }
        : {}),
      recent_sign_ins: signals.recentSignIns,
      recent_failures: signals.recentFailures,
    },
    ...extra,
  };
}

const enabled = (ctx: ServerContext) => ctx.config.remember_me.enabled;

/** Counts a wrong password for the account, a signal of its next sign-ins (nothing when the feature is off). */
export async function noteFailedSignIn(ctx: ServerContext, username: string): Promise<void> {
  if (enabled(ctx) && username) await history(ctx).failed(username.toLowerCase());
}

/**
 * After a password sign-in: forgets this browser's previous remembered sign-in (the box decides
 * anew), judges the risk when the box is ticked, sets the cookie when it is low, and records this
 * sign-in as the account's last trusted context.
 */
export async function afterPasswordSignIn(ctx: ServerContext, c: Context, user: { sub: string; username: string }, session: Session, ticked: boolean, clientId?: string): Promise<void> {
  if (!enabled(ctx)) return;
  const previous = readRememberCookie(ctx, c);
  if (previous) {
    const record = await ctx.store.remembered.find(previous.id);
    if (record && constantTimeEqual(record.tokenHash, tokenHash(previous.token))) await ctx.store.remembered.delete(record.id);
    deleteRememberCookie(ctx, c);
  }
  const device = session.device ?? ensureDevice(ctx, c);
  const h = history(ctx);
  const current = requestContext(ctx, c);
  const signals: RiskSignals = {
    phase: 'sign_in',
    sub: user.sub,
    at: ctx.now(),
    current,
    previous: await h.last(user.sub),
    device: (await h.knowsDevice(user.sub, device)) ? 'known' : 'new',
    recentSignIns: await h.signedIn(user.sub),
    recentFailures: await h.recentFailures(user.username.toLowerCase()),
  };
  await h.trust(user.sub, device, current);
  if (!ticked) return;
  const assessment = await assess(ctx, signals);
  const base = { at: ctx.now(), clientId, sub: user.sub };
  if (assessment.level !== 'low') {
    ctx.audit.record({ ...base, type: 'remember_me.skipped', outcome: 'failure', reason: `risk ${assessment.level}: ${assessment.reasons.join(' ')}`, data: auditData(signals, assessment) });
    return;
  }
  const now = ctx.now();
  const token = randomToken(32);
  const record: RememberedRecord = {
    id: randomToken(16),
    sub: user.sub,
    tokenHash: tokenHash(token),
    deviceHash: device,
    authTime: session.authTime,
    amr: session.amr ?? ['pwd'],
    ...current,
    createdAt: now,
    lastUsedAt: now,
    expiresAt: now + ctx.config.remember_me.lifetime_days * 86_400,
  };
  await ctx.store.remembered.create(record);
  setRememberCookie(ctx, c, record.id, token, record.expiresAt);
  ctx.audit.record({ ...base, type: 'remember_me.set', outcome: 'success', data: auditData(signals, assessment, { remembered_id: record.id, expires_at: record.expiresAt }) });
}

export type Resumed = { session: Session } | { refused: true } | undefined;

/**
 * A browser without a session comes back: signs it in from its remember cookie when the risk is
 * low. `{ refused }`: the cookie was deleted, the login page says so; undefined: no cookie, or one
 * that does not apply here (`prompt=login`, `max_age` exceeded: the password is asked, as without it).
 */
export async function resumeRemembered(ctx: ServerContext, c: Context, interaction: Pick<Interaction, 'prompt' | 'maxAge' | 'clientId'>): Promise<Resumed> {
  if (!enabled(ctx)) return undefined;
  const cookie = readRememberCookie(ctx, c);
  if (!cookie) {
    // Not one this server wrote: dropped without a word.
    if (hasRememberCookie(ctx, c)) deleteRememberCookie(ctx, c);
    return undefined;
  }
  if (interaction.prompt.includes('login')) return undefined;
  const now = ctx.now();
  const clientId = interaction.clientId || undefined;
  const refuse = (event: Omit<AuditEvent, 'at' | 'outcome' | 'clientId'>): Resumed => {
    deleteRememberCookie(ctx, c);
    ctx.audit.record({ at: now, outcome: 'failure', clientId, ...event });
    return { refused: true };
  };
  const record = await ctx.store.remembered.find(cookie.id);
  if (!record || record.expiresAt <= now) {
    if (record) await ctx.store.remembered.delete(record.id);
    return refuse({ type: 'remember_me.refused', sub: record?.sub, reason: record ? 'expired' : 'unknown or forgotten', data: { remembered_id: cookie.id } });
  }
  if (interaction.maxAge !== undefined && now - record.authTime >= interaction.maxAge) return undefined;
  const device = deviceHash(ctx, c);
  const sameDevice = device !== undefined && constantTimeEqual(device, record.deviceHash);
  const presented = tokenHash(cookie.token);
  const current = constantTimeEqual(record.tokenHash, presented);
  // The value just rotated away, again from the same device, within seconds: a second tab, not a thief.
  const concurrent =
    !current && record.previousHash !== undefined && constantTimeEqual(record.previousHash, presented) && sameDevice && now - (record.rotatedAt ?? 0) <= ROTATION_GRACE_SECONDS;
  if (!current && !concurrent) {
    // A rotated (or never issued) value for a live record: someone kept an old copy. The record dies,
    // so neither the thief nor the user is signed in by it; the user signs in with the password.
    await ctx.store.remembered.delete(record.id);
    // Whoever used it first may be the thief: the sessions it opened end too (their grants revoked).
    const sids = (await ctx.cache.get<string[]>(sessionsKey(record.id))) ?? [];
    await ctx.cache.delete(sessionsKey(record.id));
    for (const sid of sids) await endSessionsAndNotify(ctx, record.sub, sid, { via: 'remember_reuse', revoke: 'session', audit: { remembered_id: record.id } });
    return refuse({ type: 'remember_me.reuse_detected', sub: record.sub, reason: 'a rotated remember cookie was presented again; the remembered sign-in is revoked', data: { remembered_id: record.id, same_device: sameDevice, sessions_ended: sids.length } });
  }
  const user = await ctx.store.users.findBySub(record.sub);
  if (!user) {
    await ctx.store.remembered.delete(record.id);
    return refuse({ type: 'remember_me.refused', sub: record.sub, reason: 'the user no longer exists', data: { remembered_id: record.id } });
  }
  const h = history(ctx);
  const context = requestContext(ctx, c);
  const signals: RiskSignals = {
    phase: 'use',
    sub: user.sub,
    at: now,
    current: context,
    previous: { addressPrefix: record.addressPrefix, userAgent: record.userAgent, country: record.country, at: record.lastUsedAt },
    device: sameDevice ? 'known' : 'mismatch',
    recentSignIns: await h.signedIn(user.sub),
    recentFailures: await h.recentFailures(user.username.toLowerCase()),
  };
  const assessment = await assess(ctx, signals);
  if (assessment.level !== 'low') {
    await ctx.store.remembered.delete(record.id);
    return refuse({ type: 'remember_me.refused', sub: user.sub, reason: `risk ${assessment.level}: ${assessment.reasons.join(' ')}`, data: auditData(signals, assessment, { remembered_id: record.id }) });
  }
  if (current) {
    const token = randomToken(32);
    // Lost to a concurrent use of the same value: that one rotated it; this browser signs in with the password.
    if (!(await ctx.store.remembered.rotate(record.id, record.tokenHash, { tokenHash: tokenHash(token), at: now, ...context }))) return undefined;
    setRememberCookie(ctx, c, record.id, token, record.expiresAt);
  }
  const session = await startSession(ctx, c, user, { amr: [...new Set([...record.amr, REMEMBERED_AMR])], authTime: record.authTime });
  await update<string[]>(ctx.cache, sessionsKey(record.id), ctx.config.tokens.session_ttl, (sids) => [...(sids ?? []), session.sid].slice(-MAX_TRACKED_SESSIONS));
  await h.trust(user.sub, record.deviceHash, context);
  ctx.audit.record({ at: now, type: 'remember_me.used', outcome: 'success', clientId, sub: user.sub, data: auditData(signals, assessment, { remembered_id: record.id, rotated: current }) });
  return { session };
}

/** Whom this browser's remember cookie signs in, if it is a live one (read only: nothing rotates). */
export async function rememberedSubject(ctx: ServerContext, c: Context): Promise<string | undefined> {
  if (!enabled(ctx)) return undefined;
  const cookie = readRememberCookie(ctx, c);
  const record = cookie && (await ctx.store.remembered.find(cookie.id));
  if (!record || record.expiresAt <= ctx.now() || !constantTimeEqual(record.tokenHash, tokenHash(cookie.token))) return undefined;
  return record.sub;
}

/** A remembered sign-in as the account page shows it (never its hashes; the admin API has its own snake_case view). */
export interface RememberedView {
  id: string;
  userAgent?: string;
  addressPrefix?: string;
  country?: string;
  createdAt: number;
  lastUsedAt: number;
  expiresAt: number;
  /** The browser asking (account page only). */
  thisBrowser?: boolean;
}

export const rememberedView = (r: RememberedRecord, thisId?: string): RememberedView => ({
  id: r.id,
  ...(r.userAgent ? { userAgent: r.userAgent } : {}),
  ...(r.addressPrefix ? { addressPrefix: r.addressPrefix } : {}),
  ...(r.country ? { country: r.country } : {}),
  createdAt: r.createdAt,
  lastUsedAt: r.lastUsedAt,
  expiresAt: r.expiresAt,
  ...(thisId === r.id ? { thisBrowser: true } : {}),
});

/** The signed-in user's remembered browsers, this one marked. */
export async function listRemembered(ctx: ServerContext, c: Context, sub: string): Promise<RememberedView[]> {
  const thisId = readRememberCookie(ctx, c)?.id;
  return (await ctx.store.remembered.listBySub(sub, ctx.now())).map((r) => rememberedView(r, thisId));
}

/**
 * Forgets remembered sign-ins (one by id, or all of the user's) and audits it as
 * `remember_me.forgotten` with who did it. Deletes this browser's cookie when it was among them.
 */
export async function forgetRemembered(
  ctx: Pick<ServerContext, 'store' | 'audit' | 'now'>,
  sub: string,
  by: 'user' | 'admin' | 'password_change' | 'sign_out',
  id?: string,
  extra: { c?: Context; server?: ServerContext; actor?: string } = {},
): Promise<number> {
  const count = id !== undefined ? Number(await ctx.store.remembered.delete(id, sub)) : await ctx.store.remembered.deleteBySub(sub);
  if (extra.c && extra.server) {
    const mine = readRememberCookie(extra.server, extra.c);
    if (mine && (id === undefined || mine.id === id)) deleteRememberCookie(extra.server, extra.c);
  }
  if (count > 0) ctx.audit.record({ at: ctx.now(), type: 'remember_me.forgotten', outcome: 'success', sub, data: { by, ...(id ? { remembered_id: id } : {}), count, ...(extra.actor ? { actor: extra.actor } : {}) } });
  return count;
}

/**
 * Signing out in this browser: forgets its remembered sign-in (only with its current token: a stale
 * or forged cookie deletes nothing) and deletes the cookie, so the next visit asks for the password.
 * For the sign-out endpoints (RP-initiated logout, the account page's "Sign out").
 */
export async function forgetThisBrowser(ctx: ServerContext, c: Context): Promise<void> {
  const cookie = readRememberCookie(ctx, c);
  if (!cookie) return;
  deleteRememberCookie(ctx, c);
  const record = await ctx.store.remembered.find(cookie.id);
  if (record && constantTimeEqual(record.tokenHash, tokenHash(cookie.token))) await forgetRemembered(ctx, record.sub, 'sign_out', record.id);
}

import { Secret, TOTP } from 'otpauth';
import type { ServerContext } from './context.ts';
import type { Limiter } from './limits.ts';
import { openTotpSecret, sealTotpSecret, totpSealKey } from './totp-seal.ts';

/**
 * TOTP (RFC 6238) as an optional second factor (docs/totp.md): a user enrols an authenticator app
 * at /account/security; the approval page then asks for a code instead of the password.
 *
 * The parameters are those every authenticator app assumes when an `otpauth://` URI names none:
 * HMAC-SHA-1, 6 digits, 30-second steps (RFC 6238 §4, §5.2; Google Authenticator's key URI
 * format). One step either side is accepted for clock drift (RFC 6238 §5.2 recommends at most
 * one). The `otpauth` library computes and compares the codes (crypto.timingSafeEqual in Node).
 */
export const TOTP_PARAMETERS = { algorithm: 'SHA1', digits: 6, period: 30, window: 1 } as const;

/** RFC 4226 §4 R6: a shared secret of at least 128 bits; 160 recommended. */
const SECRET_BYTES = 20;

const CODE = /^[0-9]{6}$/;

/** What a code was given for, in the audit log. */
export type TotpPurpose = 'verify' | 'confirm' | 'setup' | 'remove';

export type TotpCheck = { ok: true } | { ok: false; reason: TotpRefusal };
export type TotpRefusal =
  | 'too many attempts'
  | 'malformed code'
  | 'not enrolled'
  | 'secret unreadable'
  | 'wrong code'
  | 'code already used'
  | 'enrolment changed'
  | 'setup expired'
  | 'setup of another session';

/**
 * How long a setup may stay pending. Past it the pending secret confirms nothing: a setup
 * abandoned in a browser is no standing offer to whoever later holds that session.
 */
export const PENDING_TTL_SECONDS = 600;

/** Which session started the pending setup of a user, and with which (sealed) secret. */
interface SetupBinding {
  sid: string;
  secret: string;
}
const bindingKey = (sub: string) => `totp-setup:${sub}`;

export interface TotpStatus {
  state: 'none' | 'pending' | 'enrolled';
  enrolledAt?: number;
}

const limiters = new WeakMap<ServerContext, Limiter>();

/**
 * One-time codes tried per account, wherever they are tried: a session thief guessing on the
 * approval page and on the account page draws on one budget. Only a right code resets it: a
 * password, a sign-in or anything else that succeeds never does (passwords have their own limiter,
 * `login-account`), so knowing the password buys no extra guesses at the code.
 */
export function totpAttempts(ctx: ServerContext): Limiter {
  let limiter = limiters.get(ctx);
  if (!limiter) {
    limiter = ctx.limiter('totp-account', { points: ctx.config.limits.totp_per_account, perSeconds: ctx.config.limits.login_window_seconds });
    limiters.set(ctx, limiter);
  }
  return limiter;
}

/** Whether the user has confirmed a TOTP credential (a pending one does not count). */
export async function totpEnrolled(ctx: ServerContext, sub: string): Promise<boolean> {
  return (await ctx.store.totp.find(sub))?.confirmedAt !== undefined;
}

/**
 * Whether `code` is the user's current one-time code and not one already used: the accepted
 * time step is recorded atomically, so the same code (or an earlier one) is refused afterwards,
 * on every instance. A refusal is audited as `totp.refused` with its reason (never the code).
 *
 * @example
 * if (await totpEnrolled(ctx, session.sub) && !(await verifyTotp(ctx, session.sub, form.code))) refuse();
 */
export async function verifyTotp(ctx: ServerContext, sub: string, code: string): Promise<boolean> {
  return (await checkTotp(ctx, sub, code, 'verify')).ok;
}

/** `verifyTotp` with the reason of a refusal, for pages that tell throttling apart. */
export async function checkTotp(ctx: ServerContext, sub: string, code: string, purpose: TotpPurpose): Promise<TotpCheck> {
  const refuse = (reason: TotpRefusal) => refused(ctx, sub, purpose, reason);
  if (!(await totpAttempts(ctx).consume(sub)).allowed) return refuse('too many attempts');
  if (!CODE.test(code)) return refuse('malformed code');
  const record = await ctx.store.totp.find(sub);
  if (record?.confirmedAt === undefined) return refuse('not enrolled');
  const secret = readSecret(ctx, sub, record.secret);
  if (secret === undefined) return refuse('secret unreadable');
  const step = matchingStep(secret, code, ctx.now());
  if (step === undefined) return refuse('wrong code');
  if (!(await ctx.store.totp.useStep(sub, step))) return refuse('code already used');
  await totpAttempts(ctx).reset(sub);
  return { ok: true };
}

export async function totpStatus(ctx: ServerContext, sub: string): Promise<TotpStatus> {
  const record = await ctx.store.totp.find(sub);
  if (!record) return { state: 'none' };
  return record.confirmedAt === undefined ? { state: 'pending' } : { state: 'enrolled', enrolledAt: record.confirmedAt };
}

/** What the user copies into an authenticator app, shown once, in the answer to the setup request. */
export interface TotpSetup {
  secret: string;
  uri: string;
}

/**
 * Starts an enrolment for the session that asked (its password checked by the caller): a new
 * random secret, stored sealed and pending, bound to that session for `PENDING_TTL_SECONDS`.
 * Returns what to show, this once; undefined when a credential is confirmed already.
 */
export async function beginTotpEnrolment(ctx: ServerContext, session: { sub: string; sid: string; username: string }): Promise<TotpSetup | undefined> {
  const secret = new Secret({ size: SECRET_BYTES }).base32;
  const sealed = sealTotpSecret(totpSealKey(ctx.config), session.sub, secret);
  if (!(await ctx.store.totp.putPending({ sub: session.sub, secret: sealed, createdAt: ctx.now() }))) return undefined;
  // In the session cache, which lives as long as the binding needs (no column, no migration).
  const binding: SetupBinding = { sid: session.sid, secret: sealed };
  await ctx.cache.set(bindingKey(session.sub), binding, PENDING_TTL_SECONDS);
  const issuer = ctx.config.totp.issuer_label ?? ctx.config.branding.product_name;
  const uri = new TOTP({ issuer, label: session.username, secret: Secret.fromBase32(secret), ...parameters }).toString();
  return { secret, uri };
}

/**
 * Confirms the pending enrolment with a first code: only then is the user enrolled. Only the
 * session that started the setup may confirm it, within `PENDING_TTL_SECONDS`. Audited.
 */
export async function confirmTotpEnrolment(ctx: ServerContext, session: { sub: string; sid: string }, code: string): Promise<TotpCheck> {
  const sub = session.sub;
  const refuse = (reason: TotpRefusal) => refused(ctx, sub, 'confirm', reason);
  if (!(await totpAttempts(ctx).consume(sub)).allowed) return refuse('too many attempts');
  if (!CODE.test(code)) return refuse('malformed code');
  const record = await ctx.store.totp.find(sub);
  if (!record || record.confirmedAt !== undefined) return refuse('enrolment changed');
  if (ctx.now() - record.createdAt >= PENDING_TTL_SECONDS) return refuse('setup expired');
  const binding = await ctx.cache.get<SetupBinding>(bindingKey(sub));
  // No binding (the cache lost it) counts as another session's: start again.
  if (binding?.sid !== session.sid) return refuse('setup of another session');
  if (binding.secret !== record.secret) return refuse('enrolment changed');
  const secret = readSecret(ctx, sub, record.secret);
  if (secret === undefined) return refuse('secret unreadable');
  const step = matchingStep(secret, code, ctx.now());
  if (step === undefined) return refuse('wrong code');
  // Against the very secret checked: a "Set up" in another tab meanwhile replaced it.
  if (!(await ctx.store.totp.confirm(sub, record.secret, step, ctx.now()))) return refuse('enrolment changed');
  await totpAttempts(ctx).reset(sub);
  await ctx.cache.delete(bindingKey(sub));
  ctx.audit.record({ at: ctx.now(), type: 'totp.enrolled', outcome: 'success', sub });
  return { ok: true };
}

/**
 * Removes the user's TOTP credential (pending or confirmed). `how`: `totp` when the user proved a
 * current code (the only way a user removes a confirmed one), `cancel` for a pending setup, or
 * `admin` for a reset by an administrator (who is `by`): the way back for a lost phone.
 */
export async function removeTotp(ctx: ServerContext, sub: string, how: 'totp' | 'admin' | 'cancel', by?: string): Promise<boolean> {
  const removed = await ctx.store.totp.delete(sub);
  if (removed && how !== 'cancel') {
    ctx.audit.record({ at: ctx.now(), type: 'totp.removed', outcome: 'success', sub, data: { how, ...(by ? { by } : {}) } });
  }
  return removed;
}

const parameters = { algorithm: TOTP_PARAMETERS.algorithm, digits: TOTP_PARAMETERS.digits, period: TOTP_PARAMETERS.period };

/** The time step whose code `code` is, within the window around `now` (epoch seconds); undefined for none. */
function matchingStep(secret: string, code: string, now: number): number | undefined {
  const timestamp = now * 1000;
  const delta = TOTP.validate({ token: code, secret: Secret.fromBase32(secret), ...parameters, timestamp, window: TOTP_PARAMETERS.window });
  if (delta === null) return undefined;
  return TOTP.counter({ period: TOTP_PARAMETERS.period, timestamp }) + delta;
}

function readSecret(ctx: ServerContext, sub: string, sealed: string): string | undefined {
  const secret = openTotpSecret(totpSealKey(ctx.config), sub, sealed);
  // Never the secret in a log line: only that it did not open.
  if (secret === undefined) ctx.log.error({ sub }, 'a TOTP secret does not decrypt: the TOTP key changed (totp.key_env or data_dir/secrets/totp.key)');
  return secret;
}

function refused(ctx: ServerContext, sub: string, purpose: TotpPurpose, reason: TotpRefusal): TotpCheck {
  ctx.audit.record({ at: ctx.now(), type: 'totp.refused', outcome: 'failure', sub, error: reason === 'too many attempts' ? 'slow_down' : 'access_denied', reason, data: { purpose } });
  return { ok: false, reason };
}

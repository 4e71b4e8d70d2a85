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
export type TotpRefusal = 'too many attempts' | 'malformed code' | 'not enrolled' | 'secret unreadable' | 'wrong code' | 'code already used' | 'enrolment changed';

export interface TotpStatus {
  state: 'none' | 'pending' | 'enrolled';
  enrolledAt?: number;
}

const limiters = new WeakMap<ServerContext, Limiter>();

/**
 * Codes (and, on the removal form, passwords) tried per account, wherever they are tried: a
 * session thief guessing on the approval page and on the account page draws on one budget.
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

/** Starts an enrolment: a new random secret, stored sealed and pending. False when one is already confirmed. */
export async function beginTotpEnrolment(ctx: ServerContext, sub: string): Promise<boolean> {
  const secret = new Secret({ size: SECRET_BYTES }).base32;
  return ctx.store.totp.putPending({ sub, secret: sealTotpSecret(totpSealKey(ctx.config), sub, secret), createdAt: ctx.now() });
}

/** What the user copies into an authenticator app while the enrolment is pending. */
export async function pendingTotp(ctx: ServerContext, user: { sub: string; username: string }): Promise<{ secret: string; uri: string } | undefined> {
  const record = await ctx.store.totp.find(user.sub);
  if (!record || record.confirmedAt !== undefined) return undefined;
  const secret = readSecret(ctx, user.sub, record.secret);
  if (secret === undefined) return undefined;
  const issuer = ctx.config.totp.issuer_label ?? ctx.config.branding.product_name;
  const uri = new TOTP({ issuer, label: user.username, secret: Secret.fromBase32(secret), ...parameters }).toString();
  return { secret, uri };
}

/** Confirms the pending enrolment with a first code: only then is the user enrolled. Audited. */
export async function confirmTotpEnrolment(ctx: ServerContext, sub: string, code: string): Promise<TotpCheck> {
  const refuse = (reason: TotpRefusal) => refused(ctx, sub, 'confirm', reason);
  if (!(await totpAttempts(ctx).consume(sub)).allowed) return refuse('too many attempts');
  if (!CODE.test(code)) return refuse('malformed code');
  const record = await ctx.store.totp.find(sub);
  if (!record || record.confirmedAt !== undefined) return refuse('enrolment changed');
  const secret = readSecret(ctx, sub, record.secret);
  if (secret === undefined) return refuse('secret unreadable');
  const step = matchingStep(secret, code, ctx.now());
  if (step === undefined) return refuse('wrong code');
  // Against the very secret checked: a "Set up" in another tab meanwhile replaced it.
  if (!(await ctx.store.totp.confirm(sub, record.secret, step, ctx.now()))) return refuse('enrolment changed');
  await totpAttempts(ctx).reset(sub);
  ctx.audit.record({ at: ctx.now(), type: 'totp.enrolled', outcome: 'success', sub });
  return { ok: true };
}

/**
 * Removes the user's TOTP credential (pending or confirmed). `how`: what the user proved (their
 * password or a current code), or `admin` for a reset by an administrator (who is `by`).
 */
export async function removeTotp(ctx: ServerContext, sub: string, how: 'password' | 'totp' | 'admin' | 'cancel', by?: string): Promise<boolean> {
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

import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { randomToken } from '../../core/encoding.ts';
import type { ServerContext } from '../context.ts';
import { hashSecret } from '../hash.ts';

/**
 * The two cookies of "Keep me signed in". Over https their names carry the `__Host-` prefix
 * (RFC 6265bis §4.1.3.2: Secure, Path=/, no Domain), so no sibling subdomain can plant or shadow them.
 *
 * - the device cookie: a random id of this browser, set at a password sign-in while the feature is
 *   on, kept 400 days (the longest browsers keep one, RFC 6265bis §5.6.1). Its hash is what a
 *   remembered sign-in is bound to, and what "a device this account has used" means.
 * - the remember cookie: `<id>.<token>`, the record's id and a secret whose hash only the server keeps.
 */
const DEVICE_MAX_AGE = 400 * 86_400;

const https = (ctx: ServerContext) => ctx.issuer.startsWith('https://');
const name = (ctx: ServerContext, base: string) => (https(ctx) ? `__Host-${base}` : base);
export const deviceCookieName = (ctx: ServerContext) => name(ctx, 'mandate_device');
export const rememberCookieName = (ctx: ServerContext) => name(ctx, 'mandate_remember');

const options = (ctx: ServerContext, maxAge: number) => ({ path: '/', httpOnly: true, sameSite: 'Lax' as const, secure: https(ctx), maxAge });

/** This browser's device id hash, if it has a device cookie. */
export function deviceHash(ctx: ServerContext, c: Context): string | undefined {
  const value = getCookie(c, deviceCookieName(ctx));
  return value && /^[A-Za-z0-9_-]{20,100}$/.test(value) ? hashSecret(`device:${value}`) : undefined;
}

/** This browser's device id hash, giving it a device cookie first when it has none. */
export function ensureDevice(ctx: ServerContext, c: Context): string {
  const known = deviceHash(ctx, c);
  if (known) return known;
  const value = randomToken(24);
  setCookie(c, deviceCookieName(ctx), value, options(ctx, DEVICE_MAX_AGE));
  return hashSecret(`device:${value}`);
}

export const tokenHash = (token: string) => hashSecret(`remember:${token}`);

/** The remember cookie, split; undefined when absent or malformed. */
export function readRememberCookie(ctx: ServerContext, c: Context): { id: string; token: string } | undefined {
  const value = getCookie(c, rememberCookieName(ctx));
  const match = value ? /^([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{32,100})$/.exec(value) : null;
  return match ? { id: match[1]!, token: match[2]! } : undefined;
}

export const hasRememberCookie = (ctx: ServerContext, c: Context) => getCookie(c, rememberCookieName(ctx)) !== undefined;

export function setRememberCookie(ctx: ServerContext, c: Context, id: string, token: string, expiresAt: number) {
  setCookie(c, rememberCookieName(ctx), `${id}.${token}`, options(ctx, Math.max(1, expiresAt - ctx.now())));
}

export function deleteRememberCookie(ctx: ServerContext, c: Context) {
  deleteCookie(c, rememberCookieName(ctx), { path: '/', secure: https(ctx) });
}

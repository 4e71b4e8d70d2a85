import type { Context } from 'hono';
import { getConnInfo } from '@hono/node-server/conninfo';
import { isIP, type BlockList } from 'node:net';
import type { ServerContext } from '../context.ts';
import { clientAddress, trustedProxyList } from '../client-address.ts';
import { ipv6Groups } from '../network-guard.ts';
import type { TtlCache } from '../../store/types.ts';
import type { RiskContext } from './risk.ts';
import { userAgentFamily } from './user-agent.ts';

/**
 * The local signals of the built-in evaluator, read from the request and from a short history per
 * account kept in the short-lived cache (shared through Redis when configured): recent sign-ins,
 * recent wrong passwords, the devices that signed in, the last trusted context. Nothing here
 * needs a third-party service.
 */

const proxies = new WeakMap<ServerContext, BlockList>();
const trusted = (ctx: ServerContext) => {
  let list = proxies.get(ctx);
  if (!list) proxies.set(ctx, (list = trustedProxyList(ctx.config.trusted_proxies)));
  return list;
};

/** An address's IPv4 /24 or IPv6 /48 (an IPv4-mapped IPv6 address counts as IPv4). */
export function addressPrefix(address: string): string | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const text = mapped ? mapped[1]! : address;
  const family = isIP(text);
  if (family === 4) return `${text.split('.').slice(0, 3).join('.')}.0/24`;
  if (family === 6) return `${ipv6Groups(text).slice(0, 3).map((g) => g.toString(16)).join(':')}::/48`;
  return undefined;
}

/** The request's context: address prefix, browser family, and the country only when a trusted proxy says it. */
export function requestContext(ctx: ServerContext, c: Context): RiskContext {
  const list = trusted(ctx);
  const prefix = addressPrefix(clientAddress(c, list));
  const header = ctx.config.remember_me.risk.country_header;
  let country: string | undefined;
  if (header) {
    let peer: string | undefined;
    try {
      peer = getConnInfo(c).remote.address;
    } catch {
      peer = undefined;
    }
    const value = c.req.header(header)?.trim().toUpperCase();
    // Anyone can send the header; only a proxy we trust has written it.
    if (peer && isIP(peer) !== 0 && list.check(peer, isIP(peer) === 6 ? 'ipv6' : 'ipv4') && value && /^[A-Z0-9]{2}$/.test(value)) country = value;
  }
  return { ...(prefix ? { addressPrefix: prefix } : {}), userAgent: userAgentFamily(c.req.header('user-agent')), ...(country ? { country } : {}) };
}

const keys = {
  failures: (account: string) => `remember-failures:${account}`,
  signIns: (sub: string) => `remember-sign-ins:${sub}`,
  devices: (sub: string) => `remember-devices:${sub}`,
  last: (sub: string) => `remember-last:${sub}`,
};

/** Read-modify-write with compare-and-set, retried on a race (as the session index does). */
export async function update<T>(cache: TtlCache, key: string, ttl: number, change: (current: T | undefined) => T): Promise<T> {
  let next = change(undefined);
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await cache.get<T>(key);
    next = change(current);
    if (current === undefined ? await cache.add(key, next, ttl) : await cache.swap(key, current, next, ttl)) return next;
  }
  return next;
}

/** Appends `at` to a list of times, keeping those within `window`; returns how many are left. */
async function countEvent(cache: TtlCache, key: string, at: number, window: number, keep: number): Promise<number> {
  const list = await update<number[]>(cache, key, window, (current) => [...(current ?? []).filter((t) => t > at - window), at].slice(-keep));
  return list.length;
}

async function countWithin(cache: TtlCache, key: string, at: number, window: number): Promise<number> {
  return ((await cache.get<number[]>(key)) ?? []).filter((t) => t > at - window).length;
}

export interface History {
  /** Counts a wrong password for the account (its lowercased username). */
  failed(account: string): Promise<void>;
  recentFailures(account: string): Promise<number>;
  /** Counts a sign-in of the account; returns the sign-ins within the velocity window, this one included. */
  signedIn(sub: string): Promise<number>;
  knowsDevice(sub: string, deviceHash: string): Promise<boolean>;
  /** Remembers a trusted sign-in: its device and its context, the next sign-in's baseline. */
  trust(sub: string, deviceHash: string, context: RiskContext): Promise<void>;
  last(sub: string): Promise<(RiskContext & { at: number }) | undefined>;
}

/** At most this many devices per account are remembered as known (the oldest is forgotten). */
const MAX_DEVICES = 20;

export function history(ctx: ServerContext): History {
  const risk = ctx.config.remember_me.risk;
  const keepFor = ctx.config.remember_me.lifetime_days * 86_400;
  return {
    async failed(account) {
      await countEvent(ctx.cache, keys.failures(account), ctx.now(), risk.failed_attempts.window_seconds, risk.failed_attempts.max * 2);
    },
    recentFailures: (account) => countWithin(ctx.cache, keys.failures(account), ctx.now(), risk.failed_attempts.window_seconds),
    signedIn: (sub) => countEvent(ctx.cache, keys.signIns(sub), ctx.now(), risk.velocity.window_seconds, risk.velocity.max_sign_ins * 2),
    async knowsDevice(sub, deviceHash) {
      return ((await ctx.cache.get<string[]>(keys.devices(sub))) ?? []).includes(deviceHash);
    },
    async trust(sub, deviceHash, context) {
      await update<string[]>(ctx.cache, keys.devices(sub), keepFor, (current) => [...(current ?? []).filter((d) => d !== deviceHash), deviceHash].slice(-MAX_DEVICES));
      await ctx.cache.set(keys.last(sub), { ...context, at: ctx.now() }, keepFor);
    },
    last: (sub) => ctx.cache.get<RiskContext & { at: number }>(keys.last(sub)),
  };
}

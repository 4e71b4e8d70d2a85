import type { Context } from 'hono';
import { getConnInfo } from '@hono/node-server/conninfo';
import { BlockList, isIP } from 'node:net';
import { ipv6Groups } from './network-guard.ts';

/** Parses `trusted_proxies` entries: an address (`10.0.0.2`, `::1`) or a CIDR (`10.0.0.0/8`, `fd00::/8`). */
export function trustedProxyList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', prefix] = entry.split('/');
    const family = isIP(address);
    if (family === 0) throw new Error(`trusted_proxies: ${entry} is not an address or CIDR`);
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, type);
    else {
      const bits = Number(prefix);
      if (!/^\d+$/.test(prefix) || bits > (family === 6 ? 128 : 32)) throw new Error(`trusted_proxies: ${entry} has a bad prefix length`);
      list.addSubnet(address, bits, type);
    }
  }
  return list;
}

const familyOf = (address: string) => (isIP(address) === 6 ? 'ipv6' : 'ipv4');

function peerAddress(c: Context): string | undefined {
  try {
    return getConnInfo(c).remote.address;
  } catch {
    return undefined;
  }
}

/**
 * The address of the client behind a request. The TCP peer, unless it is a trusted proxy: then
 * `X-Forwarded-For` is read from the right (each proxy appends the address it saw), skipping
 * trusted proxies, and the first address that is not one is the client — entries further left
 * were written by the client itself and prove nothing. A malformed entry ends the walk at the
 * last address a trusted proxy vouched for.
 */
export function forwardedClient(peer: string, forwardedFor: string | undefined, trusted: BlockList): string {
  let client = peer;
  if (isIP(peer) === 0 || !trusted.check(peer, familyOf(peer))) return client;
  const hops = (forwardedFor ?? '').split(',').map((hop) => hop.trim()).filter(Boolean);
  for (const hop of hops.reverse()) {
    if (isIP(hop) === 0) break;
    client = hop;
    if (!trusted.check(hop, familyOf(hop))) break;
  }
  return client;
}

/** {@link forwardedClient} of a Hono request (Node server). */
export function clientAddress(c: Context, trusted: BlockList): string {
  const peer = peerAddress(c);
  return peer ? forwardedClient(peer, c.req.header('x-forwarded-for'), trusted) : 'unknown';
}

/**
 * The key a rate limit counts an address under: an IPv4 address as is, an IPv6 address by its
 * /64 (RFC 4291 §2.5.4: one subnet, usually one site; a host picks any of its 2^64 addresses at
 * will, so counting single addresses would count nothing). IPv4-mapped addresses count as IPv4.
 */
export function addressBucket(address: string): string {
  if (isIP(address) !== 6) return address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  return `${ipv6Groups(address)
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

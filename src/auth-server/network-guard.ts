import { BlockList, isIP } from 'node:net';
import { lookup } from 'node:dns/promises';

/**
 * Addresses a server-side fetch must never reach (SSRF guard): loopback, private, link-local,
 * carrier-grade NAT, unspecified, multicast and reserved ranges (RFC 6890 special-purpose registries).
 */
const blocked = new BlockList();
const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  blocked.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96],
  ['100::', 64],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  blocked.addSubnet(net, prefix, 'ipv6');
}

function normalize(address: string): { address: string; family: 'ipv4' | 'ipv6' } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return { address: mapped[1]!, family: 'ipv4' };
  return { address, family: isIP(address) === 6 ? 'ipv6' : 'ipv4' };
}

export function isLoopbackAddress(address: string): boolean {
  const { address: a, family } = normalize(address);
  return loopback.check(a, family);
}

export function isPublicAddress(address: string): boolean {
  const { address: a, family } = normalize(address);
  return !blocked.check(a, family);
}

export class BlockedAddressError extends Error {
  override name = 'BlockedAddressError';
}

/**
 * Resolves a host name and returns one address the caller may connect to, after checking every
 * address the name resolves to (a name with one private address is refused outright). Connecting
 * to the returned address, not re-resolving the name, defeats DNS rebinding.
 */
export async function resolvePublicAddress(hostname: string, options: { allowLoopback: boolean }): Promise<{ address: string; family: 4 | 6 }> {
  const host = hostname.replace(/^\[(.*)\]$/, '$1');
  const addresses = isIP(host) ? [{ address: host, family: isIP(host) as 4 | 6 }] : await lookup(host, { all: true, verbatim: true });
  if (addresses.length === 0) throw new BlockedAddressError(`${hostname} does not resolve`);
  for (const { address } of addresses) {
    const allowed = isPublicAddress(address) || (options.allowLoopback && isLoopbackAddress(address));
    if (!allowed) throw new BlockedAddressError(`${hostname} resolves to the non-public address ${address}`);
  }
  const first = addresses[0]!;
  return { address: first.address, family: first.family as 4 | 6 };
}

import { BlockList, isIP } from 'node:net';
import { lookup } from 'node:dns/promises';

/**
 * Addresses a server-side fetch must never reach (SSRF guard): loopback, private, link-local,
 * carrier-grade NAT, unspecified, documentation, multicast and reserved ranges, and every IPv6
 * range that tunnels or translates to an IPv4 address the guard could not see (RFC 6890 and the
 * IANA IPv4/IPv6 special-purpose address registries).
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
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  blocked.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  // IPv4-compatible addresses (RFC 4291 §2.5.5.1, deprecated), `::` and `::1` among them.
  ['::', 96],
  // Local-use NAT64 (RFC 8215): translates to whatever the operator's network holds.
  ['64:ff9b:1::', 48],
  // Discard-only (RFC 6666).
  ['100::', 64],
  // Teredo (RFC 4380) and the rest of the IETF protocol assignments block (RFC 2928).
  ['2001::', 23],
  // Documentation (RFC 3849).
  ['2001:db8::', 32],
  // 6to4 (RFC 3056, deprecated by RFC 7526): embeds an IPv4 address the guard would not check.
  ['2002::', 16],
  // Unique local (RFC 4193), site-local (RFC 3879, deprecated), link-local, multicast (RFC 4291).
  ['fc00::', 7],
  ['fec0::', 10],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  blocked.addSubnet(net, prefix, 'ipv6');
}
// The well-known NAT64 prefix (RFC 6052 §2.1) reaches the IPv4 address in its last 32 bits: it is
// as public as that address (an IPv6-only host behind DNS64 still fetches public documents).
const nat64 = new BlockList();
nat64.addSubnet('64:ff9b::', 96, 'ipv6');

/** The 16 bytes of an IPv6 address (with or without a dotted IPv4 tail), as 8 groups. */
export function ipv6Groups(address: string): number[] {
  let text = address;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right].map((g) => parseInt(g, 16));
}

function embeddedIpv4(address: string): string {
  const groups = ipv6Groups(address);
  const [hi, lo] = [groups[6]!, groups[7]!];
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

// Node's BlockList matches IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, any spelling) against
// the IPv4 rules, so mapped addresses need no case of their own.
const familyOf = (address: string) => (isIP(address) === 6 ? 'ipv6' : 'ipv4');

export function isLoopbackAddress(address: string): boolean {
  return isIP(address) !== 0 && loopback.check(address, familyOf(address));
}

export function isPublicAddress(address: string): boolean {
  if (isIP(address) === 0) return false;
  const family = familyOf(address);
  if (family === 'ipv6' && nat64.check(address, 'ipv6')) return isPublicAddress(embeddedIpv4(address));
  return !blocked.check(address, family);
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

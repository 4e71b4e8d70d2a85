import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { addressBucket, forwardedClient, trustedProxyList } from '../../src/auth-server/client-address.ts';
import { isPublicAddress } from '../../src/auth-server/network-guard.ts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

const trusted = trustedProxyList(['10.0.0.0/8', '127.0.0.1', 'fd00::/8']);
const isTrusted = (a: string) => isIP(a) !== 0 && trusted.check(a, isIP(a) === 6 ? 'ipv6' : 'ipv4');
const hop = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.constantFrom('10.0.0.7', '10.1.2.3', '127.0.0.1', 'fd00::5', 'unknown', '', ' ', '999.1.1.1', '[::1]', '1.2.3.4:80'),
  fc.string({ maxLength: 20 }),
);
const peer = fc.oneof(fc.constantFrom('127.0.0.1', '10.0.0.9', 'fd00::1', '::ffff:10.0.0.1'), fc.ipV4(), fc.ipV6());

/** Item 16: the client address behind trusted proxies, and the /64 buckets, on arbitrary input. */
describe('client address (fuzz)', () => {
  it('is the peer, or an X-Forwarded-For address a trusted hop vouched for; never a forged one past an untrusted hop', () => {
    fc.assert(
      fc.property(peer, fc.array(hop, { maxLength: 8 }), (from, hops) => {
        const header = hops.join(',');
        const client = forwardedClient(from, header, trusted);
        if (!isTrusted(from)) return client === from;
        const entries = header.split(',').map((h) => h.trim()).filter(Boolean);
        if (client !== from) assert.ok(entries.includes(client), `${client} is one of ${entries.join('|')}`);
        // Every entry to the right of the chosen one is a trusted proxy.
        const index = entries.lastIndexOf(client);
        if (client !== from) for (const right of entries.slice(index + 1)) assert.ok(isTrusted(right), `${right} right of ${client}`);
        assert.ok(isIP(client) !== 0);
        return true;
      }),
      { numRuns: RUNS },
    );
  });

  it('buckets IPv6 per /64 in any spelling; neighbours share a bucket, other /64s do not; nothing throws', () => {
    const group = fc.integer({ min: 0, max: 0xffff });
    const groups = fc.array(group, { minLength: 8, maxLength: 8 });
    const spell = (g: number[]) => g.map((n) => n.toString(16)).join(':');
    const compressed = (g: number[]) => new URL(`http://[${spell(g)}]/`).hostname.slice(1, -1);
    fc.assert(
      fc.property(groups, groups, (a, b) => {
        // The IPv4-mapped and IPv4-compatible spellings are IPv4 (or blocked) matters, not /64s.
        fc.pre(!(a[0] === 0 && a[1] === 0 && a[2] === 0 && a[3] === 0));
        const bucket = addressBucket(spell(a));
        assert.equal(addressBucket(compressed(a)), bucket, `${compressed(a)} vs ${spell(a)}`);
        assert.equal(addressBucket(spell([...a.slice(0, 4), ...b.slice(4)])), bucket, 'same /64');
        const other = [...a];
        other[3] = (a[3]! + 1) % 0x10000;
        assert.notEqual(addressBucket(spell(other)), bucket, 'next /64');
        return true;
      }),
      { numRuns: RUNS },
    );
    fc.assert(fc.property(fc.string({ maxLength: 60 }), (text) => typeof addressBucket(text) === 'string' && typeof isPublicAddress(text) === 'boolean'), { numRuns: RUNS });
  });
});

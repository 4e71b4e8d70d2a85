import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isPublicAddress } from '../../src/auth-server/network-guard.ts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

/** Item 15: an IPv4 address wrapped in IPv6 is never more public than the address itself. */
describe('SSRF guard (fuzz)', () => {
  const hex = (v4: string) => {
    const [a, b, c, d] = v4.split('.').map(Number) as [number, number, number, number];
    return `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  };

  it('judges the well-known NAT64 prefix and IPv4-mapped addresses by their IPv4 address, in any spelling', () => {
    fc.assert(
      fc.property(fc.ipV4(), (v4) => {
        const expected = isPublicAddress(v4);
        for (const wrapped of [`64:ff9b::${v4}`, `64:ff9b::${hex(v4)}`, `::ffff:${v4}`, `::ffff:${hex(v4)}`, `0:0:0:0:0:ffff:${hex(v4)}`, `64:ff9b:0:0:0:0:${hex(v4)}`]) {
          assert.equal(isPublicAddress(wrapped), expected, `${wrapped} vs ${v4}`);
        }
        return true;
      }),
      { numRuns: RUNS },
    );
  });

  it('refuses every address of the tunnelling and deprecated ranges, whatever the embedded IPv4 address', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 0xffff }), (v4, g) => {
        for (const address of [`::${v4}`, `::${hex(v4)}`, `2002:${hex(v4)}::${g.toString(16)}`, `2001:0:${hex(v4)}::${g.toString(16)}`, `64:ff9b:1::${hex(v4)}`, `fec0::${g.toString(16)}`]) {
          assert.equal(isPublicAddress(address), false, address);
        }
        return true;
      }),
      { numRuns: RUNS },
    );
  });

  it('never throws, and refuses what is not an address', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (text) => {
        const verdict = isPublicAddress(text);
        assert.equal(typeof verdict, 'boolean');
        return true;
      }),
      { numRuns: RUNS },
    );
    for (const text of ['', 'localhost', '1.2.3', '::g', '[::1]']) assert.equal(isPublicAddress(text), false, text);
  });
});

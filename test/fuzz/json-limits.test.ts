import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { JsonLimitError, parseJsonWithin } from '../../src/core/json-limits.ts';
import { counted } from './count.ts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

/** Nesting depth of a parsed value (the top-level value is depth 1 when it is an array or object). */
function depth(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + children.reduce<number>((deepest, child) => Math.max(deepest, depth(child)), 0);
}

const nonFinite = (value: unknown): boolean =>
  typeof value === 'number' ? !Number.isFinite(value) : typeof value === 'object' && value !== null && Object.values(value).some(nonFinite);

/** JSON texts, their mutations (a character dropped, swapped or inserted), brackets inside strings, and raw strings. */
const texts = fc.oneof(
  fc.json({ maxDepth: 8 }),
  fc.tuple(fc.json({ maxDepth: 8 }), fc.nat(), fc.constantFrom('', '"', '\\', '[', ']', '{', '}', ',', ':', '1e400', '-', ' ')).map(([text, at, insert]) => {
    const i = text.length === 0 ? 0 : at % text.length;
    return text.slice(0, i) + insert + text.slice(i + 1);
  }),
  fc.array(fc.constantFrom('[', ']', '{', '}', '"', '\\', '"a":', ',', '1', 'null', '"]"', '"\\"["'), { maxLength: 24 }).map((parts) => parts.join('')),
  fc.string({ maxLength: 40 }),
);

/**
 * The hand-written depth scan in `parseJsonWithin` against `JSON.parse` (the library it guards):
 * on every input it must parse exactly what `JSON.parse` parses, to the same value, unless the
 * value is deeper than the limit or holds a number that overflowed; and refuse as `syntax` exactly
 * what `JSON.parse` refuses.
 */
describe('fuzz: parseJsonWithin agrees with JSON.parse', () => {
  it('same value, same refusals, depth and range refused only when they are really exceeded', () => {
    fc.assert(
      fc.property(
        texts,
        fc.integer({ min: 1, max: 10 }),
        counted('json-limits differential', (text: string, maxDepth: number) => {
          let expected: { ok: true; value: unknown } | { ok: false };
          try {
            expected = { ok: true, value: JSON.parse(text) };
          } catch {
            expected = { ok: false };
          }
          let actual: { ok: true; value: unknown } | { ok: false; kind: string };
          try {
            actual = { ok: true, value: parseJsonWithin(text, { maxDepth }) };
          } catch (error) {
            assert.ok(error instanceof JsonLimitError, `only JsonLimitError is thrown, got ${String(error)}`);
            actual = { ok: false, kind: error.kind };
          }
          if (!expected.ok) {
            assert.equal(actual.ok, false, `JSON.parse refuses ${JSON.stringify(text)}`);
            // The depth scan may stop first on malformed text; it never accepts it.
            return;
          }
          const tooDeep = depth(expected.value) > maxDepth;
          const overflow = nonFinite(expected.value);
          if (!tooDeep && !overflow) {
            assert.equal(actual.ok, true, `accepted by JSON.parse within the limits: ${JSON.stringify(text)}`);
            assert.deepEqual(actual.ok && actual.value, expected.value);
          } else {
            assert.equal(actual.ok, false, `refused: ${JSON.stringify(text)}`);
            assert.equal(!actual.ok && actual.kind, tooDeep ? 'depth' : 'number_range');
          }
        }),
      ),
      { numRuns: RUNS },
    );
  });
});

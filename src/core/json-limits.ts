/**
 * JSON bodies from the network, parsed within limits. `JSON.parse` itself copes with deep nesting,
 * but everything after it that recurses — `JSON.stringify` in an audit writer, zod, structured
 * clone, CEL — throws a `RangeError` on ~10k levels, which turned bad input into 500s and lost
 * audit events. So nesting is bounded before parsing, by one linear scan that allocates nothing.
 * Runtime-neutral (no Node).
 */

export interface JsonLimits {
  /** Deepest nesting of arrays and objects; the top-level value is depth 1. */
  maxDepth: number;
}

export type JsonLimitFailure = 'syntax' | 'depth' | 'number_range';

/** Why a body was refused; `kind` picks the wire error, `message` goes to the audit log. */
export class JsonLimitError extends Error {
  constructor(
    readonly kind: JsonLimitFailure,
    message: string,
  ) {
    super(message);
    this.name = 'JsonLimitError';
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const LOWER_E = 0x65;
const UPPER_E = 0x45;
const MINUS = 0x2d;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/**
 * The deepest nesting in `text`, stopping as soon as it passes `limit`, and whether a number
 * literal could overflow a double (an exponent, or more digits than a double holds exactly).
 * Brackets inside strings do not count. Malformed text is left to `JSON.parse`.
 */
function scan(text: string, limit: number): { depth: number; bigNumbers: boolean } {
  let depth = 0;
  let deepest = 0;
  let bigNumbers = false;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === QUOTE) {
      // Skip the string, escapes included.
      for (i++; i < length; i++) {
        const inner = text.charCodeAt(i);
        if (inner === BACKSLASH) i++;
        else if (inner === QUOTE) break;
      }
    } else if (ch === OPEN_BRACE || ch === OPEN_BRACKET) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return { depth: deepest, bigNumbers };
      }
    } else if (ch === CLOSE_BRACE || ch === CLOSE_BRACKET) {
      depth--;
    } else if (ch === MINUS || (ch >= DIGIT_0 && ch <= DIGIT_9)) {
      const start = i;
      let exponent = false;
      for (; i + 1 < length; i++) {
        const next = text.charCodeAt(i + 1);
        if (next === LOWER_E || next === UPPER_E) exponent = true;
        else if (!((next >= DIGIT_0 && next <= DIGIT_9) || next === 0x2e || next === 0x2b || next === MINUS)) break;
      }
      // Without an exponent, only a literal of over 308 digits can overflow a double.
      if (exponent || i - start > 300) bigNumbers = true;
    }
  }
  return { depth: deepest, bigNumbers };
}

/** Whether any number in the value is not finite (a literal like 1e400 parses to Infinity). */
function hasNonFinite(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item === 'number') {
      if (!Number.isFinite(item)) return true;
    } else if (typeof item === 'object' && item !== null) {
      for (const child of Array.isArray(item) ? item : Object.values(item)) stack.push(child);
    }
  }
  return false;
}

/**
 * `JSON.parse` within `limits`. Also refuses number literals that overflow a double: they would
 * parse to Infinity here and be sent on as `null` (or read as a big number by another parser).
 *
 * @example
 * parseJsonWithin('{"a":[1]}', { maxDepth: 2 }); // { a: [1] }
 * parseJsonWithin('[[[]]]', { maxDepth: 2 });    // throws JsonLimitError, kind 'depth'
 */
export function parseJsonWithin(text: string, limits: JsonLimits): unknown {
  const { depth, bigNumbers } = scan(text, limits.maxDepth);
  if (depth > limits.maxDepth) throw new JsonLimitError('depth', `JSON nested deeper than ${limits.maxDepth} levels`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new JsonLimitError('syntax', `not JSON: ${(error as Error).message}`);
  }
  if (bigNumbers && hasNonFinite(value)) throw new JsonLimitError('number_range', 'a number is out of range (RFC 8259 §6)');
  return value;
}

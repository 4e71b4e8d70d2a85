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

const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;

/**
 * The deepest nesting in `text`, stopping as soon as it passes `limit`. Brackets inside strings do
 * not count; strings are skipped with `indexOf` (native), since most of a JSON body is strings.
 * Malformed text is left to `JSON.parse`.
 */
function depthOf(text: string, limit: number): number {
  let depth = 0;
  let deepest = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === QUOTE) {
      // The closing quote is the first one not escaped, i.e. after an even run of backslashes.
      let end = text.indexOf('"', i + 1);
      while (end > 0) {
        let slashes = 0;
        while (text.charCodeAt(end - 1 - slashes) === BACKSLASH) slashes++;
        if (slashes % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      if (end < 0) return deepest;
      i = end;
    } else if (ch === OPEN_BRACE || ch === OPEN_BRACKET) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (ch === CLOSE_BRACE || ch === CLOSE_BRACKET) {
      depth--;
    }
  }
  return deepest;
}

/**
 * Whether a number literal could overflow a double: an exponent of three digits or more, or over
 * 308 digits. Matches inside strings too, which only costs a walk over the parsed value.
 */
const MAYBE_HUGE_NUMBER = /[eE][+-]?\d{3}|\d{309}/;

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
  if (depthOf(text, limits.maxDepth) > limits.maxDepth) throw new JsonLimitError('depth', `JSON nested deeper than ${limits.maxDepth} levels`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new JsonLimitError('syntax', `not JSON: ${(error as Error).message}`);
  }
  if (MAYBE_HUGE_NUMBER.test(text) && hasNonFinite(value)) throw new JsonLimitError('number_range', 'a number is out of range (RFC 8259 §6)');
  return value;
}

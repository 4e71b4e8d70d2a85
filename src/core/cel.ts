import { parse } from '@marcbachmann/cel-js';
import { OAuthError } from './errors.ts';

/**
 * CEL (Common Expression Language) for claim mappings and policies. JSON values go in with their
 * integers as CEL `int` (BigInt) and come out as JSON again; an evaluation error is a policy
 * failure, never a crash.
 */
export interface CompiledExpression {
  source: string;
  evaluate(variables: Record<string, unknown>): unknown;
}

/**
 * Conversions of frozen objects, reused: a frozen object (e.g. the deep-frozen claims of a token
 * that is verified once and then served from a cache) cannot change, so it is converted once.
 */
const converted = new WeakMap<object, unknown>();

function toCel(value: unknown): unknown {
  if (typeof value === 'number') return Number.isInteger(value) ? BigInt(value) : value;
  if (!value || typeof value !== 'object') return value;
  const frozen = Object.isFrozen(value);
  if (frozen) {
    const hit = converted.get(value);
    if (hit !== undefined) return hit;
  }
  let result: unknown = value;
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = toCel(value[i]);
    result = out;
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    // A loop, not entries/filter/map/fromEntries: this runs on every policy evaluation.
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      const v = (value as Record<string, unknown>)[key];
      if (v === undefined) continue;
      // An own `__proto__` (JSON.parse makes one) stays an own property, as fromEntries keeps it.
      if (key === '__proto__') Object.defineProperty(out, key, { value: toCel(v), enumerable: true, writable: true, configurable: true });
      else out[key] = toCel(v);
    }
    result = out;
  }
  if (frozen) converted.set(value, result);
  return result;
}

/** Freezes a JSON value all the way down, so CEL can reuse its conversion (see `toCel`). */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

function fromCel(value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map(fromCel);
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), fromCel(v)]));
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromCel(v)]));
  }
  return value;
}

/** Parses once; throws a plain Error naming the expression when it does not parse (config time). */
export function compileExpression(source: string): CompiledExpression {
  let program: ReturnType<typeof parse>;
  try {
    program = parse(source);
  } catch (error) {
    throw new Error(`invalid CEL expression ${JSON.stringify(source)}: ${(error as Error).message.split('\n')[0]}`);
  }
  return {
    source,
    evaluate(variables) {
      try {
        return fromCel(program(toCel(variables) as Record<string, unknown>));
      } catch (error) {
        throw new OAuthError('server_error', 'a policy expression failed', {
          status: 500,
          reason: `CEL ${JSON.stringify(source)}: ${(error as Error).message.split('\n')[0]}`,
        });
      }
    },
  };
}

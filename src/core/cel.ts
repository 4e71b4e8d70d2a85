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

function toCel(value: unknown): unknown {
  if (typeof value === 'number') return Number.isInteger(value) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map(toCel);
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, toCel(v)]));
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

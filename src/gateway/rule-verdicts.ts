import type { CompiledExpression } from '../core/cel.ts';
import type { Principal } from './types.ts';

/**
 * The CEL variables a request brings of its own (filters/authorize.ts `celVariables`): the call, the
 * request path and method. Every other variable is the caller's (the token's claims, sub, client_id,
 * scopes, sub_profile, act: frozen with the principal, which is cached per token) or the route's.
 */
const REQUEST_VARIABLES = /\b(?:method|tool|args|path|http_method)\b/;

/**
 * Whether a rule's verdict depends on the caller alone. CEL cannot reach a variable without naming
 * it (there is no dynamic lookup of the activation), so a rule whose source never spells one of
 * the request's variable names — anywhere, string literals included — cannot read one. Such a rule
 * (`size(act) <= 1`, `client_id == 'banking-app'`, `'admin' in scopes`) gives every request of one
 * token the same verdict; CEL has no clock or randomness to make it differ.
 */
export function callerOnly(rule: CompiledExpression): boolean {
  return !REQUEST_VARIABLES.test(rule.source);
}

type Verdict = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Per rule: the verdicts of caller-only rules by principal, or null for a rule that reads the request. */
const verdicts = new WeakMap<CompiledExpression, WeakMap<Principal, Verdict> | null>();

/**
 * `rule.evaluate(variables())`, remembered per principal for a caller-only rule: a token's later
 * calls skip building the variables, converting them for CEL and evaluating (its error, if it had
 * one, is thrown again). The principal is the key, so a verdict lives as long as the token's
 * cached verification, and a route reload (new compiled rules) starts afresh.
 */
export function evaluateRule(rule: CompiledExpression, principal: Principal, variables: () => Record<string, unknown>): unknown {
  let cache = verdicts.get(rule);
  if (cache === undefined) {
    cache = callerOnly(rule) ? new WeakMap() : null;
    verdicts.set(rule, cache);
  }
  if (cache === null) return rule.evaluate(variables());
  let verdict = cache.get(principal);
  if (verdict === undefined) {
    try {
      verdict = { ok: true, value: rule.evaluate(variables()) };
    } catch (error) {
      verdict = { ok: false, error };
    }
    cache.set(principal, verdict);
  }
  if (!verdict.ok) throw verdict.error;
  return verdict.value;
}

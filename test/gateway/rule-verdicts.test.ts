import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileExpression, deepFreeze, type CompiledExpression } from '../../src/core/cel.ts';
import { principalOf } from '../../src/gateway/principal.ts';
import { callerOnly, evaluateRule } from '../../src/gateway/rule-verdicts.ts';
import type { Principal } from '../../src/gateway/types.ts';

function principal(claims: Record<string, unknown>, token = `token-${Math.random()}`): Principal {
  return principalOf(token, deepFreeze({ exp: 2_000_000_000, ...claims }))!;
}

/** A compiled rule that counts its evaluations. */
function counted(source: string): { rule: CompiledExpression; count: () => number } {
  const compiled = compileExpression(source);
  let evaluations = 0;
  return {
    rule: {
      source,
      evaluate(variables) {
        evaluations++;
        return compiled.evaluate(variables);
      },
    },
    count: () => evaluations,
  };
}

const variablesOf = (who: Principal, args: Record<string, unknown> = {}) => () => ({ ...who.cel, method: 'tools/call', tool: 'transfer', args, route: '/mcp', path: '/mcp', http_method: 'POST' });

describe('rule verdicts remembered per caller', () => {
  it('tells rules over the caller alone from rules that read the request (conservatively, by name)', () => {
    for (const source of ['size(act) <= 1', "client_id == 'banking-app'", "'admin' in scopes", 'claims.amr.exists(m, m == "mfa")', "sub_profile == 'user' && route == '/mcp'"]) {
      assert.equal(callerOnly(compileExpression(source)), true, source);
    }
    for (const source of ['args.amount < 100', "tool == 'transfer'", "method == 'tools/call'", "http_method == 'POST'", "path.startsWith('/mcp')", "'args' in scopes", 'has(args.to)']) {
      assert.equal(callerOnly(compileExpression(source)), false, source);
    }
  });

  it('evaluates a caller-only rule once per principal, and gives each principal its own verdict', () => {
    const { rule, count } = counted('size(act) <= 1');
    const direct = principal({ sub: 'alice' });
    const chained = principal({ sub: 'alice', act: { sub: 'agent-1', act: { sub: 'agent-2' } } });
    assert.equal(evaluateRule(rule, direct, variablesOf(direct)), true);
    assert.equal(evaluateRule(rule, direct, variablesOf(direct)), true);
    assert.equal(count(), 1, 'the second call of the same token is answered from memory');
    assert.equal(evaluateRule(rule, chained, variablesOf(chained)), false, 'another token: its own verdict');
    assert.equal(count(), 2);
  });

  it('evaluates a rule that reads the call on every request', () => {
    const { rule, count } = counted('args.amount < 100');
    const who = principal({ sub: 'alice' });
    assert.equal(evaluateRule(rule, who, variablesOf(who, { amount: 5 })), true);
    assert.equal(evaluateRule(rule, who, variablesOf(who, { amount: 500 })), false, 'a larger amount from the same token is refused');
    assert.equal(count(), 2);
  });

  it('throws a failed evaluation again, without evaluating again', () => {
    const { rule, count } = counted('claims.level > 2');
    const who = principal({ sub: 'alice' });
    assert.throws(() => evaluateRule(rule, who, variablesOf(who)), /policy expression failed/);
    assert.throws(() => evaluateRule(rule, who, variablesOf(who)), /policy expression failed/);
    assert.equal(count(), 1);
  });
});

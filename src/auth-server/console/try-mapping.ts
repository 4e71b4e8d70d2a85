import { compileExpression } from '../../core/cel.ts';
import { OAuthError } from '../../core/errors.ts';
import { PROTECTED_CLAIMS } from '../context.ts';

export interface TriedMapping {
  claim: string;
  expression: string;
  /** The value the claim would get (JSON), or null when the mapping removes it. */
  value?: string;
  error?: string;
}

export type TryResult = { error: string } | { results: TriedMapping[] };

/** The CEL variables a mapping sees when a token is issued (as `applyClaimMappings` builds them). */
const VARIABLES = ['subject', 'actor', 'client', 'user', 'request', 'token'];

const MAX_SAMPLE = 16_384;
const MAX_EXPRESSION = 2_000;

/**
 * "Try this mapping on a sample token": evaluates a resource's claim mappings (and, optionally, an
 * expression being drafted) with the CEL engine tokens are issued with. The sample is either the
 * variables themselves (`{"subject": …, "actor": …, "client": …, "user": …, "request": …, "token": …}`)
 * or one token's claims, from which they are made: the token is the subject token and the token
 * being issued, its `act` the actor, its `client_id` the client, its `sub` the user.
 */
export function tryMappings(definition: Record<string, unknown>, sample: string, draft: string): TryResult {
  if (sample.length > MAX_SAMPLE) return { error: `the sample is longer than ${MAX_SAMPLE} characters` };
  if (draft.length > MAX_EXPRESSION) return { error: `the expression is longer than ${MAX_EXPRESSION} characters` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(sample || '{}');
  } catch (error) {
    return { error: `the sample is not JSON: ${(error as Error).message}` };
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return { error: 'the sample must be a JSON object' };
  const variables = variablesOf(parsed as Record<string, unknown>, String(definition.id ?? ''));
  const claims = Object.entries((definition.claims as Record<string, string> | undefined) ?? {});
  if (draft.trim()) claims.push(['(your expression)', draft.trim()]);
  const results = claims.map(([claim, source]): TriedMapping => {
    if (PROTECTED_CLAIMS.has(claim)) return { claim, expression: source, error: 'a protected claim: a mapping may not set it' };
    try {
      const value = compileExpression(source).evaluate(variables);
      return { claim, expression: source, value: JSON.stringify(value === undefined ? null : value) };
    } catch (error) {
      const reason = error instanceof OAuthError ? (error.reason ?? error.message) : (error as Error).message;
      return { claim, expression: source, error: reason };
    }
  });
  return { results };
}

function variablesOf(sample: Record<string, unknown>, resource: string): Record<string, unknown> {
  if (Object.keys(sample).some((k) => VARIABLES.includes(k))) {
    return Object.fromEntries(VARIABLES.map((k) => [k, sample[k] ?? {}]));
  }
  const act = sample.act && typeof sample.act === 'object' ? sample.act : {};
  return {
    subject: sample,
    actor: act,
    client: { client_id: sample.client_id ?? null, agent: null },
    user: { sub: sample.sub ?? null },
    request: { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', scope: sample.scope ?? '', resource },
    token: { ...sample, aud: resource },
  };
}

/** A sample to start from: a user's token, passed on by an agent. */
export const SAMPLE_TOKEN = JSON.stringify(
  { sub: 'a1b2c3-user', client_id: 'sample-agent', scope: 'banking:read', act: { sub: 'sample-agent' }, may_act: { sub: 'mcp-server' } },
  null,
  2,
);

import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { ServerContext } from '../auth-server/context.ts';
import { callerAuditData, type Caller } from './caller.ts';
import { AdminError } from './errors.ts';
import { allows, scopesFor, type AdminAccess, type AdminArea } from './scopes.ts';

/** What admin operations need of the authorization server: named parts, not the whole context. */
export type AdminDeps = Pick<
  ServerContext,
  'config' | 'issuer' | 'store' | 'cache' | 'keys' | 'audit' | 'now' | 'refreshDisabled' | 'reloadResources' | 'checkResource' | 'agreement' | 'authenticationPolicy' | 'listAgreements' | 'listAuthenticationPolicies' | 'reloadSettings' | 'resource'
>;

/**
 * One admin operation (STYLE.md §13): its input and output schemas (which the OpenAPI document and
 * the MCP tools are generated from), the permission it needs, and what it does. `invoke` runs it:
 * validate, authorize, act, audit. No HTTP here.
 */
export interface Operation<I extends z.ZodType = z.ZodType, O extends z.ZodType = z.ZodType> {
  /** `<area>.<verb>`, e.g. `agents.update`; the audit event is `admin.<name>`. */
  name: string;
  area: AdminArea;
  access: AdminAccess;
  summary: string;
  input: I;
  output: O;
  /** Updates and deletes: the item as it is now, whose ETag an `If-Match` is compared with. */
  current?: (deps: AdminDeps, input: z.output<I>) => Promise<unknown>;
  /** What the audit event names: the client id it is about, extra data. */
  target?: (input: z.output<I>) => { clientId?: string; data?: Record<string, unknown> };
  run(deps: AdminDeps, input: z.output<I>, caller: Caller): Promise<z.output<O>>;
}

/**
 * Whether an operation may destroy or overwrite something (MCP's `destructiveHint`): every write
 * but those that only add (creating an item, adding a signing key).
 */
export const isDestructive = (op: Pick<Operation, 'name' | 'access'>) => op.access === 'write' && !op.name.endsWith('.create') && op.name !== 'keys.rotate';

export const defineOperation = <I extends z.ZodType, O extends z.ZodType>(op: Operation<I, O>): Operation<I, O> => op;

/** A strong ETag over an item's JSON (RFC 9110 §8.8.3): equal views, equal tags. */
export function etagOf(view: unknown): string {
  return `"${createHash('sha256').update(JSON.stringify(view)).digest('base64url').slice(0, 27)}"`;
}

/** RFC 9110 §13.1.1: `*`, or a list of tags one of which must match (weak tags never match). */
function ifMatchHolds(header: string, current: string): boolean {
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim() === current);
}

export function validationError(error: z.ZodError): AdminError {
  const issue = error.issues[0];
  const path = issue?.path.length ? issue.path.join('.') : '(input)';
  return new AdminError('invalid_request', `invalid input: ${path}: ${issue?.message ?? 'invalid'}`);
}

/**
 * Runs an operation for a caller. Every call leaves one audit event `admin.<name>` naming the
 * admin, the front end, the `act` chain and the request ids: refused (with the reason), failed,
 * or done.
 */
export async function invoke<I extends z.ZodType, O extends z.ZodType>(
  deps: AdminDeps,
  caller: Caller,
  op: Operation<I, O>,
  rawInput: unknown,
  options: { ifMatch?: string } = {},
): Promise<z.output<O>> {
  const base = { type: `admin.${op.name}`, sub: caller.sub };
  const record = (outcome: 'success' | 'failure', extra: { clientId?: string; error?: string; reason?: string; data?: Record<string, unknown> } = {}) =>
    deps.audit.record({ at: deps.now(), ...base, outcome, clientId: extra.clientId, error: extra.error, reason: extra.reason, data: { ...callerAuditData(caller), ...extra.data } });
  if (!allows(caller.scopes, op.area, op.access)) {
    const needed = scopesFor(op.area, op.access);
    const error = new AdminError('insufficient_scope', `${op.name} needs one of: ${needed.join(' ')}`, {
      scopes: needed,
      reason: `${caller.username} holds ${caller.scopes.join(' ') || 'no admin scope'}; ${op.name} needs one of ${needed.join(' ')}`,
    });
    record('failure', { error: error.code, reason: error.reason });
    throw error;
  }
  const parsed = op.input.safeParse(rawInput ?? {});
  if (!parsed.success) {
    const error = validationError(parsed.error);
    record('failure', { error: error.code, reason: error.message });
    throw error;
  }
  const input = parsed.data;
  const target = op.target?.(input) ?? {};
  try {
    if (options.ifMatch !== undefined && op.current) {
      const tag = etagOf(await op.current(deps, input));
      if (!ifMatchHolds(options.ifMatch, tag)) {
        throw new AdminError('precondition_failed', 'the item changed since it was read; read it again and retry', { reason: `If-Match ${options.ifMatch}, current ${tag}` });
      }
    }
    const result = await op.run(deps, input, caller);
    record('success', { clientId: target.clientId, data: target.data });
    return result;
  } catch (error) {
    if (error instanceof AdminError) record('failure', { clientId: target.clientId, error: error.code, reason: error.reason ?? error.message, data: target.data });
    throw error;
  }
}

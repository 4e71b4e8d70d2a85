import { z } from 'zod';
import { ADMIN_OPERATIONS, isDestructive, type Operation } from '../../admin/index.ts';
import { allows, scopesFor } from '../../admin/scopes.ts';
import type { Caller } from '../../admin/caller.ts';

/** MCP tool annotations (MCP 2025-06-18 `ToolAnnotations`). */
export interface ToolAnnotations {
  title: string;
  readOnlyHint: boolean;
  destructiveHint: boolean;
  idempotentHint: boolean;
  openWorldHint: boolean;
}

/** One admin MCP tool: an admin operation under an MCP name, with its JSON Schemas. */
export interface AdminTool {
  name: string;
  op: Operation;
  description: string;
  inputSchema: Record<string, unknown>;
  outputSchema?: Record<string, unknown>;
  annotations: ToolAnnotations;
}

/** Where a write tool may run: both switches and the token's scope must allow it. */
export interface WritePolicy {
  /** `admin.mcp.writes`. */
  writes: boolean;
  /** `admin.mcp.production`: refuses writes whatever `writes` says. */
  production: boolean;
}

/** `agents.update` → `agents_update`: MCP tool names keep to [A-Za-z0-9_-] for every client. */
export const toolName = (op: Pick<Operation, 'name'>) => op.name.replace(/\./g, '_');

/** Verbs whose repetition with the same input changes nothing more. */
const IDEMPOTENT = new Set(['update', 'delete', 'revoke']);

/** More than the operation's summary, for a model: how to phrase the questions the seeds ask. */
const HINTS: Record<string, string> = {
  'audit.query':
    'Times are ISO 8601 with an offset (2026-11-29T21:00:00Z, or +01:00 for local time): `since` is inclusive, `until` exclusive. ' +
    'Failed sign-ins between 21:00 and 23:00 yesterday: type "login.failed" (or decision "failure" and type "login.*"), since yesterday 21:00, until yesterday 23:00. ' +
    'Which agents acted for a user: subject = the user\'s sub (users_read gives it), type "token.issued"; client_id is the agent, data.act the chain. What an admin changed: actor = the admin\'s username, type "admin.*". ' +
    'Follow next_cursor for older events.',
  'transactions.list': 'Approvals waiting for a user: {"user": "<username>", "status": "pending"}. Refused or spent ones: status "denied" or "used". Follow next_cursor for older ones.',
  'reports.usage': 'Days are UTC dates (YYYY-MM-DD); "this week": from = 6 days ago, to = today.',
  'agents.update': 'To disable an agent: {"id": "<client_id>", "enabled": false}.',
};

/** A JSON Schema of a zod schema, as MCP wants it: an object schema without the dialect line. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> | undefined {
  try {
    const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
    return rest.type === 'object' ? rest : undefined;
  } catch {
    return undefined;
  }
}

function describe(op: Operation): string {
  const needs = scopesFor(op.area, op.access).join(', ');
  const kind =
    op.access === 'read'
      ? `Read-only. Needs one of the scopes ${needs}.`
      : `Write tool${isDestructive(op) ? ' (destructive)' : ''}: offered only where admin.mcp.writes is true and admin.mcp.production is not, to a token with one of the scopes ${needs}.`;
  return [op.summary, HINTS[op.name], kind, 'Audited as you.'].filter(Boolean).join(' ');
}

function toTool(op: Operation): AdminTool {
  const verb = op.name.split('.')[1]!;
  const read = op.access === 'read';
  const inputSchema = jsonSchema(op.input, 'input');
  if (!inputSchema) throw new Error(`admin operation ${op.name}: its input is not an object schema`);
  return {
    name: toolName(op),
    op,
    description: describe(op),
    inputSchema,
    outputSchema: jsonSchema(op.output, 'output'),
    annotations: {
      title: op.summary.split(/[.;:]/)[0]!.trim(),
      readOnlyHint: read,
      destructiveHint: isDestructive(op),
      idempotentHint: read || IDEMPOTENT.has(verb),
      openWorldHint: false,
    },
  };
}

/** Every admin operation as a tool, built once. */
export const ADMIN_TOOLS: readonly AdminTool[] = Object.values(ADMIN_OPERATIONS).map((op) => toTool(op as Operation));

const BY_NAME = new Map(ADMIN_TOOLS.map((t) => [t.name, t]));

export const findTool = (name: string) => BY_NAME.get(name);

/** Why writes are off on this server, or undefined when they are on. */
export function writesOff(policy: WritePolicy): string | undefined {
  if (policy.production) return 'admin.mcp.production is true: this is a production deployment, where the admin MCP server refuses every write';
  if (!policy.writes) return 'admin.mcp.writes is false: the admin MCP server is read-only (an operator can turn writes on in the configuration)';
  return undefined;
}

/**
 * Why a caller may not run a tool here, or undefined when it may: a write tool needs writes on
 * and a write scope for its area; a read tool a read scope.
 */
export function toolRefusal(tool: AdminTool, caller: Caller, policy: WritePolicy): { code: 'writes_disabled' | 'insufficient_scope'; message: string } | undefined {
  const { op } = tool;
  if (op.access === 'write') {
    const off = writesOff(policy);
    if (off) return { code: 'writes_disabled', message: `${tool.name} is a write tool; ${off}` };
  }
  if (!allows(caller.scopes, op.area, op.access)) {
    const needed = scopesFor(op.area, op.access);
    return { code: 'insufficient_scope', message: `${tool.name} needs one of the scopes ${needed.join(' ')}; your token holds ${caller.scopes.join(' ') || 'no admin scope'} (sign in again asking for one, as an admin whose roles allow it)` };
  }
  return undefined;
}

/** The tools a caller sees: those it may run here. */
export const visibleTools = (caller: Caller, policy: WritePolicy) => ADMIN_TOOLS.filter((t) => !toolRefusal(t, caller, policy));

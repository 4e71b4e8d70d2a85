import type { Context } from 'hono';
import type { GatewayAuditEvent } from '../types.ts';

/** JSON-RPC error codes the gateway answers with (docs/gateway.md lists them with their statuses). */
export const GATEWAY_ERRORS = {
  /** 401: no token, or a token that is not valid here. */
  unauthorized: -32001,
  /** 403: valid token, but a scope, a rule or the tool policy refuses the call. */
  forbidden: -32003,
  /** 429: a rate limit is exhausted. */
  rateLimited: -32029,
  /** 502/503/504: the upstream or the authorization server failed. */
  unavailable: -32603,
} as const;

export interface Refusal {
  status: number;
  code: number;
  message: string;
  /** Short machine-readable kind for the audit log and metrics, e.g. `invalid_token`. */
  rejection: string;
  /** Detail for the audit log only. */
  reason?: string;
  headers?: Record<string, string>;
  id?: string | number | null;
  decision?: 'deny' | 'error';
  /** JSON-RPC error `data` for the client (never the audit-only reason). */
  data?: Record<string, unknown>;
}

/** Answers with a JSON-RPC error body and records the refusal on the request's audit event. */
export function refuse(c: Context, refusal: Refusal): Response {
  const audit = c.get('audit' as never) as GatewayAuditEvent | undefined;
  if (audit) {
    audit.decision = refusal.decision ?? 'deny';
    audit.rejection = refusal.rejection;
    audit.reason = refusal.reason ?? refusal.message;
  }
  const id = refusal.id !== undefined ? refusal.id : ((c.get('mcp' as never) as { message?: { id?: string | number } } | undefined)?.message?.id ?? null);
  return c.json({ jsonrpc: '2.0', id, error: { code: refusal.code, message: refusal.message, ...(refusal.data ? { data: refusal.data } : {}) } }, refusal.status as 400, refusal.headers);
}

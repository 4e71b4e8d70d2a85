import type { Actor } from '../core/delegation.ts';

/** Which front end an admin operation came through. */
export type FrontEnd = 'api' | 'console' | 'mcp' | 'bootstrap';

/**
 * Who calls an admin operation: the admin (a user) and what their token allows. Front ends build
 * it from a verified token; the service layer trusts it and checks `scopes` only.
 */
export interface Caller {
  /** The admin's subject identifier. */
  sub: string;
  username: string;
  /** Admin scopes in force: the token's, narrowed to the user's current roles. */
  scopes: string[];
  /** The token's client (the console, an MCP client, curl's client). */
  clientId?: string;
  /** When an agent acts for the admin (a token exchange): the `act` chain, most recent actor first. */
  act?: Actor[];
  frontEnd: FrontEnd;
  /** Correlation for the audit log: the HTTP request id, the MCP session and request ids. */
  requestId?: string;
  sessionId?: string;
}

/** The caller's part of an audit event: who, through what, acting for whom. */
export function callerAuditData(caller: Caller): Record<string, unknown> {
  return {
    admin: caller.username,
    front_end: caller.frontEnd,
    ...(caller.clientId ? { via_client: caller.clientId } : {}),
    ...(caller.act && caller.act.length > 0 ? { act: caller.act.map((a) => a.sub) } : {}),
    ...(caller.requestId ? { request_id: caller.requestId } : {}),
    ...(caller.sessionId ? { session_id: caller.sessionId } : {}),
  };
}

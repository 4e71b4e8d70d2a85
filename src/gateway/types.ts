import type { Context, Next } from 'hono';
import type { Actor } from '../core/delegation.ts';
import type { McpRequestContext } from './filters/validate.ts';
import type { TokenClaims } from './token-validator.ts';

/** Who is calling: the validated token, read once by the protection filter. */
export interface Principal {
  token: string;
  claims: TokenClaims;
  sub: string;
  clientId?: string;
  scopes: string[];
  /** The `act` chain as a list, most recent actor first (RFC 8693 §4.1). */
  actors: Actor[];
  /** The caller's part of the CEL variables, deep-frozen (converted for CEL once per token). */
  cel: Readonly<Record<string, unknown>>;
  /** What the audit event records of the caller (scope, act), made at the token's first use. */
  audited?: { scope: string; act?: GatewayAuditEvent['act'] };
}

/**
 * One audit event per MCP message (docs/gateway.md documents every field). Filled in as the
 * request moves through the chain; written once, when the response is complete.
 */
export interface GatewayAuditEvent {
  time: string;
  request_id: string;
  route: string;
  http_method: string;
  /** Web routes (kind: web): the request path, and the gateway's own step if it was one. */
  path?: string;
  web?: 'signin_started' | 'signed_in' | 'signed_out' | 'backchannel_logout' | 'refreshed';
  protocol_version?: string;
  session?: string;
  kind?: 'request' | 'notification' | 'response';
  method?: string;
  jsonrpc_id?: string | number;
  tool?: string;
  /** Replaced by `args_sha256` when written: arguments are hashed, never logged. */
  arguments?: Record<string, unknown>;
  args_sha256?: string;
  /** Set when the event could not be written in full (it is written anyway, with this reason). */
  audit_error?: string;
  sub?: string;
  client_id?: string;
  act?: { sub: string; client_id?: string }[];
  scope?: string;
  /** allow: forwarded; deny: refused by a filter; error: the upstream failed. */
  decision: 'allow' | 'deny' | 'error';
  /** The filter that refused, or the upstream failure, e.g. `invalid_token`, `tool_denied`, `upstream_timeout`. */
  rejection?: string;
  reason?: string;
  status: number;
  upstream_status?: number;
  /** A route with several upstreams: the one the request went to (absent when the gateway answered itself or fanned out). */
  upstream?: string;
  /** The JSON-RPC outcome of a request: `result` or `error`, with the code and the tool's `isError`. */
  outcome?: 'result' | 'error';
  jsonrpc_error?: number;
  is_error?: boolean;
  latency_ms: number;
  upstream_latency_ms?: number;
  /**
   * Calls of tools that need approval (issue 14): `required` (a transaction was created and the
   * client told to get it approved), `pending` (retried before the user decided), `granted` (the AS
   * marked the approval used: forwarded once), `refused` (denied, expired, used, another action).
   */
  approval?: 'required' | 'pending' | 'granted' | 'refused';
  /** The transaction id at the authorization server. */
  approval_id?: string;
  /** How the approval came: in the token (RFC 9396 `authorization_details`). Absent: the retried call. */
  approval_via?: 'authorization_details';
  /**
   * Token mediation with `mediation.dpop`: the upstream answered 401 `use_dpop_nonce` (RFC 9449
   * §9) and the request was sent once more with a proof carrying the nonce it gave.
   */
  upstream_dpop_nonce?: 'retried';
  /**
   * tools/list on a route with tool pinning (docs/gateway.md "Tool pinning"): the tools whose
   * definition is not the approved one (`new`, `changed`; `unavailable` when the AS could not be
   * asked and no approved hash is known), those removed from the answer (`hidden`), and the
   * injection heuristic's flags per tool (`flagged`; never blocks). Absent when all is pinned.
   */
  tool_pins?: { new?: string[]; changed?: string[]; unavailable?: string[]; hidden?: string[]; flagged?: Record<string, string[]>; reason?: string };
  /** tools/call on a route with tool pinning: the verdict of the tool's definition, when it is not approved. */
  tool_pin?: 'new' | 'changed' | 'unknown' | 'unavailable';
}

export interface GatewayVariables {
  mcp: McpRequestContext;
  audit: GatewayAuditEvent;
  principal: Principal;
  /** What the upstream gets as Authorization, if anything (token mediation). */
  upstreamAuthorization: string | undefined;
  /** The gateway's DPoP proof for the upstream request (token mediation with `mediation.dpop`). */
  upstreamDpop: string | undefined;
  /** Takes the upstream's `DPoP-Nonce` for the next proofs to it (token mediation with `mediation.dpop`). */
  upstreamDpopNonce: ((nonce: string) => void) | undefined;
  /** A new proof for the same upstream request, carrying `nonce` (remembered too): the retry after a 401 `use_dpop_nonce`. */
  upstreamDpopRetry: ((nonce: string) => Promise<string>) | undefined;
  /** Resolves when the response has been fully sent (the audit event is written then). */
  finished: Promise<void> | undefined;
  /** Set when the result must be changed on its way back (a filtered `tools/list`). */
  rewriteResult: ((result: unknown) => unknown) | undefined;
  /** Headers every response carries (CORS), also those the proxy writes itself. */
  responseHeaders: Record<string, string>;
}

export interface GatewayEnv {
  Variables: GatewayVariables;
}

/**
 * A filter of a route's chain (src/gateway/chain.ts): a Hono middleware that may also answer or pass
 * on synchronously. A filter with nothing to wait for returns `next()` (or its refusal) as it is,
 * without an async function's promise around it: the chain runs one per request per filter, and
 * each such promise costs microtasks on the hot path (docs/gateway.md "Performance").
 */
export type GatewayFilter = (c: Context<GatewayEnv>, next: Next) => Promise<Response | void> | Response | void;

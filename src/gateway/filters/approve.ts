import type { Context, MiddlewareHandler } from 'hono';
import { actionHash, pickBound } from '../../core/action-hash.ts';
import { ApprovalMemory, ApprovalStoreUnavailable, displayDetails, renderSummary, retryKey, type ApprovalStore, type PendingApproval } from '../approvals.ts';
import { JSON_RPC_ERRORS, PROTOCOL_WITH_SESSIONS, usesStandardHeaders, type McpMessage } from '../mcp-message.ts';
import { STATE_PREFIX, type StateBinding } from '../request-state.ts';
import type { CompiledApproval, CompiledApprovals, CompiledRoute } from '../route.ts';
import { TransactionNotCreated, TransactionsUnavailable } from '../transactions.ts';
import type { GatewayEnv } from '../types.ts';
import { celVariables } from './authorize.ts';
import { GATEWAY_ERRORS, refuse } from './refuse.ts';

/**
 * MCP 2025-11-25, basic/index "Error codes": URL elicitation required. The client shows the URL
 * (client/elicitation, URL mode) and may retry the request once the user is done there.
 */
export const URL_ELICITATION_REQUIRED = -32042;

/** The key the 2026-07-28 answer names its one input request by; the retry answers under it. */
const INPUT_KEY = 'approval';

/** The AS's `/use` refusals (issue 14 contract) → the audit rejection and what the client is told. */
const REFUSALS: Record<string, { rejection: string; told: string }> = {
  transaction_denied: { rejection: 'approval_denied', told: 'the approval of this call was denied' },
  transaction_expired: { rejection: 'approval_expired', told: 'the approval of this call expired before it was used' },
  transaction_used: { rejection: 'approval_used', told: 'the approval of this call has already been used' },
  transaction_mismatch: { rejection: 'approval_mismatch', told: 'the approval was given for another call' },
};

/** RFC 9396 §2: the authorization details type the AS puts in a token for an approved transaction (docs/high-risk-actions.md). */
export const MCP_TOOL_CALL = 'mcp_tool_call';
const TRANSACTION_ID = /^[A-Za-z0-9_-]{1,200}$/;

/**
 * The transactions a token carries approved for exactly this call: `authorization_details` entries
 * of type `mcp_tool_call` naming this route's resource, this tool and this arguments hash. Entries
 * of other types or shapes are not this filter's and are ignored.
 */
export function approvedInToken(details: unknown, call: { resource: string; tool: string; argumentsHash: string }): string[] {
  if (!Array.isArray(details)) return [];
  const ids: string[] = [];
  for (const entry of details as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { type, transaction_id: id, resource, tool, arguments_hash: hash } = entry as Record<string, unknown>;
    if (type !== MCP_TOOL_CALL || typeof id !== 'string' || !TRANSACTION_ID.test(id)) continue;
    if (resource === call.resource && tool === call.tool && hash === call.argumentsHash && !ids.includes(id)) ids.push(id);
  }
  return ids;
}

/** The 2026-07-28 retry fields that are the gateway's, not the upstream's: removed before forwarding. */
function ownState(message: McpMessage): string | undefined {
  const state = message.params?.requestState;
  return typeof state === 'string' && state.startsWith(STATE_PREFIX) ? state : undefined;
}

function withoutOwnState(body: string): string {
  const json = JSON.parse(body) as { params: Record<string, unknown> };
  const { requestState: _state, inputResponses, ...params } = json.params;
  if (inputResponses && typeof inputResponses === 'object' && !Array.isArray(inputResponses)) {
    const { [INPUT_KEY]: _answer, ...others } = inputResponses as Record<string, unknown>;
    if (Object.keys(others).length > 0) params.inputResponses = others;
  }
  return JSON.stringify({ ...json, params });
}

/** Whether this call needs approval: no `when`, or `when` not false. A failing `when` needs it (fail closed). */
function applies(approval: CompiledApproval, variables: () => Record<string, unknown>): boolean {
  if (!approval.when) return true;
  try {
    return approval.when.evaluate(variables()) !== false;
  } catch {
    return true;
  }
}

export interface ApproveOptions {
  /** Pending approvals; one process's memory by default (Redis on Node with REDIS_URL). */
  store?: ApprovalStore;
}

/**
 * The approval filter (issue 14): a call of a tool marked `approval` — allowed by its scopes and
 * rules, and the `when` condition true — is not forwarded until the user has approved exactly that
 * call at the authorization server. The gateway creates the transaction with the caller's token
 * and answers in the form the caller's protocol revision knows (a URL elicitation, an
 * `input_required` result, or a 403 challenge). The retried call (the same route, caller, chain,
 * tool and bound arguments, or the 2026-07-28 `requestState`) is let through once the AS has
 * turned the approval into `used` — with `retry_check`; the AS is the one place that decides,
 * atomically, so two gateways cannot both spend one approval.
 *
 * A token may also carry the approval (RFC 9396 `authorization_details`, type `mcp_tool_call`,
 * issued by the AS for an approved transaction). When an entry names this call's resource, tool
 * and arguments hash, the call is let through once: the approval is claimed in the store (first
 * use wins among the gateways sharing it, Redis `SET NX`), then recorded at the AS with `/use` —
 * so the AS's view stays right, and neither a gateway with another store nor a plain retry can
 * spend it again. A claimed approval is refused `approval_used`; an entry for another call is
 * ignored (the call needs its own approval).
 */
export function approveCalls(route: CompiledRoute, options: ApproveOptions = {}): MiddlewareHandler<GatewayEnv> {
  const store = options.store ?? new ApprovalMemory();
  return async function approveMiddleware(c, next) {
    const message = c.get('mcp').message;
    const settings = route.approvals;
    if (!settings || message?.kind !== 'request' || message.method !== 'tools/call') return next();
    const name = message.toolName!;
    const approval = route.tools.get(name)?.approval;
    const principal = c.get('principal');
    if (!approval || !applies(approval, () => celVariables(c, route, principal))) return next();
    // Several issuers: approvals are asked of the first issuer, with the caller's token. Another
    // issuer's token is never sent there (docs/gateway.md "Several authorization servers").
    const issuer = route.validator.issuerOf(principal.claims);
    if (issuer !== route.validator.issuers[0]) {
      return refuse(c, { status: 403, code: GATEWAY_ERRORS.forbidden, message: 'this call needs an approval that tokens of this issuer cannot get here', rejection: 'approval_issuer', reason: `the token's issuer ${String(issuer?.issuer)} is not the approvals issuer ${route.validator.issuers[0]!.issuer}` });
    }

    const audit = c.get('audit');
    const args = message.arguments ?? {};
    let hash: string;
    try {
      hash = await actionHash(name, args, approval.binds);
    } catch (error) {
      return refuse(c, { status: 400, code: JSON_RPC_ERRORS.invalidParams, message: 'the arguments of this call cannot be approved (they have no canonical JSON form)', rejection: 'malformed', reason: (error as Error).message });
    }
    const key = await retryKey(route.config.path, principal, name, hash);
    const binding: StateBinding = [route.config.path, principal.sub, principal.clientId ?? ''];
    const unavailable = (reason: string) =>
      refuse(c, { status: 503, code: GATEWAY_ERRORS.unavailable, message: 'temporarily_unavailable: approvals cannot be checked now; retry shortly', rejection: 'approval_unavailable', reason, decision: 'error', headers: { 'Retry-After': '5' } });

    try {
      // The approval in the token, for exactly this call: checked first, it needs no held call.
      const carried = approvedInToken(principal.claims.authorization_details, { resource: route.config.resource, tool: name, argumentsHash: hash });
      if (carried.length > 0) {
        audit.approval_via = 'authorization_details';
        // The mark lives as long as the token that could present it again.
        const ttlMs = Math.max(1_000, (typeof principal.claims.exp === 'number' ? principal.claims.exp * 1000 : Date.now()) - Date.now());
        let claimed: string | undefined;
        for (const id of carried) {
          if (await store.claim(id, ttlMs)) {
            claimed = id;
            break;
          }
        }
        audit.approval_id = claimed ?? carried[0];
        if (claimed === undefined) {
          audit.approval = 'refused';
          return refuse(c, {
            status: 403,
            code: GATEWAY_ERRORS.forbidden,
            message: 'the approval this token carries has already been used: the call was not made; make it again with your usual token to ask for a new approval',
            rejection: 'approval_used',
            reason: `authorization_details: transaction ${carried.join(', ')} already used at a gateway`,
          });
        }
        let outcome: Awaited<ReturnType<typeof settings.client.use>>;
        try {
          outcome = await settings.client.use(claimed, principal.token, hash);
        } catch (error) {
          // The AS recorded nothing we know of and nothing was forwarded: a later try may claim it again (the AS still decides once).
          await Promise.resolve(store.release(claimed)).catch(() => undefined);
          throw error;
        }
        if (outcome.status === 'used') {
          // A call held earlier for this approval is no longer waiting.
          await Promise.resolve(store.forget(key)).catch(() => undefined);
          audit.approval = 'granted';
          return next();
        }
        audit.approval = 'refused';
        const refusal = outcome.status === 'refused' ? outcome : { error: 'transaction_pending', description: undefined };
        const known = REFUSALS[refusal.error];
        return refuse(c, {
          status: 403,
          code: GATEWAY_ERRORS.forbidden,
          message: `${known?.told ?? 'the approval of this call was refused'}: the call was not made; make it again with your usual token to ask for a new approval`,
          rejection: known?.rejection ?? 'approval_refused',
          reason: `authorization_details: transaction ${claimed}: ${refusal.error}${refusal.description ? ` (${refusal.description})` : ''}`,
        });
      }

      // A retry: the 2026-07-28 state names its transaction; otherwise the remembered one, if any.
      const state = ownState(message);
      let pending: PendingApproval | undefined;
      if (state !== undefined) {
        const opened = await settings.states.open(binding, state);
        if (opened === 'invalid') {
          audit.approval = 'refused';
          return refuse(c, { status: 403, code: GATEWAY_ERRORS.forbidden, message: 'the requestState of this call is not valid: make the call again without it', rejection: 'approval_state_invalid', reason: 'requestState with a wrong MAC or shape (tampered, or issued to another caller or route)' });
        }
        pending = opened;
      } else {
        pending = await store.recall(key);
      }

      if (pending && settings.retryCheck) {
        const outcome = await settings.client.use(pending.id, principal.token, hash);
        audit.approval_id = pending.id;
        // Once /use has answered, forgetting the held call is best effort: the approval is spent or
        // refused either way, and a key left behind only makes the next identical call ask /use again.
        const forget = () => Promise.resolve(store.forget(key)).catch(() => undefined);
        if (outcome.status === 'used') {
          await forget();
          audit.approval = 'granted';
          if (state !== undefined) c.set('mcp', { ...c.get('mcp'), body: withoutOwnState(c.get('mcp').body!) });
          return next();
        }
        if (outcome.status === 'pending') return answer(c, settings, binding, pending, renderSummary(approval.summary, name, args, pickBound(args, approval.binds ?? Object.keys(args))), 'pending');
        await forget();
        audit.approval = 'refused';
        const known = REFUSALS[outcome.error];
        return refuse(c, {
          status: 403,
          code: GATEWAY_ERRORS.forbidden,
          message: `${known?.told ?? 'the approval of this call was refused'}: the call was not made; make it again to ask for a new approval`,
          rejection: known?.rejection ?? 'approval_refused',
          reason: `transaction ${pending.id}: ${outcome.error}${outcome.description ? ` (${outcome.description})` : ''}`,
        });
      }

      // A new transaction for this call.
      const details = pickBound(args, approval.binds ?? Object.keys(args));
      const summary = renderSummary(approval.summary, name, args, details);
      const created = await settings.client.create({ subjectToken: principal.token, tool: name, argumentsHash: hash, summary, details: displayDetails(details) as Record<string, unknown>, lifetimeSeconds: approval.lifetimeSeconds });
      const fresh: PendingApproval = { id: created.id, url: created.approvalUri, expiresAt: created.expiresAt };
      const ttlMs = Math.min(approval.lifetimeSeconds * 1000, Math.max(0, created.expiresAt * 1000 - Date.now()));
      // Remembered for the retry check. Two identical calls at once each created one: both are sent
      // to the one remembered first (the other is never shown again and expires).
      const kept = ttlMs > 0 && settings.retryCheck ? await store.remember(key, fresh, ttlMs) : fresh;
      audit.approval_id = kept.id;
      return answer(c, settings, binding, kept, summary, 'required');
    } catch (error) {
      if (error instanceof TransactionsUnavailable || error instanceof ApprovalStoreUnavailable) return unavailable(error.message);
      if (error instanceof TransactionNotCreated) {
        return refuse(c, { status: 403, code: GATEWAY_ERRORS.forbidden, message: 'this call needs an approval, and the authorization server refused to start one', rejection: 'approval_not_started', reason: error.message });
      }
      throw error;
    }
  };
}

/**
 * The answer to a call held for approval, nothing forwarded: MCP 2025-11-25 gets a URL elicitation
 * error (-32042); 2026-07-28 and later an `input_required` result with the elicitation and the
 * state to echo; earlier revisions and plain HTTP clients a 403 challenge naming the page.
 */
async function answer(c: Context<GatewayEnv>, settings: CompiledApprovals, binding: StateBinding, pending: PendingApproval, summary: string, kind: 'required' | 'pending'): Promise<Response> {
  const mcp = c.get('mcp');
  const id = mcp.message?.id ?? null;
  const audit = c.get('audit');
  audit.decision = 'deny';
  audit.rejection = 'approval_required';
  audit.reason = `approval required: transaction ${pending.id} ${kind === 'required' ? 'created' : 'still pending'}`;
  audit.approval = kind;
  audit.approval_id = pending.id;
  const elicitation = { mode: 'url', elicitationId: pending.id, url: pending.url, message: summary };
  if (mcp.protocolVersion === PROTOCOL_WITH_SESSIONS) {
    return c.json({ jsonrpc: '2.0', id, error: { code: URL_ELICITATION_REQUIRED, message: 'This call needs your approval: open the link', data: { elicitations: [elicitation] } } }, 200);
  }
  if (usesStandardHeaders(mcp.protocolVersion)) {
    const requestState = await settings.states.seal(binding, pending);
    return c.json({ jsonrpc: '2.0', id, result: { resultType: 'input_required', inputRequests: { [INPUT_KEY]: { method: 'elicitation/create', params: elicitation } }, requestState } }, 200);
  }
  return c.json(
    { jsonrpc: '2.0', id, error: { code: GATEWAY_ERRORS.forbidden, message: `This call needs your approval: open ${pending.url}, approve, then make the same call again`, data: { approval_uri: pending.url } } },
    403,
    // The URL came through `new URL().href` and has no quote or backslash (transactions.ts): it cannot leave the quoted string.
    { 'WWW-Authenticate': `Bearer error="insufficient_authorization", approval_uri="${pending.url}"` },
  );
}

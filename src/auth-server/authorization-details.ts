import { z } from 'zod';
import { OAuthError } from '../core/errors.ts';
import { transactionStatus, type TransactionRecord } from '../store/types.ts';
import type { ServerContext } from './context.ts';
import type { Params } from './params.ts';
import { REFUSAL_DESCRIPTIONS, auditData, type TransactionRefusal } from './transactions.ts';

/**
 * Rich Authorization Requests (RFC 9396) at the token endpoint: a client names approved
 * transactions (docs/high-risk-actions.md, "RAR: the approval in the token") and gets an access
 * token that carries each approved action, for a gateway to let that one call through once.
 *
 * One type is known, `mcp_tool_call`. The request names only the transaction; the token gets the
 * action from the transaction record (resource, tool, arguments hash), never from the client.
 */

/** RFC 9396 §2: the type this server defines (docs/high-risk-actions.md). */
export const MCP_TOOL_CALL = 'mcp_tool_call';
export const AUTHORIZATION_DETAILS_TYPES = [MCP_TOOL_CALL] as const;

/** The parameter's JSON, as sent: a few transactions' worth, never a document. */
const MAX_PARAMETER_CHARS = 4096;
/** Approvals one token may carry. */
const MAX_ENTRIES = 8;

/** What a client asks for: the type and the transaction id, nothing else (RFC 9396 §5: unknown fields are refused). */
const requestedEntry = z.strictObject({
  type: z.literal(MCP_TOOL_CALL),
  transaction_id: z.string().regex(/^[A-Za-z0-9_-]{1,200}$/),
});
const typed = z.looseObject({ type: z.string().min(1).max(200) });

/** What the issued token and the token response carry for one approved transaction. */
export interface McpToolCallDetail {
  type: typeof MCP_TOOL_CALL;
  transaction_id: string;
  resource: string;
  tool: string;
  arguments_hash: string;
}

const invalid = (description: string, reason?: string) => new OAuthError('invalid_authorization_details', description, reason ? { reason: `authorization_details: ${reason}` } : {});

/**
 * The `authorization_details` parameter: a JSON array (RFC 9396 §2) of `mcp_tool_call` entries,
 * each a distinct transaction. Absent or empty → undefined. Anything else → `invalid_authorization_details`.
 */
export function requestedDetails(params: Params): { transactionIds: string[] } | undefined {
  const raw = params.get('authorization_details');
  if (raw === undefined) return undefined;
  if (raw.length > MAX_PARAMETER_CHARS) throw invalid(`authorization_details is longer than ${MAX_PARAMETER_CHARS} characters`);
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw invalid('authorization_details is not JSON');
  }
  if (!Array.isArray(json)) throw invalid('authorization_details must be a JSON array (RFC 9396 §2)');
  if (json.length === 0) throw invalid('authorization_details is empty');
  if (json.length > MAX_ENTRIES) throw invalid(`authorization_details has more than ${MAX_ENTRIES} entries`);
  const ids: string[] = [];
  for (const [index, entry] of json.entries()) {
    const kind = typed.safeParse(entry);
    if (!kind.success) throw invalid(`authorization_details[${index}] must be an object with a type`);
    if (kind.data.type !== MCP_TOOL_CALL) throw invalid(`authorization_details type ${JSON.stringify(kind.data.type).slice(0, 60)} is not supported`, `unknown type at [${index}]`);
    const parsed = requestedEntry.safeParse(entry);
    if (!parsed.success) throw invalid(`authorization_details[${index}] of type ${MCP_TOOL_CALL} takes a transaction_id and nothing else`);
    if (ids.includes(parsed.data.transaction_id)) throw invalid(`authorization_details names transaction ${parsed.data.transaction_id} twice`);
    ids.push(parsed.data.transaction_id);
  }
  return { transactionIds: ids };
}

/** Who the token about to be issued is for: its user, client, `act` chain (subjects, most recent first) and audience. */
export interface IssuedBinding {
  sub: string;
  clientId: string;
  act: string[];
  resource: string;
}

export interface GrantedDetails {
  details: McpToolCallDetail[];
  transactions: TransactionRecord[];
  /** The token ends no later than the first of its transactions (epoch seconds). */
  notAfter: number;
}

const refusalOf = { pending: 'transaction_pending', denied: 'transaction_denied', expired: 'transaction_expired', used: 'transaction_used' } as const;

/**
 * The transactions a token may carry: each exists, is this user's, was created for exactly the
 * client, chain and resource of the token being issued, and is approved (not used, not expired).
 * The binding is compared before the status, so another user's transaction reveals nothing.
 * `trace` (the grant's audit data) gets the ids asked for.
 */
export async function grantDetails(ctx: ServerContext, requested: { transactionIds: string[] }, binding: IssuedBinding, trace: Record<string, unknown>): Promise<GrantedDetails> {
  trace.authorization_details = requested.transactionIds;
  const now = ctx.now();
  const transactions: TransactionRecord[] = [];
  for (const id of requested.transactionIds) {
    const tx = await ctx.store.transactions.find(id);
    if (!tx || tx.sub !== binding.sub) {
      throw invalid('no such transaction for this user', `transaction ${id} ${tx ? `is of sub=${tx.sub}, token sub=${binding.sub}` : 'is unknown'}`);
    }
    const mismatch =
      tx.clientId !== binding.clientId
        ? `token client_id=${binding.clientId}, transaction client_id=${tx.clientId}`
        : tx.act.join(' ') !== binding.act.join(' ')
          ? `token act chain [${binding.act.join(', ')}], transaction act chain [${tx.act.join(', ')}]`
          : tx.resource !== binding.resource
            ? `token resource ${binding.resource}, transaction resource ${tx.resource}`
            : undefined;
    if (mismatch) throw refused(tx, 'transaction_mismatch', mismatch);
    const status = transactionStatus(tx, now);
    if (status !== 'approved') throw refused(tx, refusalOf[status], `the transaction is ${status}`);
    transactions.push(tx);
  }
  return {
    transactions,
    details: transactions.map((tx) => ({ type: MCP_TOOL_CALL, transaction_id: tx.id, resource: tx.resource, tool: tx.tool, arguments_hash: tx.argumentsHash })),
    notAfter: Math.min(...transactions.map((tx) => tx.expiresAt)),
  };
}

function refused(tx: TransactionRecord, refusal: TransactionRefusal, reason: string): OAuthError {
  return invalid(`${refusal}: ${REFUSAL_DESCRIPTIONS[refusal]}`, `transaction ${tx.id}: ${refusal}: ${reason}`);
}

/** The transactions' own trail: a token carrying each was issued (the call itself is `transaction.used`, at the gateway's /use). */
export function auditDetailsIssued(ctx: ServerContext, granted: GrantedDetails, token: { jti: string; grantType: string; clientId: string; exp: number }): void {
  for (const tx of granted.transactions) {
    ctx.audit.record({
      at: ctx.now(),
      type: 'transaction.token_issued',
      outcome: 'success',
      clientId: token.clientId,
      sub: tx.sub,
      data: auditData(tx, { jti: token.jti, grant_type: token.grantType, token_exp: token.exp }),
    });
  }
}

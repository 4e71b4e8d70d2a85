import { randomToken } from '../core/encoding.ts';
import { actorChain } from '../core/delegation.ts';
import { OAuthError } from '../core/errors.ts';
import type { AccessTokenClaims } from '../core/jwt.ts';
import { transactionStatus, type TransactionRecord, type TransactionStatus } from '../store/types.ts';
import type { ServerContext } from './context.ts';
import { lookupToken } from './token-lookup.ts';

/**
 * Transactions: one high-risk tool call waiting for its user's approval (docs/high-risk-actions.md).
 * The operations here are what the HTTP endpoints (`endpoints/transactions.ts`) and the approval
 * page (`endpoints/approve.ts`) call: they validate, act, and audit; the adapters only translate.
 */

/** Lifetimes in seconds: five minutes unless asked otherwise, never more than fifteen. */
export const TRANSACTION_LIFETIME = { default: 300, max: 900 } as const;
/** What a summary may hold: one line a person reads on the approval page. */
export const SUMMARY_MAX_CHARS = 200;
/** The bound arguments shown on the page: a handful of fields, a few kilobytes at most. */
const DETAILS_MAX_FIELDS = 32;
const DETAILS_MAX_CHARS = 4096;
const TOOL_MAX_CHARS = 200;
/** base64url(SHA-256(…)) without padding: 43 characters (src/core/action-hash.ts). */
const ARGUMENTS_HASH = /^[A-Za-z0-9_-]{43}$/;
/**
 * What the approval page must not print: controls (C0, C1), format characters — the bidirectional
 * overrides and isolates that reorder what the page shows, zero-width characters that hide part of
 * it — line separators and lone surrogates. A Mandate gateway shows them as `\u{…}` before it sends a summary or details.
 */
const CONTROL = /[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/u;

/** The first hidden character in a details value or name at any depth, with where it is. */
function hiddenIn(value: unknown, path: string): string | undefined {
  const found = (text: string, where: string) => {
    const char = CONTROL.exec(text)?.[0];
    return char === undefined ? undefined : `${where} contains U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
  };
  if (typeof value === 'string') return found(value, path);
  if (typeof value !== 'object' || value === null) return undefined;
  for (const [name, item] of Object.entries(value)) {
    const where = Array.isArray(value) ? `${path}[${name}]` : `${path}.${name}`;
    const hidden = (Array.isArray(value) ? undefined : found(name, `${path} field name ${JSON.stringify(name.slice(0, 40))}`)) ?? hiddenIn(item, where);
    if (hidden) return hidden;
  }
  return undefined;
}

/** Why a transaction cannot be used (the `error` of a 409; STYLE §5: generic code, reason in the audit log). */
export type TransactionRefusal = 'transaction_pending' | 'transaction_denied' | 'transaction_expired' | 'transaction_used' | 'transaction_mismatch';

export const REFUSAL_DESCRIPTIONS: Record<TransactionRefusal, string> = {
  transaction_pending: 'the user has not approved this call yet',
  transaction_denied: 'the user denied this call',
  transaction_expired: 'the approval has expired',
  transaction_used: 'this approval has already been used',
  transaction_mismatch: 'this approval is for another call, user or agent',
};

const refusalOf: Record<Exclude<TransactionStatus, 'approved'>, TransactionRefusal> = {
  pending: 'transaction_pending',
  denied: 'transaction_denied',
  expired: 'transaction_expired',
  used: 'transaction_used',
};

/** Whether a configured client may ask for approvals (`transactions: allowed`; default denied). */
export function mayRequestTransactions(ctx: ServerContext, clientId: string): boolean {
  return [...ctx.config.clients, ...ctx.config.agents].some((client) => client.client_id === clientId && client.transactions === 'allowed');
}

export const approvalUri = (ctx: ServerContext, id: string) => ctx.url(`/approve/${encodeURIComponent(id)}`);

/** The JSON a caller sees (GET and the answer of a use). */
export function transactionView(ctx: ServerContext, tx: TransactionRecord) {
  return {
    id: tx.id,
    status: transactionStatus(tx, ctx.now()),
    tool: tx.tool,
    resource: tx.resource,
    arguments_hash: tx.argumentsHash,
    summary: tx.summary,
    act: tx.act,
    expires_at: tx.expiresAt,
    approval_uri: approvalUri(ctx, tx.id),
    ...(tx.decidedAt !== undefined ? { decided_at: tx.decidedAt } : {}),
    ...(tx.usedAt !== undefined ? { used_at: tx.usedAt } : {}),
  };
}

/** What the audit log says of a transaction: enough to find it by agent, tool or id. */
export function auditData(tx: TransactionRecord, extra: Record<string, unknown> = {}) {
  return { transaction_id: tx.id, requested_by: tx.requestedBy, resource: tx.resource, tool: tx.tool, arguments_hash: tx.argumentsHash, act: tx.act, ...extra };
}

/** The caller's access token, active and ours; anything else is `invalid_request` (as a token exchange's subject token). */
export async function subjectToken(ctx: ServerContext, token: unknown): Promise<AccessTokenClaims> {
  if (typeof token !== 'string' || token === '') throw new OAuthError('invalid_request', 'subject_token is required');
  const found = await lookupToken(ctx, token, 'access_token');
  if (found?.kind !== 'access_token') throw new OAuthError('invalid_request', 'the subject token is invalid, expired or revoked', { reason: 'subject_token is not an active access token of this issuer' });
  return found.claims;
}

const chainOf = (claims: AccessTokenClaims) => actorChain(claims.act).map((actor) => actor.sub);
const audienceOf = (claims: AccessTokenClaims) => (Array.isArray(claims.aud) ? String(claims.aud[0]) : claims.aud);

function text(value: unknown, name: string, max: number): string {
  if (typeof value !== 'string' || value.trim() === '') throw new OAuthError('invalid_request', `${name} is required`);
  if ([...value].length > max) throw new OAuthError('invalid_request', `${name} is longer than ${max} characters`);
  if (CONTROL.test(value)) throw new OAuthError('invalid_request', `${name} contains control, format or bidirectional characters`);
  return value;
}

export function argumentsHash(value: unknown): string {
  if (typeof value !== 'string' || !ARGUMENTS_HASH.test(value)) throw new OAuthError('invalid_request', 'arguments_hash must be base64url(SHA-256), 43 characters');
  return value;
}

function details(value: unknown): Record<string, unknown> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw new OAuthError('invalid_request', 'details must be a JSON object');
  const fields = Object.keys(value);
  if (fields.length > DETAILS_MAX_FIELDS) throw new OAuthError('invalid_request', `details has more than ${DETAILS_MAX_FIELDS} fields`);
  if (fields.some((f) => f === '' || f.length > 100 || CONTROL.test(f))) throw new OAuthError('invalid_request', 'details has an empty, long or unprintable field name');
  if (JSON.stringify(value).length > DETAILS_MAX_CHARS) throw new OAuthError('invalid_request', `details is larger than ${DETAILS_MAX_CHARS} characters of JSON`);
  const hidden = hiddenIn(value, 'details');
  if (hidden) throw new OAuthError('invalid_request', 'details contains control, format or bidirectional characters', { reason: hidden });
  return value as Record<string, unknown>;
}

function lifetime(value: unknown): number {
  if (value === undefined || value === null) return TRANSACTION_LIFETIME.default;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > TRANSACTION_LIFETIME.max) {
    throw new OAuthError('invalid_request', `lifetime_seconds must be a whole number from 1 to ${TRANSACTION_LIFETIME.max}`);
  }
  return value;
}

/**
 * Records a pending transaction for the user of `subject_token`: its subject, client, chain and
 * audience come from the token, never from the requester, so a gateway cannot name another user.
 */
export async function createTransaction(ctx: ServerContext, requestedBy: string, body: Record<string, unknown>): Promise<TransactionRecord> {
  const tool = text(body.tool, 'tool', TOOL_MAX_CHARS);
  const hash = argumentsHash(body.arguments_hash);
  const summary = text(body.summary, 'summary', SUMMARY_MAX_CHARS);
  const bound = details(body.details);
  const seconds = lifetime(body.lifetime_seconds);
  const claims = await subjectToken(ctx, body.subject_token);
  // Only a person can approve: a client's own token (client credentials) has nobody to ask.
  if (!(await ctx.store.users.findBySub(claims.sub))) {
    throw new OAuthError('invalid_request', 'the subject token does not stand for a user', { reason: `sub=${claims.sub} is no user (client_id=${claims.client_id})` });
  }
  const now = ctx.now();
  const tx: TransactionRecord = {
    id: randomToken(16),
    status: 'pending',
    sub: claims.sub,
    clientId: claims.client_id,
    act: chainOf(claims),
    resource: audienceOf(claims),
    tool,
    argumentsHash: hash,
    summary,
    details: bound,
    requestedBy,
    createdAt: now,
    expiresAt: now + seconds,
  };
  await ctx.store.transactions.create(tx);
  ctx.audit.record({ at: now, type: 'transaction.created', outcome: 'success', clientId: tx.clientId, sub: tx.sub, data: auditData(tx, { expires_at: tx.expiresAt }) });
  return tx;
}

/** Whether the token is the one the transaction was created for: same user, client, chain and audience. */
function bindingMismatch(tx: TransactionRecord, claims: AccessTokenClaims, hash: string): string | undefined {
  if (claims.sub !== tx.sub) return `token sub=${claims.sub}, transaction sub=${tx.sub}`;
  if (claims.client_id !== tx.clientId) return `token client_id=${claims.client_id}, transaction client_id=${tx.clientId}`;
  const chain = chainOf(claims);
  if (chain.join(' ') !== tx.act.join(' ')) return `token act chain [${chain.join(', ')}], transaction act chain [${tx.act.join(', ')}]`;
  if (audienceOf(claims) !== tx.resource) return `token aud=${audienceOf(claims)}, transaction resource=${tx.resource}`;
  if (hash !== tx.argumentsHash) return `arguments_hash ${hash} differs from the approved ${tx.argumentsHash}`;
  return undefined;
}

export type UseResult = { used: TransactionRecord } | { refused: TransactionRefusal; reason: string };

/**
 * Spends an approved transaction for the call the requester is about to forward: the token must
 * be the transaction's (user, client, chain, audience) and the arguments hash the approved one.
 * approved → used is one conditional UPDATE, so of two gateways racing exactly one wins.
 */
export async function useTransaction(ctx: ServerContext, tx: TransactionRecord, body: Record<string, unknown>): Promise<UseResult> {
  const hash = argumentsHash(body.arguments_hash);
  const claims = await subjectToken(ctx, body.subject_token);
  const refused = (refusal: TransactionRefusal, reason: string): UseResult => {
    ctx.audit.record({ at: ctx.now(), type: 'transaction.refused', outcome: 'failure', clientId: tx.clientId, sub: tx.sub, error: refusal, reason: `use: ${reason}`, data: auditData(tx) });
    return { refused: refusal, reason };
  };
  const mismatch = bindingMismatch(tx, claims, hash);
  if (mismatch) return refused('transaction_mismatch', mismatch);
  const status = transactionStatus(tx, ctx.now());
  if (status !== 'approved') return refused(refusalOf[status], `the transaction is ${status}`);
  const at = ctx.now();
  if (!(await ctx.store.transactions.use(tx.id, { sub: tx.sub, clientId: tx.clientId, argumentsHash: hash }, at))) {
    // Another use (or the clock) got there first: say what it is now.
    const now = await ctx.store.transactions.find(tx.id);
    const after = now ? transactionStatus(now, at) : 'expired';
    return refused(after === 'approved' ? 'transaction_expired' : refusalOf[after], `the transaction became ${after} before this use`);
  }
  const used: TransactionRecord = { ...tx, status: 'used', usedAt: at };
  ctx.audit.record({ at, type: 'transaction.used', outcome: 'success', clientId: tx.clientId, sub: tx.sub, data: auditData(used, { decided_how: tx.decidedHow }) });
  return { used };
}

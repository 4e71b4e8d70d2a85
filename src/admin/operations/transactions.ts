import { z } from 'zod';
import { transactionStatus, type TransactionRecord } from '../../store/types.ts';
import { AdminError, notFound } from '../errors.ts';
import { defineOperation, type AdminDeps } from '../operation.ts';
import { decodeCursor, encodeCursor, page } from '../pagination.ts';
import { findUser, username } from './users.ts';

/**
 * High-risk approvals (transactions, docs/high-risk-actions.md), read-only: what agents asked
 * people to approve, and what became of it. In the `audit` area: a record of decisions, which the
 * audit log's `transaction.*` events point to by id.
 */

const STATUSES = ['pending', 'approved', 'denied', 'used', 'expired'] as const;
const time = z.iso.datetime({ offset: true }).describe('ISO 8601.');

export const transactionView = z.strictObject({
  id: z.string(),
  status: z.enum(STATUSES).describe('pending and approved ones read as expired once expires_at has passed.'),
  user: z.strictObject({ username: z.string().nullable().describe('null when the user is gone.'), sub: z.string() }),
  client_id: z.string().describe('The client of the token the call was made with (the agent).'),
  act: z.array(z.string()).describe('The delegation chain of that token, as subjects, most recent actor first.'),
  resource: z.string(),
  tool: z.string(),
  arguments_hash: z.string(),
  summary: z.string().describe('The sentence the person was shown.'),
  details: z.record(z.string(), z.unknown()).nullable().describe('The bound arguments, as shown on the approval page.'),
  requested_by: z.string().describe('The client that asked for the approval (a gateway).'),
  created_at: z.number().int().describe('Epoch seconds, as every time here.'),
  expires_at: z.number().int(),
  decided_at: z.number().int().nullable(),
  decided_how: z.enum(['password', 'totp']).nullable().describe('How the person authenticated afresh to approve.'),
  used_at: z.number().int().nullable(),
});

type TransactionView = z.output<typeof transactionView>;

const toView = (tx: TransactionRecord, now: number, name: string | undefined): TransactionView => ({
  id: tx.id,
  status: transactionStatus(tx, now),
  user: { username: name ?? null, sub: tx.sub },
  client_id: tx.clientId,
  act: tx.act,
  resource: tx.resource,
  tool: tx.tool,
  arguments_hash: tx.argumentsHash,
  summary: tx.summary,
  details: tx.details ?? null,
  requested_by: tx.requestedBy,
  created_at: tx.createdAt,
  expires_at: tx.expiresAt,
  decided_at: tx.decidedAt ?? null,
  decided_how: tx.decidedHow ?? null,
  used_at: tx.usedAt ?? null,
});

/** Usernames of the subjects on a page, one lookup each. */
async function usernames(deps: Pick<AdminDeps, 'store'>, subs: string[]): Promise<Map<string, string>> {
  const unique = [...new Set(subs)];
  const users = await Promise.all(unique.map((sub) => deps.store.users.findBySub(sub)));
  return new Map(users.flatMap((u) => (u ? [[u.sub, u.username] as const] : [])));
}

/** The cursor names the last item of the page: `<created_at>:<id>`. */
function after(cursor: string | undefined): { createdAt: number; id: string } | undefined {
  if (cursor === undefined) return undefined;
  const [at, id] = decodeCursor(cursor).split(/:(.*)/s);
  const createdAt = Number(at);
  if (!Number.isSafeInteger(createdAt) || !id) throw new AdminError('invalid_request', 'the cursor is not one this server gave');
  return { createdAt, id };
}

export const listTransactions = defineOperation({
  name: 'transactions.list',
  area: 'audit',
  access: 'read',
  summary: 'High-risk approvals (one tool call an agent asked a person to approve), newest first; filter by user, status, tool, time.',
  input: z.strictObject({
    user: username.optional().describe('The username whose approvals to list.'),
    status: z.enum(STATUSES).optional(),
    tool: z.string().min(1).max(200).optional().describe('The MCP tool (transfer).'),
    since: time.optional().describe('Created at or after this time.'),
    until: time.optional().describe('Created before this time.'),
    limit: z.coerce.number().int().min(1).max(200).default(50).describe('Items per page (1–200).'),
    cursor: z.string().max(500).optional().describe('The next_cursor of the previous page.'),
  }),
  output: page(transactionView),
  async run(deps, input) {
    const sub = input.user === undefined ? undefined : (await findUser(deps, input.user)).sub;
    const seconds = (iso: string | undefined) => (iso === undefined ? undefined : Math.floor(Date.parse(iso) / 1000));
    const now = deps.now();
    const found = await deps.store.transactions.list({
      now,
      sub,
      status: input.status,
      tool: input.tool,
      since: seconds(input.since),
      until: seconds(input.until),
      after: after(input.cursor),
      // One more than asked tells whether there is a next page.
      limit: input.limit + 1,
    });
    const taken = found.slice(0, input.limit);
    const names = await usernames(deps, taken.map((t) => t.sub));
    const last = taken[taken.length - 1];
    return {
      items: taken.map((t) => toView(t, now, names.get(t.sub))),
      next_cursor: found.length > input.limit && last ? encodeCursor(`${last.createdAt}:${last.id}`) : null,
    };
  },
});

export const readTransaction = defineOperation({
  name: 'transactions.read',
  area: 'audit',
  access: 'read',
  summary: 'One high-risk approval by its id (the id of the approval URL and of the transaction.* audit events).',
  input: z.strictObject({ id: z.string().min(1).max(200) }),
  output: transactionView,
  target: (input) => ({ data: { transaction_id: input.id } }),
  async run(deps, input) {
    const tx = await deps.store.transactions.find(input.id);
    if (!tx) throw notFound('transaction');
    return toView(tx, deps.now(), (await deps.store.users.findBySub(tx.sub))?.username);
  },
});

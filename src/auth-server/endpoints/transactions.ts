import { Hono, type Context } from 'hono';
import { OAuthError } from '../../core/errors.ts';
import { accessTokenFromRequest, refusalError } from '../resource-token.ts';
import { authenticateServiceClient } from '../client-auth/service-client.ts';
import type { AppEnv, ServerContext } from '../context.ts';
import { readJsonObject } from '../json-body.ts';
import type { ClientRecord, TransactionRecord } from '../../store/types.ts';
import { REFUSAL_DESCRIPTIONS, approvalUri, auditData, createTransaction, mayRequestTransactions, transactionView, useTransaction } from '../transactions.ts';

/** Client authentication fields a JSON body may carry, as a form body would at /token (RFC 6749 §2.3.1, RFC 7523 §2.2). */

type Handler = (c: Context<AppEnv>) => Promise<Response>;

/**
 * The transaction endpoints (docs/high-risk-actions.md), mounted at /transactions:
 *
 *   POST /            a gateway asks for the approval of one call; 201 with the approval URL
 *   GET  /{id}        its creator, or the caller whose token it was made for, reads its status
 *   POST /{id}/use    its creator spends the approval, once, for exactly the approved call
 *
 * Clients authenticate as at /token; the requester must be a confidential client configured
 * with `transactions: allowed`. Unknown ids and callers who may not see one get the same 404.
 * Every refusal is audited as `transaction.refused` with its reason; the caller sees the code.
 */
export function transactionsApi(ctx: ServerContext): Hono<AppEnv> {
  const api = new Hono<AppEnv>();
  const endpoint = ctx.url('/transactions');
  const noStore = { 'Cache-Control': 'no-store' };

  /** Refusals the handlers throw are audited here, once, under this area's event type. */
  const audited =
    (handler: Handler): Handler =>
    async (c) => {
      try {
        return await handler(c);
      } catch (error) {
        if (error instanceof OAuthError && !error.audited && error.status < 500) {
          ctx.audit.record({
            at: ctx.now(),
            type: 'transaction.refused',
            outcome: 'failure',
            clientId: c.get('clientId'),
            error: error.code,
            reason: `${c.req.method} ${c.req.path}: ${error.reason ?? error.message}`,
          });
          error.audited = true;
        }
        throw error;
      }
    };

  /** The requesting gateway: authenticated as at /token, confidential, and allowed to ask. */
  const requester = (c: Context<AppEnv>, body: Record<string, unknown>): Promise<ClientRecord> =>
    authenticateServiceClient(ctx, c, body, endpoint, { what: 'transactions', allowed: (id) => mayRequestTransactions(ctx, id), denied: 'the client may not request approvals', flag: 'transactions: allowed' });

  /** One answer for an unknown id and for a caller who may not see it: existence is never revealed. */
  const notFound = (c: Context<AppEnv>, reason: string, tx?: TransactionRecord) => {
    ctx.audit.record({
      at: ctx.now(),
      type: 'transaction.refused',
      outcome: 'failure',
      clientId: c.get('clientId'),
      sub: tx?.sub,
      error: 'not_found',
      reason: `${c.req.method} ${c.req.path}: ${reason}`,
      ...(tx ? { data: auditData(tx) } : {}),
    });
    return c.json({ error: 'not_found', error_description: 'no such transaction' }, 404, noStore);
  };

  api.post(
    '/',
    audited(async (c) => {
      const body = await readJsonObject(ctx, c, 'invalid_request');
      const client = await requester(c, body);
      const tx = await createTransaction(ctx, client.clientId, body);
      const uri = approvalUri(ctx, tx.id);
      return c.json({ id: tx.id, status: 'pending', approval_uri: uri, expires_at: tx.expiresAt, expires_in: tx.expiresAt - tx.createdAt }, 201, {
        ...noStore,
        Location: `${endpoint}/${encodeURIComponent(tx.id)}`,
      });
    }),
  );

  api.get(
    '/:id',
    audited(async (c) => {
      const id = c.req.param('id') ?? '';
      const header = c.req.header('authorization') ?? '';
      if (/^(bearer|dpop)\s/i.test(header)) {
        // The caller itself (the agent CLI polling): its access token must be the transaction's user
        // and client; a DPoP-bound one only with its proof (resource-token.ts).
        const presented = await accessTokenFromRequest(ctx, c);
        if (presented.kind === 'refused') {
          if (presented.status >= 500) ctx.audit.record({ at: ctx.now(), type: 'transactions.refused', outcome: 'failure', error: presented.error, reason: presented.reason });
          throw refusalError(presented);
        }
        if (presented.kind !== 'token') {
          throw new OAuthError('invalid_token', 'the access token is invalid, expired or revoked', { headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' } });
        }
        const found = presented;
        c.set('clientId', found.claims.client_id);
        const tx = await ctx.store.transactions.find(id);
        if (!tx) return notFound(c, 'unknown transaction');
        if (found.claims.sub !== tx.sub || found.claims.client_id !== tx.clientId) {
          return notFound(c, `bearer token of sub=${found.claims.sub} client_id=${found.claims.client_id} is not the transaction's`, tx);
        }
        return c.json(transactionView(ctx, tx), 200, noStore);
      }
      // The creator, by client authentication in the Authorization header (a GET has no body).
      const client = await requester(c, {});
      const tx = await ctx.store.transactions.find(id);
      if (!tx) return notFound(c, 'unknown transaction');
      if (tx.requestedBy !== client.clientId) return notFound(c, `created by ${tx.requestedBy}, not ${client.clientId}`, tx);
      return c.json(transactionView(ctx, tx), 200, noStore);
    }),
  );

  api.post(
    '/:id/use',
    audited(async (c) => {
      const body = await readJsonObject(ctx, c, 'invalid_request');
      const client = await requester(c, body);
      const tx = await ctx.store.transactions.find((c.req.param('id') ?? ''));
      if (!tx) return notFound(c, 'unknown transaction');
      if (tx.requestedBy !== client.clientId) return notFound(c, `created by ${tx.requestedBy}, not ${client.clientId}`, tx);
      const result = await useTransaction(ctx, tx, body);
      if ('refused' in result) return c.json({ error: result.refused, error_description: REFUSAL_DESCRIPTIONS[result.refused] }, 409, noStore);
      return c.json(transactionView(ctx, result.used), 200, noStore);
    }),
  );

  return api;
}

import type { Context } from 'hono';
import { isPublicClient } from '../../core/client-metadata.ts';
import { OAuthError } from '../../core/errors.ts';
import type { AppEnv, ServerContext } from '../context.ts';
import { Params } from '../params.ts';
import type { ClientRecord } from '../../store/types.ts';
import { authenticateClient } from './index.ts';

/** Client authentication members a JSON body may carry (as a form at /token would). */
const CLIENT_AUTH_FIELDS = ['client_id', 'client_secret', 'client_assertion', 'client_assertion_type'];

/** What a service endpoint for gateways asks of its caller, and how it says no. */
export interface ServicePermission {
  /** The endpoint's purpose, for the public-client refusal: `transactions`, `tool pins`. */
  what: string;
  /** Whether the configuration lets this client in (`transactions: allowed`, `tool_pins: allowed`). */
  allowed: (clientId: string) => boolean;
  /** The refusal's description and the configuration flag it names in the audited reason. */
  denied: string;
  flag: string;
}

/**
 * The caller of a JSON endpoint for gateways (/transactions, /tool-pins): authenticated as at
 * /token (the header, or the body's client authentication members), confidential, and allowed by
 * configuration. Sets `clientId` on the context for the audit of later refusals.
 */
export async function authenticateServiceClient(ctx: ServerContext, c: Context<AppEnv>, body: Record<string, unknown>, endpoint: string, permission: ServicePermission): Promise<ClientRecord> {
  const fields = new Map<string, string[]>();
  for (const name of CLIENT_AUTH_FIELDS) {
    const value = body[name];
    if (value === undefined) continue;
    if (typeof value !== 'string') throw new OAuthError('invalid_request', `${name} must be a string`);
    fields.set(name, [value]);
  }
  const client = await authenticateClient(ctx, c, new Params(fields), endpoint);
  c.set('clientId', client.clientId);
  if (isPublicClient(client)) throw new OAuthError('invalid_client', `${permission.what} need an authenticated client`, { status: 401, reason: 'public client' });
  if (!permission.allowed(client.clientId)) {
    throw new OAuthError('unauthorized_client', permission.denied, { status: 403, reason: `client ${client.clientId} is not configured with ${permission.flag}` });
  }
  return client;
}

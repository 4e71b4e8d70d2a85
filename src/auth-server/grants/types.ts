import type { Context } from 'hono';
import type { Client } from '../../core/client-metadata.ts';
import type { ServerContext } from '../context.ts';
import type { Params } from '../params.ts';
import type { TokenResponse } from '../tokens.ts';

/**
 * A grant type is a plug-in of one shape (STYLE.md §2): its `grant_type` value, the parameters it
 * reads (documentation and validation), and a handler that turns an authenticated request into a
 * token response. The token endpoint knows nothing about any particular grant.
 */
export interface GrantHandler {
  grantType: string;
  parameters: readonly string[];
  handler(ctx: ServerContext, request: { client: Client; params: Params; c: Context }): Promise<{ response: TokenResponse; audit: GrantAudit }>;
}

/** What the token endpoint records in the audit log for an issued token. */
export interface GrantAudit {
  sub: string;
  resource: string;
  scope?: string;
  grantId?: string;
  jti: string;
  [key: string]: unknown;
}

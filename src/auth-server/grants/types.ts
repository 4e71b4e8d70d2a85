import type { Context } from 'hono';
import type { JWK } from 'jose';
import type { Client } from '../../core/client-metadata.ts';
import type { ClientRecord } from '../../store/types.ts';
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
  /** Whether the grant is offered by this configuration (metadata, token endpoint); always when absent. */
  enabled?(ctx: ServerContext): boolean;
  handler(ctx: ServerContext, request: GrantRequest): Promise<{ response: TokenResponse; audit: GrantAudit }>;
  /**
   * A grant that names its client from the grant itself (SEP-1933: a workload JWT as the grant,
   * RFC 7523 §2.1 without client authentication). The token endpoint calls it only when the request
   * carries no client authentication at all, instead of `authenticateClient`; undefined → the
   * usual client authentication (which then refuses the unauthenticated request).
   */
  authenticate?(ctx: ServerContext, c: Context, params: Params): Promise<ClientRecord | undefined>;
}

/** What the token endpoint hands a grant: the authenticated client, the request, and its checked DPoP proof. */
export interface GrantRequest {
  client: Client;
  params: Params;
  c: Context;
  /**
   * The DPoP proof of this token request, checked once by the token endpoint (RFC 9449 §4.3, §5):
   * the grant binds what it issues to `jkt` (`AccessTokenRequest.jkt`). Absent: no proof was sent.
   */
  dpop?: DpopProof;
}

/** A checked DPoP proof's key: its RFC 7638 thumbprint and the public JWK. */
export interface DpopProof {
  jkt: string;
  jwk: JWK;
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

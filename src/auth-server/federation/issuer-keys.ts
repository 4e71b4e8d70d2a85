import type { JSONWebKeySet, JWTVerifyGetKey } from 'jose';
import type { ServerContext } from '../context.ts';

/**
 * Issue 17, WP0: the signature of the shared "trusted issuer keys" helper (WP-A builds it): the
 * keys of a trusted IdP (ID-JAG) or platform issuer (workload identity) as a jose key resolver.
 * From `jwks`, else `jwks_uri`, else discovered (RFC 8414, then OpenID discovery, `issuer` checked
 * equal), fetched through the guarded fetch like client keys; https only unless `allowLoopback`.
 */
export interface TrustedIssuer {
  issuer: string;
  jwks_uri?: string;
  jwks?: JSONWebKeySet;
  /** Tests only: http and loopback addresses. */
  allowLoopback: boolean;
}

export function issuerKeys(_ctx: ServerContext, _issuer: TrustedIssuer): JWTVerifyGetKey {
  throw new Error('not implemented (issue 17, WP-A)');
}

/**
 * The one OAuth error type. `code` is the wire error code (RFC 6749 §5.2, RFC 6750 §3.1,
 * RFC 7591 §3.2.2, RFC 8707 §2, RFC 8693 §2.2.2, RFC 9396 §5, OIDC Core §3.1.2.6); the description is generic
 * enough to show a client, and `reason` carries the detail that only the audit log sees.
 */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'unsupported_response_type'
  | 'unsupported_token_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'access_denied'
  | 'server_error'
  | 'temporarily_unavailable'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'invalid_redirect_uri'
  | 'invalid_client_metadata'
  | 'login_required'
  | 'consent_required'
  | 'interaction_required'
  /** RFC 9101 §7 (used by RFC 9126 §4): the request_uri is unknown, expired, used, or not this client's. */
  | 'invalid_request_uri'
  | 'slow_down'
  | 'authorization_pending'
  | 'expired_token'
  /** RFC 9396 §5: unknown type, malformed, or not grantable (an approval not usable by this token). */
  | 'invalid_authorization_details'
  /** RFC 9449 §5, §7.1: a DPoP proof failed a check of §4.3. */
  | 'invalid_dpop_proof'
  /** RFC 9449 §8, §9: the server wants a proof carrying the nonce of its DPoP-Nonce header. */
  | 'use_dpop_nonce';

const DEFAULT_STATUS: Partial<Record<OAuthErrorCode, number>> = {
  invalid_client: 401,
  invalid_token: 401,
  insufficient_scope: 403,
  access_denied: 403,
  server_error: 500,
  temporarily_unavailable: 503,
};

export interface OAuthErrorOptions {
  /** HTTP status; defaults by code (400 for most). */
  status?: number;
  /** Detail for the audit log, never sent to the client. */
  reason?: string;
  /** Extra response headers, e.g. WWW-Authenticate. */
  headers?: Record<string, string>;
}

export class OAuthError extends Error {
  readonly code: OAuthErrorCode;
  readonly status: number;
  readonly reason: string | undefined;
  readonly headers: Record<string, string>;
  /** Set once the error has been written to the audit log, so it is recorded once. */
  audited = false;

  constructor(code: OAuthErrorCode, description: string, options: OAuthErrorOptions = {}) {
    super(description);
    this.name = 'OAuthError';
    this.code = code;
    this.status = options.status ?? DEFAULT_STATUS[code] ?? 400;
    this.reason = options.reason;
    this.headers = options.headers ?? {};
  }

  /** The JSON body of an OAuth error response. */
  toResponseObject(): { error: OAuthErrorCode; error_description: string } {
    return { error: this.code, error_description: this.message };
  }
}

export function isOAuthError(value: unknown): value is OAuthError {
  return value instanceof OAuthError;
}

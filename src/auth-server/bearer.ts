import type { Context, MiddlewareHandler } from 'hono';
import { OAuthError } from '../core/errors.ts';

/** RFC 6750 §2.1: one b64token, which never contains a comma. */
const BEARER = /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i;

/**
 * The token of an `Authorization: Bearer` header (RFC 6750 §2.1), if any. A request that carries
 * more than one credential — two Authorization headers (joined with ", " by the web `Headers`)
 * or a header and an `access_token` query parameter — is `invalid_request` (RFC 6750 §3.1, 400),
 * never answered with whichever token came first.
 */
export function bearerToken(c: Context): string | undefined {
  const header = c.req.header('authorization');
  const several = header?.includes(',') ? 'more than one Authorization header' : header && c.req.query('access_token') !== undefined ? 'a token in both the Authorization header and the query' : undefined;
  if (several) {
    throw new OAuthError('invalid_request', 'send the access token once, in the Authorization header', { reason: several, headers: { 'WWW-Authenticate': 'Bearer error="invalid_request"' } });
  }
  const match = header ? BEARER.exec(header) : null;
  return match?.[1];
}

/**
 * For POST endpoints that take a bearer token (`/userinfo`): a form body with `access_token`
 * beside an Authorization header is two credentials (RFC 6750 §2.2, §3.1), `invalid_request`.
 */
export const singleBearerCredential: MiddlewareHandler = async function singleBearerCredential(c, next) {
  const form = (c.req.header('content-type') ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded');
  if (c.req.method === 'POST' && form && c.req.header('authorization') !== undefined && new URLSearchParams(await c.req.text()).has('access_token')) {
    throw new OAuthError('invalid_request', 'send the access token once, in the Authorization header', {
      reason: 'a token in both the Authorization header and the body',
      headers: { 'WWW-Authenticate': 'Bearer error="invalid_request"' },
    });
  }
  await next();
};

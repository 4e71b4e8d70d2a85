import type { MiddlewareHandler } from 'hono';
import { bodyLimit as streamingBodyLimit } from 'hono/body-limit';
import { OAuthError } from '../core/errors.ts';

export interface BodyLimitOptions {
  maxBytes: number;
}

/**
 * Refuses request bodies over `maxBytes` with 413 `invalid_request`. A body with a declared
 * `Content-Length` is judged by the header alone (Node's HTTP parser never delivers more than
 * it declares); only chunked bodies are counted as they stream. Hono's own middleware touches the
 * raw body stream of every request, which on Node builds a full web `Request` each time — the
 * largest cost of the token endpoint in the profiles — so it is kept for the chunked case only.
 */
export function bodyLimit(options: BodyLimitOptions): MiddlewareHandler {
  if (!(options.maxBytes > 0)) throw new Error('bodyLimit: maxBytes must be positive');
  const tooLarge = () => new OAuthError('invalid_request', 'the request body is too large', { status: 413 });
  const streaming = streamingBodyLimit({ maxSize: options.maxBytes, onError: () => { throw tooLarge(); } });
  return async function bodyLimitMiddleware(c, next) {
    if (c.req.method === 'GET' || c.req.method === 'HEAD' || c.req.method === 'OPTIONS') return next();
    const length = c.req.header('content-length');
    if (length !== undefined && c.req.header('transfer-encoding') === undefined) {
      if (!/^\d+$/.test(length)) throw new OAuthError('invalid_request', 'invalid Content-Length');
      if (Number(length) > options.maxBytes) throw tooLarge();
      return next();
    }
    return streaming(c, next);
  };
}

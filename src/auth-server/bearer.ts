import type { Context } from 'hono';

/** The token of an `Authorization: Bearer` header (RFC 6750 §2.1), if any. */
export function bearerToken(c: Context): string | undefined {
  const header = c.req.header('authorization');
  const match = header ? /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header) : null;
  return match?.[1];
}

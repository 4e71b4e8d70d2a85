import type { Context } from 'hono';

interface NodeBindings {
  incoming?: { headers: Record<string, string | string[] | undefined> };
}

/**
 * A request header, lower-case name. On Node it is read from the parsed `IncomingMessage`
 * headers, which is several times cheaper than building the web `Headers` Hono would otherwise
 * construct for the request; elsewhere, from the web request.
 */
export function requestHeader(c: Context, name: string): string | undefined {
  const headers = (c.env as NodeBindings | undefined)?.incoming?.headers;
  if (headers) {
    const value = headers[name];
    return Array.isArray(value) ? value.join(', ') : value;
  }
  return c.req.header(name);
}

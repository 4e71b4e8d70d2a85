import type { Context } from 'hono';

interface NodeBindings {
  incoming?: { headers: Record<string, string | string[] | undefined>; rawHeaders?: string[] };
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

/**
 * Whether a credential header carries more than one value: sent twice, or as a list. Node keeps
 * only the first of some repeated headers (Authorization among them) in `headers`, so the raw
 * list is counted; a web `Headers` (and some clients) join repeats with ", ", which no single
 * credential contains (RFC 6750 §2.1 b64token, RFC 7617 token68).
 */
export function credentialRepeated(c: Context, name: string): boolean {
  const raw = (c.env as NodeBindings | undefined)?.incoming?.rawHeaders;
  if (!raw) return c.req.header(name)?.includes(',') ?? false;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === name.length && raw[i]!.toLowerCase() === name && (++seen > 1 || raw[i + 1]!.includes(','))) return true;
  }
  return false;
}

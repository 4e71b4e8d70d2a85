import type { Context } from 'hono';
import { OAuthError, type OAuthErrorCode } from '../core/errors.ts';
import { JsonLimitError, parseJsonWithin } from '../core/json-limits.ts';
import type { ServerContext } from './context.ts';

/**
 * A JSON request body, within the configured nesting limit (`request_limits.max_json_depth`; the size is
 * bounded for every body by the body-limit middleware). Anything that is not a JSON object —
 * malformed, too deep, a number out of range, an array — is `code` (400), with the detail in the
 * audit reason; never a 500 from something that recurses over the parsed value later.
 */
export async function readJsonObject(ctx: ServerContext, c: Context, code: OAuthErrorCode): Promise<Record<string, unknown>> {
  const refuse = (reason: string) => new OAuthError(code, 'the body must be a JSON object', { reason });
  let body: unknown;
  try {
    body = parseJsonWithin(await c.req.text(), { maxDepth: ctx.config.request_limits.max_json_depth });
  } catch (error) {
    if (error instanceof JsonLimitError) throw refuse(error.message);
    throw error;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw refuse(`the body is ${Array.isArray(body) ? 'an array' : typeof body}`);
  return body as Record<string, unknown>;
}

import type { Context, Next } from 'hono';
import { PROTOCOL_METHODS, type CompiledLimit, type CompiledRoute } from '../route.ts';
import type { RateLimitOutcome } from '../rate-limits.ts';
import type { GatewayEnv, GatewayFilter, Principal } from '../types.ts';
import type { McpMessage } from '../mcp-message.ts';
import { GATEWAY_ERRORS, refuse } from './refuse.ts';

function applies(limit: CompiledLimit, message: McpMessage | undefined): boolean {
  if (!message || message.kind === 'response') return limit.config.methods?.includes('response') ?? false;
  const method = message.method!;
  if (limit.config.methods) {
    if (!limit.config.methods.includes(method)) return false;
  } else if (message.kind === 'notification' || PROTOCOL_METHODS.has(method)) {
    return false;
  }
  if (limit.config.tools) return message.toolName !== undefined && limit.config.tools.includes(message.toolName);
  return true;
}

function keyPart(part: CompiledLimit['config']['key'][number], route: CompiledRoute, principal: Principal, message: McpMessage | undefined): string {
  switch (part) {
    case 'route':
      return route.config.path;
    case 'tool':
      return message?.toolName ?? message?.method ?? '';
    case 'client':
      return principal.clientId ?? '';
    case 'subject':
      return principal.sub;
    case 'actor':
      return principal.actors[0]?.sub ?? principal.clientId ?? '';
  }
}

/**
 * A key part URI-encoded. A name the client chose (a tool, a method) may hold a lone UTF-16
 * surrogate, which `encodeURIComponent` refuses: it is then counted under its well-formed spelling
 * (U+FFFD in place of each lone surrogate), never let through uncounted.
 */
function encodePart(part: string): string {
  try {
    return encodeURIComponent(part);
  } catch {
    return encodeURIComponent((part as string & { toWellFormed(): string }).toWellFormed());
  }
}

/** The parts, each URI-encoded (so none contains the separator), joined by `|`; a loop: this runs per request and limit. */
function bucketKey(limit: CompiledLimit, route: CompiledRoute, principal: Principal, message: McpMessage | undefined): string {
  const parts = limit.config.key;
  let key = '';
  for (let i = 0; i < parts.length; i++) key += (i > 0 ? '|' : '') + encodePart(keyPart(parts[i]!, route, principal, message));
  return key;
}

/**
 * The throttling filter: fixed-window limits keyed by route, tool, client, subject or actor, in the
 * host's rate limit store (on Node rate-limiter-flexible, global through Redis when REDIS_URL is set). It runs after authorization so a
 * refused caller cannot spend someone else's budget, and it fails closed: when the limiter's store
 * is down, requests are refused with 503 rather than let through unlimited.
 */
export function throttle(route: CompiledRoute): GatewayFilter {
  const limits = route.limits;
  const limited = (c: Context<GatewayEnv>, limit: CompiledLimit, outcome: RateLimitOutcome) =>
    refuse(c, {
      status: 429,
      code: GATEWAY_ERRORS.rateLimited,
      message: `rate limit ${limit.config.name} exceeded`,
      rejection: 'rate_limited',
      reason: `limit ${limit.config.name}: ${limit.config.limit} per ${limit.config.window_seconds} s`,
      headers: { 'Retry-After': String(Math.max(1, Math.ceil(outcome.msBeforeNext / 1000))) },
    });
  const unavailable = (c: Context<GatewayEnv>, error: unknown) =>
    refuse(c, {
      status: 503,
      code: GATEWAY_ERRORS.unavailable,
      message: 'the rate limiter is unavailable',
      rejection: 'rate_limiter_unavailable',
      reason: (error as Error).message,
      decision: 'error',
      headers: { 'Retry-After': '1' },
    });
  // Counts the request in each limit that applies, from the `from`th on, waiting for stores that
  // answer later (Redis, a Durable Object); the first refusal ends it.
  const consumeFrom = async (c: Context<GatewayEnv>, next: Next, message: McpMessage | undefined, from: number): Promise<Response | void> => {
    for (let i = from; i < limits.length; i++) {
      const limit = limits[i]!;
      if (!applies(limit, message)) continue;
      let outcome;
      try {
        const key = bucketKey(limit, route, c.get('principal'), message);
        outcome = limit.limiter.consumeNow ? limit.limiter.consumeNow(key) : await limit.limiter.consume(key);
      } catch (error) {
        return unavailable(c, error);
      }
      if (!outcome.allowed) return limited(c, limit, outcome);
    }
    return next();
  };
  return function throttleMiddleware(c, next) {
    const message = c.get('mcp').message;
    for (let i = 0; i < limits.length; i++) {
      const limit = limits[i]!;
      if (!applies(limit, message)) continue;
      // A store that must be waited for: the rest is counted in order, asynchronously.
      if (!limit.limiter.consumeNow) return consumeFrom(c, next, message, i);
      // In memory: counted at once. Anything that goes wrong is refused as a store failure is (fail closed, 503).
      let outcome: RateLimitOutcome;
      try {
        outcome = limit.limiter.consumeNow(bucketKey(limit, route, c.get('principal'), message));
      } catch (error) {
        return unavailable(c, error);
      }
      if (!outcome.allowed) return limited(c, limit, outcome);
    }
    return next();
  };
}

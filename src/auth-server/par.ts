import { OAuthError } from '../core/errors.ts';
import { randomToken } from '../core/encoding.ts';
import type { ServerContext } from './context.ts';
import { hashSecret } from './hash.ts';
import type { TransferRequest } from './session-transfer.ts';

/** RFC 9126 §2.2: the prefix of a request_uri this server makes. */
export const REQUEST_URI_PREFIX = 'urn:ietf:params:oauth:request_uri:';

/** A request pushed to /par, kept in the short-lived cache under the hash of its request_uri. */
export interface PushedRequest {
  clientId: string;
  /** The pushed authorization parameters (client authentication left out), used instead of the front channel's. */
  params: [string, string][];
  expiresAt: number;
  /** Set for a session transfer client's push: what the browser's visit then checks and does. */
  transfer?: TransferRequest;
}

/** After expiry the record is kept this long, so a late visit is told "expired", not "unknown". */
const GRACE_SECONDS = 300;

const key = (requestUri: string) => `par:${hashSecret(requestUri)}`;
const usedKey = (requestUri: string) => `par-used:${hashSecret(requestUri)}`;

/** Stores a pushed request and returns its single-use reference (RFC 9126 §2.2). */
export async function storePushedRequest(ctx: ServerContext, request: Omit<PushedRequest, 'expiresAt'>): Promise<{ requestUri: string; expiresIn: number }> {
  const expiresIn = ctx.config.par.request_uri_ttl;
  const requestUri = `${REQUEST_URI_PREFIX}${randomToken(32)}`;
  await ctx.cache.set(key(requestUri), { ...request, expiresAt: ctx.now() + expiresIn }, expiresIn + GRACE_SECONDS);
  return { requestUri, expiresIn };
}

/**
 * Takes a pushed request for its client, once (RFC 9126 §4: one use; an expired request_uri MUST
 * be rejected). The record is removed with a compare-and-delete, so of two visits at once (two
 * instances, Redis) exactly one gets it. Errors are `invalid_request_uri` with the reason audited.
 */
export async function takePushedRequest(ctx: ServerContext, requestUri: string, clientId: string): Promise<PushedRequest> {
  const refuse = (reason: string): never => {
    throw new OAuthError('invalid_request_uri', 'the request_uri is unknown, expired or already used', { reason });
  };
  if (!requestUri.startsWith(REQUEST_URI_PREFIX)) refuse('request_uri was not issued by this server');
  const pushed = await ctx.cache.get<PushedRequest>(key(requestUri));
  if (!pushed) return refuse((await ctx.cache.get(usedKey(requestUri))) ? 'request_uri already used' : 'request_uri unknown or expired');
  if (pushed.clientId !== clientId) refuse(`request_uri was pushed by ${pushed.clientId}, not client_id=${clientId}`);
  // Burnt by this visit whatever follows: a second visit must fail even when this one is refused later.
  const taken = await ctx.cache.swap(key(requestUri), pushed, undefined, 1);
  if (!taken) refuse('request_uri already used');
  await ctx.cache.set(usedKey(requestUri), 1, ctx.config.par.request_uri_ttl + GRACE_SECONDS);
  if (pushed.expiresAt <= ctx.now()) refuse('request_uri expired');
  return pushed;
}

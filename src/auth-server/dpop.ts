/**
 * DPoP at the authorization server (RFC 9449 §5, §8, §10): the proof of a /token or /par request,
 * server nonces, the per-client and per-resource policies, and the rule for exchanging a bound
 * subject token. The checks themselves are core/dpop.ts's.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Context, MiddlewareHandler } from 'hono';
import { DpopError, DpopNonces, verifyDpopProof } from '../core/dpop.ts';
import { OAuthError } from '../core/errors.ts';
import { isPublicClient, type Client } from '../core/client-metadata.ts';
import type { ServerContext } from './context.ts';
import type { DpopProof } from './grants/types.ts';

/** The proof's JWK thumbprint: 43 base64url characters (SHA-256). `dpop_jkt` must have this form. */
export const JKT_PATTERN = /^[A-Za-z0-9_-]{43}$/;

const noncesOf = new WeakMap<ServerContext, Promise<DpopNonces>>();

/** The nonce key: the environment variable named by `dpop.nonce_key_env`, else `<data_dir>/secrets/dpop-nonce.key` (created, 0600). */
async function nonceKey(ctx: ServerContext): Promise<Uint8Array> {
  const fromEnv = process.env[ctx.config.dpop.nonce_key_env];
  if (fromEnv !== undefined && fromEnv !== '') {
    const key = new TextEncoder().encode(fromEnv);
    if (key.length < 16) throw new Error(`${ctx.config.dpop.nonce_key_env} must hold at least 16 bytes`);
    return key;
  }
  const dir = join(ctx.config.data_dir, 'secrets');
  const file = join(dir, 'dpop-nonce.key');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    await writeFile(file, crypto.getRandomValues(new Uint8Array(32)), { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return new Uint8Array(await readFile(file));
}

/** The server's nonces when `dpop.require_nonce` is on (else undefined). */
export function dpopNonces(ctx: ServerContext): Promise<DpopNonces> | undefined {
  const { dpop } = ctx.config;
  if (!dpop.enabled || !dpop.require_nonce) return undefined;
  let nonces = noncesOf.get(ctx);
  if (!nonces) {
    nonces = nonceKey(ctx).then((key) => new DpopNonces(key, dpop.nonce_lifetime_seconds));
    // A failure is not cached: the next request tries again.
    nonces.catch(() => noncesOf.delete(ctx));
    noncesOf.set(ctx, nonces);
  }
  return nonces;
}

/**
 * RFC 9449 §8.2: with nonces on, every /token and /par response (success or error) carries a fresh
 * `DPoP-Nonce`, so a client always holds a current one.
 */
export function dpopNonceHeader(ctx: ServerContext): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const nonces = dpopNonces(ctx);
    if (nonces) c.res.headers.set('DPoP-Nonce', await (await nonces).issue(ctx.now()));
  };
}

/**
 * Checks the `DPoP` header of a /token or /par request (RFC 9449 §4.3, §5, §10.1). `htu` is compared
 * with the endpoint's URL under our issuer, not the Host header (right behind a proxy). No header →
 * undefined; DPoP off (`dpop.enabled: false`) → the header is ignored, as before. A refused proof
 * is 400 `invalid_dpop_proof`, a missing or stale nonce 400 `use_dpop_nonce` with `DPoP-Nonce`;
 * both audited as `<endpoint>.dpop_refused` with the failed check. The proof's `jti` is spent here
 * (see deferredTokenRequestProof for /token).
 */
export async function checkTokenRequestProof(ctx: ServerContext, c: Context, endpointUrl: string): Promise<DpopProof | undefined> {
  const checked = await deferredTokenRequestProof(ctx, c, endpointUrl);
  await checked?.spend();
  return checked?.dpop;
}

/**
 * The same checks with the `jti` not yet spent: `spend()` records it (§11.1) and refuses a replay
 * (400 `invalid_dpop_proof`, audited). The token endpoint spends it only once the grant succeeded,
 * so requests that get nothing (a public client's bogus refresh token) leave nothing in the replay
 * store: an unauthenticated caller cannot fill it.
 */
export async function deferredTokenRequestProof(ctx: ServerContext, c: Context, endpointUrl: string): Promise<{ dpop: DpopProof; spend: () => Promise<void> } | undefined> {
  const { dpop } = ctx.config;
  if (!dpop.enabled) return undefined;
  const headers = c.req.raw.headers;
  if (!headers.has('dpop')) return undefined;
  const noncesPromise = dpopNonces(ctx);
  const nonces = noncesPromise ? await noncesPromise : undefined;
  const endpoint = new URL(endpointUrl).pathname.split('/').pop() || 'token';
  const refused = (error: DpopError): OAuthError => {
    ctx.audit.record({ at: ctx.now(), type: `${endpoint}.dpop_refused`, outcome: 'failure', clientId: c.get('clientId') as string | undefined, error: error.code, reason: error.reason });
    const refusal =
      error.code === 'use_dpop_nonce'
        ? new OAuthError('use_dpop_nonce', 'Authorization server requires nonce in DPoP proof', { reason: error.reason })
        : new OAuthError('invalid_dpop_proof', 'the DPoP proof is invalid', { reason: error.reason });
    refusal.audited = true;
    return refusal;
  };
  // core/dpop.ts checks the jti last: the key and TTL it would store are kept for spend().
  let marker: { key: string; ttl: number } | undefined;
  try {
    const proof = await verifyDpopProof(headers.get('dpop') ?? undefined, {
      method: c.req.method,
      url: endpointUrl,
      algorithms: dpop.signing_alg_values,
      maxAgeSeconds: dpop.proof_max_age_seconds,
      now: ctx.now(),
      ...(nonces ? { nonces } : {}),
      replay: async (key, ttl) => {
        marker = { key, ttl };
        return true;
      },
    });
    return {
      dpop: { jkt: proof.jkt, jwk: proof.jwk },
      spend: async () => {
        if (marker && !(await ctx.cache.add(marker.key, 1, marker.ttl))) throw refused(new DpopError('invalid_dpop_proof', 'the DPoP proof jti was used before'));
      },
    };
  } catch (error) {
    if (!(error instanceof DpopError)) throw error;
    throw refused(error);
  }
}

/**
 * Policy at /token after client authentication (RFC 9449 §5.2 and `resources[].require_dpop`):
 * a client registered with `dpop_bound_access_tokens: true` must send a proof.
 */
export function requireClientProof(client: Client, dpop: DpopProof | undefined): void {
  if (dpop || client.metadata.dpop_bound_access_tokens !== true) return;
  throw new OAuthError('invalid_request', 'DPoP proof required: the client is registered with dpop_bound_access_tokens', { reason: 'no DPoP proof from a dpop_bound_access_tokens client' });
}

/**
 * RFC 9449 §10: a code bound at /authorize or /par (`dpop_jkt`) is redeemed only with a proof of
 * that key. Refused as `invalid_grant` (the code is then spent, as every failed redemption).
 */
export function checkBoundArtifact(what: 'authorization code' | 'refresh token', boundJkt: string | undefined, dpop: DpopProof | undefined): void {
  if (boundJkt === undefined) return;
  if (!dpop) throw new OAuthError('invalid_grant', `the ${what} is DPoP-bound; send a DPoP proof of its key`, { reason: `${what} bound to a DPoP key; no proof` });
  if (dpop.jkt !== boundJkt) throw new OAuthError('invalid_grant', `the ${what} is bound to another DPoP key`, { reason: `${what} bound to jkt ${boundJkt}; proof of ${dpop.jkt}` });
}

/** RFC 9449 §5: refresh tokens of public clients are bound to the proof's key; confidential clients' are not. */
export function refreshTokenJkt(client: Client, dpop: { jkt: string } | string | undefined): string | undefined {
  const jkt = typeof dpop === 'string' ? dpop : dpop?.jkt;
  return jkt !== undefined && isPublicClient(client) ? jkt : undefined;
}

/**
 * Token exchange of a DPoP-bound subject token (`cnf.jkt`): only the key holder (a proof of that
 * key) or a confidential client serving the token's audience (`resources[].resource_servers`: the
 * gateway mediating a call it received with that token) may exchange it; anyone else is refused
 * with `invalid_request`.
 */
export function checkBoundSubjectToken(ctx: ServerContext, client: Client, subject: Record<string, unknown>, dpop: DpopProof | undefined): void {
  const cnf = subject.cnf as { jkt?: unknown } | undefined;
  const jkt = typeof cnf?.jkt === 'string' ? cnf.jkt : undefined;
  if (jkt === undefined) return;
  if (dpop?.jkt === jkt) return;
  const audiences = Array.isArray(subject.aud) ? subject.aud : [subject.aud];
  const servesAudience =
    !isPublicClient(client) && audiences.some((aud) => typeof aud === 'string' && (ctx.resource(aud)?.resourceServers ?? []).includes(client.clientId));
  if (servesAudience) return;
  throw new OAuthError('invalid_request', 'the subject token is DPoP-bound; only its key holder or its resource server may exchange it', {
    reason: dpop ? `subject token bound to jkt ${jkt}; proof of ${dpop.jkt}` : `subject token bound to jkt ${jkt}; no proof, and ${client.clientId} does not serve its audience`,
  });
}

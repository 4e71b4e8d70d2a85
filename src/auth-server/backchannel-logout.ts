import { randomToken } from '../core/encoding.ts';
import { signJwt } from '../core/jwt.ts';
import type { Client } from '../core/client-metadata.ts';
import type { ServerContext } from './context.ts';
import { FetchRefused, guardedFetch } from './guarded-fetch.ts';
import { backchannelUriAllowed } from './logout-metadata.ts';
import { isSelfRegistered } from './registration-policy.ts';

/** OpenID Connect Back-Channel Logout 1.0 §2.4: the one member of the logout token's `events` claim. */
export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
/** Back-Channel Logout 1.0 §2.4 (explicit typing, RFC 8725 §3.11): the JWT `typ` header of logout tokens. */
export const LOGOUT_TOKEN_TYP = 'logout+jwt';
/** Back-Channel Logout 1.0 §2.4 recommends a short lifetime: two minutes. */
export const LOGOUT_TOKEN_TTL = 120;

/** What the logout tokens' delivery needs of the server: the admin operations' parts are enough. */
export type LogoutDeps = Pick<ServerContext, 'config' | 'issuer' | 'keys' | 'audit' | 'now'>;

/** One client to tell that one session of one user ended. */
export interface LogoutTarget {
  client: Client;
  sub: string;
  sid: string;
}

export interface DeliveryOutcome {
  clientId: string;
  sid: string;
  delivered: boolean;
  attempts: number;
  /** Why it failed (also the audit event's reason). */
  reason?: string;
}

/**
 * A logout token (Back-Channel Logout 1.0 §2.4): iss, aud (the client), iat, exp, jti, sub and sid,
 * the back-channel logout event, never a nonce; signed with the server's current key, `typ`
 * `logout+jwt`.
 */
export async function signLogoutToken(deps: Pick<LogoutDeps, 'issuer' | 'keys' | 'now'>, target: { clientId: string; sub: string; sid: string }): Promise<{ token: string; jti: string }> {
  const iat = deps.now();
  const jti = randomToken(16);
  const claims = { iss: deps.issuer, aud: target.clientId, iat, exp: iat + LOGOUT_TOKEN_TTL, jti, sub: target.sub, sid: target.sid, events: { [BACKCHANNEL_LOGOUT_EVENT]: {} } };
  return { token: await signJwt(deps.keys, claims, LOGOUT_TOKEN_TYP), jti };
}

/** Deliveries in flight, per server (keyed by its audit log, shared by the context and the admin operations). */
const inFlight = new WeakMap<object, { pending: Set<Promise<unknown>>; stop: AbortController }>();

function tracker(deps: LogoutDeps) {
  let entry = inFlight.get(deps.audit);
  if (!entry) {
    entry = { pending: new Set(), stop: new AbortController() };
    inFlight.set(deps.audit, entry);
  }
  return entry;
}

/**
 * Sends the logout tokens in the background: the caller (a redirect to the client, an admin
 * answer) does not wait. The returned promise settles when every delivery has succeeded or given
 * up; `logoutDeliveriesSettled` waits for all of a server's.
 */
export function sendLogoutTokens(deps: LogoutDeps, targets: LogoutTarget[]): Promise<DeliveryOutcome[]> {
  const entry = tracker(deps);
  const all = Promise.all(targets.map((target) => deliver(deps, target, entry.stop.signal)));
  entry.pending.add(all);
  const done = () => void entry.pending.delete(all);
  all.then(done, done);
  return all;
}

/** Resolves when every delivery started so far on this server has finished (tests; shutdown). */
export async function logoutDeliveriesSettled(deps: Pick<LogoutDeps, 'audit'>): Promise<void> {
  const entry = inFlight.get(deps.audit);
  while (entry && entry.pending.size > 0) await Promise.allSettled([...entry.pending]);
}

/** At shutdown: no more retries (the attempt under way finishes within its deadline), then waits. */
export async function stopLogoutDeliveries(deps: Pick<LogoutDeps, 'audit'>): Promise<void> {
  inFlight.get(deps.audit)?.stop.abort();
  await logoutDeliveriesSettled(deps);
}

const pause = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });

/** One POST of `logout_token` (Back-Channel Logout 1.0 §2.5); the answer's status. */
async function post(uri: string, token: string, options: { guarded: boolean; allowLoopback: boolean; timeoutMs: number }): Promise<number> {
  const form = new URLSearchParams({ logout_token: token });
  if (options.guarded) {
    // A URI a client chose itself: only public addresses, pinned, no redirects (the SSRF guard).
    const response = await guardedFetch(new URL(uri), { allowLoopback: options.allowLoopback, maxBytes: 16_384, timeoutMs: options.timeoutMs, post: { form } });
    return response.status;
  }
  // A URI an administrator configured: internal hosts are fine; redirects are still not followed.
  const response = await fetch(uri, {
    method: 'POST',
    body: form,
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    signal: AbortSignal.timeout(options.timeoutMs),
  });
  await response.body?.cancel();
  return response.status;
}

/** Back-Channel Logout 1.0 §2.8: 200 (or 204) is success. Worth another try: no answer, 408, 429, 5xx. */
const retryable = (status: number) => status === 408 || status === 429 || status >= 500;

/** Delivers one logout token, retried with backoff; audits the outcome. */
async function deliver(deps: LogoutDeps, target: LogoutTarget, stop: AbortSignal): Promise<DeliveryOutcome> {
  const { client, sub, sid } = target;
  const clientId = client.clientId;
  const uri = client.metadata.backchannel_logout_uri!;
  const settings = deps.config.logout;
  const allowLoopback = deps.config.client_id_metadata_documents.allow_loopback;
  const guarded = isSelfRegistered(client);
  let attempts = 0;
  let reason: string | undefined;
  const audited = (delivered: boolean, extra: Record<string, unknown> = {}): DeliveryOutcome => {
    deps.audit.record({
      at: deps.now(),
      type: delivered ? 'logout.backchannel_sent' : 'logout.backchannel_failed',
      outcome: delivered ? 'success' : 'failure',
      clientId,
      sub,
      ...(delivered ? {} : { error: 'backchannel_logout_failed', reason }),
      data: { sid, uri, attempts, ...extra },
    });
    return { clientId, sid, delivered, attempts, ...(reason ? { reason } : {}) };
  };
  // Checked again at delivery: a metadata document is never registered, and the rule may have tightened.
  if (guarded && !backchannelUriAllowed(uri, allowLoopback)) {
    reason = 'backchannel_logout_uri is not an https URI without a fragment';
    return audited(false);
  }
  while (attempts < settings.backchannel_attempts) {
    if (attempts > 0) {
      await pause(settings.backchannel_retry_delay_ms * 2 ** (attempts - 1), stop);
      if (stop.aborted) {
        reason = `${reason}; not retried: the server is shutting down`;
        break;
      }
    }
    attempts++;
    try {
      const { token, jti } = await signLogoutToken(deps, { clientId, sub, sid });
      const status = await post(uri, token, { guarded, allowLoopback, timeoutMs: settings.backchannel_timeout_ms });
      if (status >= 200 && status < 300) return audited(true, { status, jti });
      reason = `the client answered HTTP ${status}`;
      if (!retryable(status)) break;
    } catch (error) {
      if (error instanceof FetchRefused && error.blocked) {
        reason = `refused by the network guard: ${error.message}`;
        break;
      }
      const failure = error as Error & { cause?: Error };
      reason = failure.name === 'TimeoutError' ? `no answer within ${settings.backchannel_timeout_ms} ms` : `no answer: ${failure.cause?.message ?? failure.message}`;
    }
  }
  reason = `${reason} (${attempts} attempt${attempts === 1 ? '' : 's'})`;
  return audited(false);
}

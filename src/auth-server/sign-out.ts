import { parseScope } from '../core/scopes.ts';
import type { ClientRecord, GrantRecord } from '../store/types.ts';
import type { ServerContext } from './context.ts';
import { sendLogoutTokens, type DeliveryOutcome, type LogoutDeps, type LogoutTarget } from './backchannel-logout.ts';
import { endSessions, type SessionEntry } from './session-index.ts';
import { forgetRemembered } from './remember/index.ts';

/**
 * What happens to the grants (and their refresh and access tokens) of the sessions that end:
 * - `online` (the default; /logout, the account page): grants made in those sessions are revoked
 *   unless they hold `offline_access`, which is the user's consent to access while away
 *   (Back-Channel Logout 1.0 §2.7: refresh tokens without it SHOULD be revoked, with it SHOULD NOT);
 * - `session` (an administrator signing a user out): every grant made in those sessions;
 * - `all` (a new password, a deleted user): every grant of the user, whatever session made it;
 * - `none`: sessions only.
 */
export type GrantRevocation = 'online' | 'session' | 'all' | 'none';

export interface SignOutOptions {
  /** Why the sessions end, for the audit: `rp_logout`, `account`, `admin`, `password_change`, … */
  via: string;
  revoke?: GrantRevocation;
  /** The client that asked (RP-initiated logout), for the audit. */
  clientId?: string;
  /** More for the `logout.completed` audit event (e.g. the admin who did it). */
  audit?: Record<string, unknown>;
  /**
   * Signing out of a browser: its device id hash (`Session.device`). The user's other sessions
   * opened in that browser end too (one left behind when its cookie was lost, then a remembered or
   * new sign-in), and their clients are told.
   */
  device?: string;
}

export interface SignOutResult {
  /** The sessions ended. */
  ended: SessionEntry[];
  revokedGrants: number;
  /** The clients sent a logout token (each with the session it is about). */
  notified: { clientId: string; sid: string }[];
  /** Settles when every logout token has been delivered or given up on (each audited). Nobody has to wait. */
  deliveries: Promise<DeliveryOutcome[]>;
}

/** The server parts signing out needs: the admin operations' deps are enough (`findClient` also finds metadata-document clients). */
export type SignOutDeps = LogoutDeps & Pick<ServerContext, 'store' | 'cache'> & Partial<Pick<ServerContext, 'findClient'>>;

const holdsOfflineAccess = (grant: GrantRecord) => parseScope(grant.scope).includes('offline_access');

/**
 * Ends a user's browser sessions — the one with `sid`, or all of them — and tells every client
 * that got a grant in an ended session (and has a `backchannel_logout_uri`) with a logout token
 * (OpenID Connect Back-Channel Logout 1.0), revoking grants as `options.revoke` says. Ending all
 * sessions also tells clients holding a live grant from a session that already expired here: their
 * own session may outlive ours, and forgets the user's remembered browsers ("Keep me signed in").
 * The logout tokens go out in the background; `logout.completed` is
 * audited now, and each delivery as `logout.backchannel_sent` / `logout.backchannel_failed`.
 *
 * Every place a session ends calls this: /logout, the account page's "Sign out", the admin's
 * `sessions.revoke`, a password change, a deleted user.
 *
 * @example
 * const { ended, deliveries } = await endSessionsAndNotify(ctx, session.sub, session.sid, { via: 'account' });
 */
export async function endSessionsAndNotify(deps: SignOutDeps, sub: string, sid?: string, options: SignOutOptions = { via: 'api' }): Promise<SignOutResult> {
  const ended = await endSessions(deps.cache, sub, sid, deps.config.tokens.session_ttl, sid === undefined ? undefined : options.device);
  const sids = new Set(ended.map((e) => e.sid));
  const now = deps.now();
  const grants = await deps.store.grants.listGrantsBySub(sub);
  const live = (g: GrantRecord) => g.revokedAt === undefined && g.expiresAt > now;
  const ofEnded = (g: GrantRecord) => g.sid !== undefined && sids.has(g.sid);

  // Whom to tell: one logout token per client and session.
  const pairs = new Map<string, { clientId: string; sid: string }>();
  for (const grant of grants) {
    if (grant.sid === undefined || !(ofEnded(grant) || (sid === undefined && live(grant)))) continue;
    pairs.set(`${grant.clientId} ${grant.sid}`, { clientId: grant.clientId, sid: grant.sid });
  }

  const revoke = options.revoke ?? 'online';
  const revocable = grants.filter(
    (g) => live(g) && (revoke === 'all' || (revoke === 'session' && ofEnded(g)) || (revoke === 'online' && ofEnded(g) && !holdsOfflineAccess(g))),
  );
  for (const grant of revocable) await deps.store.grants.revokeGrant(grant.id, now);

  // Signed out everywhere means kept signed in nowhere: a remember cookie (a thief's too) would
  // otherwise open a new session at the next visit, undoing an administrator's sign-out.
  if (sid === undefined) {
    const by = options.via === 'password_change' ? 'password_change' : options.via === 'admin' || options.via === 'user_deleted' ? 'admin' : 'sign_out';
    await forgetRemembered(deps, sub, by, undefined, by === 'admin' && typeof options.audit?.by === 'string' ? { actor: options.audit.by } : {});
  }

  const find = deps.findClient ?? ((id: string) => deps.store.clients.find(id));
  const clients = new Map<string, ClientRecord | undefined>();
  const targets: LogoutTarget[] = [];
  for (const pair of pairs.values()) {
    if (!clients.has(pair.clientId)) clients.set(pair.clientId, await find(pair.clientId).catch(() => undefined));
    const client = clients.get(pair.clientId);
    if (client?.metadata.backchannel_logout_uri) targets.push({ client, sub, sid: pair.sid });
  }
  const deliveries = sendLogoutTokens(deps, targets);
  const notified = targets.map((t) => ({ clientId: t.client.clientId, sid: t.sid }));

  deps.audit.record({
    at: now,
    type: 'logout.completed',
    outcome: 'success',
    sub,
    clientId: options.clientId,
    data: {
      via: options.via,
      sessions: ended.length,
      sids: [...sids],
      revoked_grants: revocable.length,
      backchannel: notified.map((n) => n.clientId),
      ...options.audit,
    },
  });
  return { ended, revokedGrants: revocable.length, notified, deliveries };
}

import { OAuthError } from '../../core/errors.ts';
import type { TrustedIdpConfig } from '../../config/schema.ts';
import type { UserRecord } from '../../store/types.ts';
import type { ServerContext } from '../context.ts';
import type { IdJagClaims } from './verify.ts';

/** How the local user of an assertion was found. */
export type LinkedBy = 'link' | 'sub' | 'email' | 'jit';

const noAccount = (reason: string): never => {
  throw new OAuthError('invalid_grant', 'no account for this identity', { reason });
};

/**
 * The local user an IdP's subject stands for (the "on sub, then email"). A remembered link
 * (`federated_identities`: issuer + the IdP's `sub` → our `sub`) always wins. Otherwise, in the
 * order of the entry's `link.claims`:
 * - `sub`: a local user whose `sub` is the IdP's, only with `link.local_sub` (off by default:
 *   another issuer's subject identifiers are not ours);
 * - `email`: the one local user with that email (lower-cased), unless the assertion says
 *   `email_verified: false`; several users with it refuse the grant (ambiguous, whatever `jit_users`).
 * None: with `jit_users` a user is created (`source: federated`, username = the email, else
 * `<issuer host>:<sub>`), else `invalid_grant`. A new link is remembered; of two concurrent first
 * uses one link wins and the other request uses it (a user it created is removed again).
 */
export async function linkUser(ctx: ServerContext, idp: TrustedIdpConfig, claims: IdJagClaims): Promise<{ sub: string; by: LinkedBy }> {
  const { store } = ctx;
  const now = ctx.now();
  const existing = await store.federation.findLink(claims.iss, claims.sub);
  if (existing) {
    await store.federation.touch(claims.iss, claims.sub, now);
    return { sub: existing.sub, by: 'link' };
  }
  const email = typeof claims.email === 'string' && claims.email.includes('@') ? claims.email : undefined;
  let found: { user: UserRecord; by: 'sub' | 'email' } | undefined;
  for (const claim of idp.link.claims) {
    if (claim === 'sub' && idp.link.local_sub) {
      const user = await store.users.findBySub(claims.sub);
      if (user) found = { user, by: 'sub' };
    } else if (claim === 'email' && email && claims.email_verified !== false) {
      const users = await store.users.findByEmail(email);
      if (users.length > 1) noAccount(`${users.length} local users have the email of ${claims.iss} subject ${claims.sub}; not linked`);
      if (users.length === 1) found = { user: users[0]!, by: 'email' };
    }
    if (found) break;
  }
  if (found) {
    const sub = await remember(ctx, claims, found.user.sub);
    if (sub === found.user.sub) audit(ctx, 'federation.user_linked', claims, sub, { by: found.by });
    return { sub, by: found.by };
  }
  if (!idp.jit_users) return noAccount(`no local user for ${claims.iss} subject ${claims.sub} (link.claims ${idp.link.claims.join(',')}; jit_users off)`);

  const host = new URL(claims.iss).host;
  const candidates = [...(email ? [email.toLowerCase()] : []), `${host}:${claims.sub}`];
  let username: string | undefined;
  for (const candidate of candidates) {
    if (!(await store.users.findByUsername(candidate))) {
      username = candidate;
      break;
    }
  }
  if (!username) return noAccount(`jit_users: the usernames ${candidates.join(', ')} are taken`);
  const name = typeof claims.name === 'string' ? claims.name : undefined;
  const user: UserRecord = { sub: crypto.randomUUID(), username, profile: { ...(name ? { name } : {}), ...(email ? { email } : {}) }, createdAt: now, source: 'federated' };
  await store.users.upsert(user);
  const sub = await remember(ctx, claims, user.sub);
  if (sub !== user.sub) {
    // Another request linked this identity first: ours is not needed.
    await store.users.delete(user.sub);
    return { sub, by: 'link' };
  }
  audit(ctx, 'federation.user_created', claims, sub, { username });
  return { sub, by: 'jit' };
}

/** Writes the link; when another request wrote one first, its `sub` is the answer. */
async function remember(ctx: ServerContext, claims: IdJagClaims, sub: string): Promise<string> {
  const wrote = await ctx.store.federation.link({ issuer: claims.iss, subject: claims.sub, sub, createdAt: ctx.now(), lastUsedAt: ctx.now() });
  if (wrote) return sub;
  const link = await ctx.store.federation.findLink(claims.iss, claims.sub);
  if (!link) throw new Error(`federated identity link of ${claims.iss} ${claims.sub} neither written nor found`);
  return link.sub;
}

function audit(ctx: ServerContext, type: string, claims: IdJagClaims, sub: string, data: Record<string, unknown>): void {
  ctx.audit.record({ at: ctx.now(), type, outcome: 'success', sub, clientId: claims.client_id, data: { idp: claims.iss, idp_sub: claims.sub, ...data } });
}

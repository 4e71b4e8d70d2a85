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
 * The local user an IdP's subject stands for (the issue's "on sub, then email"). A remembered link
 * (`federated_identities`: issuer + the IdP's `sub` → our `sub`) always wins. Otherwise, in the
 * order of the entry's `link.claims` (default `['sub']`):
 * - `sub`: a local user whose `sub` is the IdP's, only with `link.local_sub` (off by default:
 *   another issuer's subject identifiers are not ours);
 * - `email` (opt-in): the one eligible local user with that email (lower-cased), only when the
 *   assertion says `email_verified: true` and the address is in one of the entry's
 *   `link.email_domains`. Never eligible: a federated (just-in-time) user, a user linked from another
 *   issuer; eligible only with `link.local_users`: a user of the configuration file or the admin
 *   API, or one with admin roles. Several eligible users refuse the grant (ambiguous).
 * None: with `jit_users` a user is created (`source: federated`, username `<issuer host>:<email>`,
 * else `<issuer host>:<sub>`: per issuer, so no IdP takes a name another IdP's users would get),
 * else `invalid_grant` with the rules that did not match in the audit reason. A new link is
 * remembered; of concurrent first uses one link wins and the other requests use it.
 */
export async function linkUser(ctx: ServerContext, idp: TrustedIdpConfig, claims: IdJagClaims): Promise<{ sub: string; by: LinkedBy }> {
  const { store } = ctx;
  const now = ctx.now();
  const existing = await store.federation.findLink(claims.iss, claims.sub);
  if (existing) {
    await linkedUser(ctx, existing.sub, claims);
    await store.federation.touch(claims.iss, claims.sub, now);
    return { sub: existing.sub, by: 'link' };
  }
  const email = typeof claims.email === 'string' && claims.email.includes('@') ? claims.email : undefined;
  const why: string[] = [];
  let found: { user: UserRecord; by: 'sub' | 'email' } | undefined;
  for (const claim of idp.link.claims) {
    if (claim === 'sub' && idp.link.local_sub) {
      const user = await store.users.findBySub(claims.sub);
      if (user) found = { user, by: 'sub' };
      else why.push('sub: no local user with that sub');
    } else if (claim === 'email') {
      const user = await emailMatch(ctx, idp, claims, email, why);
      if (user) found = { user, by: 'email' };
    }
    if (found) break;
  }
  if (!idp.link.claims.includes('email') && email) why.push("email: not a link rule of this IdP (link.claims has no 'email')");
  if (found) {
    const sub = await remember(ctx, claims, found.user.sub);
    if (sub === found.user.sub) audit(ctx, 'federation.user_linked', claims, sub, { by: found.by });
    return { sub, by: found.by };
  }
  if (!idp.jit_users) {
    return noAccount(`no local user for ${claims.iss} subject ${claims.sub} (link.claims ${idp.link.claims.join(',')}; jit_users off)${why.length > 0 ? `: ${why.join('; ')}` : ''}`);
  }

  // The link is written first, under a new sub: of concurrent first uses exactly one wins it and
  // creates the user; the others use the winner's link (and wait for its user, see linkedUser).
  const sub = crypto.randomUUID();
  const owner = await remember(ctx, claims, sub);
  if (owner !== sub) {
    await linkedUser(ctx, owner, claims);
    return { sub: owner, by: 'link' };
  }
  let username: string;
  try {
    username = await createUser(ctx, claims, sub, email, now);
  } catch (error) {
    await store.federation.unlinkBySub(sub);
    throw error;
  }
  audit(ctx, 'federation.user_created', claims, sub, { username });
  return { sub, by: 'jit' };
}

/**
 * The `email` rule (F1 of the issue-17 review: no account takeover by an IdP asserting someone
 * else's address): verified, in the IdP's domains, and a user this IdP may be linked to. What did
 * not match goes to `why`, for the audit reason.
 */
async function emailMatch(ctx: ServerContext, idp: TrustedIdpConfig, claims: IdJagClaims, email: string | undefined, why: string[]): Promise<UserRecord | undefined> {
  if (!email) return void why.push('email: no email claim');
  if (claims.email_verified !== true) return void why.push(`email: email_verified is ${JSON.stringify(claims.email_verified ?? null)}, not true`);
  const domain = email.slice(email.lastIndexOf('@') + 1).toLowerCase();
  if (!(idp.link.email_domains ?? []).includes(domain)) return void why.push(`email: domain ${domain} is not in link.email_domains`);
  const eligible: UserRecord[] = [];
  for (const user of await ctx.store.users.findByEmail(email)) {
    const refusal = await ineligible(ctx, idp, claims.iss, user);
    if (refusal) why.push(`email: user ${user.username} ${refusal}`);
    else eligible.push(user);
  }
  if (eligible.length > 1) noAccount(`${eligible.length} local users have the email of ${claims.iss} subject ${claims.sub}; not linked`);
  if (eligible.length === 0 && !why.some((w) => w.startsWith('email: user '))) why.push('email: no local user with that email');
  return eligible[0];
}

/** Why a user may not be linked by email from `issuer`, or undefined when it may. */
async function ineligible(ctx: ServerContext, idp: TrustedIdpConfig, issuer: string, user: UserRecord): Promise<string | undefined> {
  if (user.source === 'federated') return 'is a federated user (created for another identity)';
  const others = (await ctx.store.federation.issuersOf(user.sub)).filter((i) => i !== issuer);
  if (others.length > 0) return `is linked from another issuer (${others.join(', ')})`;
  if (idp.link.local_users) return undefined;
  if ((user.roles ?? []).length > 0) return 'has admin roles (link.local_users off)';
  return `is a ${user.source ?? 'local'} user (link.local_users off)`;
}

/**
 * Creates the just-in-time user under the first free username, both per issuer:
 * `<issuer host>:<email>` (lower-cased), else `<issuer host>:<sub>`. A username taken meanwhile
 * (a unique violation) moves to the next one.
 */
async function createUser(ctx: ServerContext, claims: IdJagClaims, sub: string, email: string | undefined, now: number): Promise<string> {
  const { users } = ctx.store;
  const host = new URL(claims.iss).host;
  const candidates = [...(email ? [`${host}:${email.toLowerCase()}`] : []), `${host}:${claims.sub}`];
  const name = typeof claims.name === 'string' ? claims.name : undefined;
  for (const username of candidates) {
    if (await users.findByUsername(username)) continue;
    const user: UserRecord = { sub, username, profile: { ...(name ? { name } : {}), ...(email ? { email } : {}) }, createdAt: now, source: 'federated' };
    try {
      await users.upsert(user);
      return username;
    } catch (error) {
      if (await users.findByUsername(username)) continue;
      throw error;
    }
  }
  return noAccount(`jit_users: the usernames ${candidates.join(', ')} are taken`);
}

/** Attempts to find a linked user being created by a concurrent request, 50 ms apart. */
const CREATION_WAIT_ATTEMPTS = 20;

/**
 * The linked local user must exist. A link is written just before its just-in-time user, so a
 * concurrent request may see the link first: it waits briefly (at most a second) for the user.
 */
async function linkedUser(ctx: ServerContext, sub: string, claims: IdJagClaims): Promise<void> {
  for (let attempt = 0; attempt < CREATION_WAIT_ATTEMPTS; attempt++) {
    if (await ctx.store.users.findBySub(sub)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  noAccount(`${claims.iss} subject ${claims.sub} is linked to ${sub}, which is not a user`);
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

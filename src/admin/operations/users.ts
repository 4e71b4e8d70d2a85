import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { hashPassword } from '../../auth-server/passwords.ts';
import { forgetRemembered } from '../../auth-server/remember/index.ts';
import { endSessionsAndNotify } from '../../auth-server/sign-out.ts';
import type { UserRecord } from '../../store/types.ts';
import { AdminError, fromConfig, notFound } from '../errors.ts';
import { defineOperation, type AdminDeps } from '../operation.ts';
import { page, pageInput, paginate } from '../pagination.ts';
import type { Caller } from '../caller.ts';
import { ADMIN_SCOPES, isAdminScope, uncoveredRoles } from '../scopes.ts';

export const username = z.string().regex(/^[A-Za-z0-9._@+-]{1,100}$/, 'letters, digits and . _ @ + -').describe('The username.');
const role = z.string().refine(isAdminScope, { message: `an admin role: ${ADMIN_SCOPES.join(', ')}` });
const password = z.string().min(12, 'at least 12 characters').max(200);

export const userView = z.strictObject({
  sub: z.string(),
  username: z.string(),
  name: z.string().nullable(),
  email: z.string().nullable(),
  roles: z.array(z.string()),
  source: z.enum(['config', 'admin', 'federated']).describe('config: from the configuration file; admin: created through the admin API; federated: created on first sign-in through a trusted IdP (issue 17).'),
  has_password: z.boolean(),
  totp: z.enum(['enrolled', 'not enrolled']).describe('Whether the user confirmed an authenticator app (TOTP, docs/totp.md); a pending setup is not enrolled.'),
  created_at: z.number().int(),
});
export type UserView = z.output<typeof userView>;

export const toUserView = (u: UserRecord, totpEnrolled = false): UserView => ({
  sub: u.sub,
  username: u.username,
  name: u.profile.name ?? null,
  email: u.profile.email ?? null,
  roles: u.roles ?? [],
  // Users from before migration 0006 have no source: only the configuration file made users then.
  source: u.source ?? 'config',
  has_password: u.passwordHash !== undefined,
  totp: totpEnrolled ? 'enrolled' : 'not enrolled',
  created_at: u.createdAt,
});

/** The view with the user's TOTP state read from the store. */
export const readUserView = async (deps: Pick<AdminDeps, 'store'>, u: UserRecord): Promise<UserView> =>
  toUserView(u, (await deps.store.totp.confirmedAmong([u.sub])).has(u.sub));

/**
 * An admin may give, take or touch only roles their own scopes cover: `admin:users:write` alone
 * manages ordinary users and no admin more powerful than itself (no escalation through the users area).
 */
function assertCovers(caller: Caller, roles: readonly string[], action: string) {
  const beyond = uncoveredRoles(caller.scopes, roles);
  if (beyond.length > 0) {
    throw new AdminError('insufficient_scope', `${action} needs your own token to hold ${beyond.join(' ')}`, {
      scopes: ['admin:write'],
      reason: `${caller.username} holds ${caller.scopes.join(' ')}; ${action} involves ${beyond.join(' ')}`,
    });
  }
}

/**
 * The user an operation acts on, when the caller's own scopes cover that user's roles: signing a
 * more powerful admin out, or revoking their grants, is as much beyond a lesser admin as changing them.
 */
export async function findUserWithin(deps: Pick<AdminDeps, 'store'>, caller: Caller, name: string, action: string): Promise<UserRecord> {
  const user = await findUser(deps, name);
  assertCovers(caller, user.roles ?? [], action);
  return user;
}

export async function findUser(deps: Pick<AdminDeps, 'store'>, name: string): Promise<UserRecord> {
  const user = await deps.store.users.findByUsername(name);
  if (!user) throw notFound('user');
  return user;
}

/** Creates a user in the store (source `admin`). */
export async function createUser(
  deps: Pick<AdminDeps, 'store' | 'now'>,
  input: { username: string; password?: string; name?: string; email?: string; roles: string[] },
): Promise<UserView> {
  if (await deps.store.users.findByUsername(input.username)) throw new AdminError('conflict', 'a user with this username exists');
  const user: UserRecord = {
    sub: randomUUID(),
    username: input.username,
    passwordHash: input.password ? await hashPassword(input.password) : undefined,
    profile: { name: input.name, email: input.email },
    createdAt: deps.now(),
    roles: input.roles,
    source: 'admin',
  };
  await deps.store.users.upsert(user);
  return toUserView(user);
}

export const createUserInput = z.strictObject({
  username,
  password: password.optional().describe('Without one the user cannot sign in until an admin sets it.'),
  name: z.string().max(200).optional(),
  email: z.email().optional(),
  roles: z.array(role).max(ADMIN_SCOPES.length).default([]),
});

export const listUsers = defineOperation({
  name: 'users.list',
  area: 'users',
  access: 'read',
  summary: 'List users, ordered by username; `role` keeps those holding it.',
  input: z.strictObject({ ...pageInput, role: z.string().optional() }),
  output: page(userView),
  async run(deps, input) {
    const users = (await deps.store.users.list()).filter((u) => !input.role || (u.roles ?? []).includes(input.role));
    const result = paginate(users, (u) => u.username, input);
    const enrolled = await deps.store.totp.confirmedAmong(result.items.map((u) => u.sub));
    return { items: result.items.map((u) => toUserView(u, enrolled.has(u.sub))), next_cursor: result.next_cursor };
  },
});

export const readUser = defineOperation({
  name: 'users.read',
  area: 'users',
  access: 'read',
  summary: 'Read one user.',
  input: z.strictObject({ username }),
  output: userView,
  run: async (deps, input) => readUserView(deps, await findUser(deps, input.username)),
});

export const createUserOp = defineOperation({
  name: 'users.create',
  area: 'users',
  access: 'write',
  summary: 'Create a user, with admin roles if given.',
  input: createUserInput,
  output: userView,
  target: (input) => ({ data: { username: input.username, roles: input.roles } }),
  run: (deps, input, caller) => {
    assertCovers(caller, input.roles, 'giving these roles');
    return createUser(deps, input);
  },
});

export const updateUser = defineOperation({
  name: 'users.update',
  area: 'users',
  access: 'write',
  summary: 'Change a user of the store: profile, password (which signs them out everywhere: sessions ended, grants revoked), roles. Users of the configuration file are changed there.',
  input: z.strictObject({ username, name: z.string().max(200).nullable().optional(), email: z.email().nullable().optional(), password: password.optional(), roles: z.array(role).max(ADMIN_SCOPES.length).optional() }),
  output: userView,
  current: async (deps, input) => readUserView(deps, await findUser(deps, input.username)),
  target: (input) => ({ data: { username: input.username, change: Object.keys(input).filter((k) => k !== 'username'), ...(input.roles ? { roles: input.roles } : {}) } }),
  async run(deps, input, caller) {
    const user = await findUser(deps, input.username);
    if (user.source !== 'admin') throw fromConfig('user');
    assertCovers(caller, [...(user.roles ?? []), ...(input.roles ?? [])], 'changing this user');
    if (input.roles && user.sub === caller.sub && !input.roles.includes('admin:write') && (user.roles ?? []).includes('admin:write') && !(await anotherWriter(deps, user.sub))) {
      throw new AdminError('conflict', 'this would leave no admin with admin:write; give the role to another user first');
    }
    const next: UserRecord = {
      ...user,
      profile: {
        name: input.name === undefined ? user.profile.name : (input.name ?? undefined),
        email: input.email === undefined ? user.profile.email : (input.email ?? undefined),
      },
      passwordHash: input.password ? await hashPassword(input.password) : user.passwordHash,
      roles: input.roles ?? user.roles,
    };
    await deps.store.users.upsert(next);
    // A new password signs the user out everywhere: whoever held a session or a grant under the old one keeps nothing.
    if (input.password) await signOutEverywhere(deps, user.sub, 'password_change', caller.username);
    // Remembered browsers too: a cookie set under the old password must not sign anyone in.
    if (input.password) await forgetRemembered(deps, user.sub, 'password_change');
    return readUserView(deps, next);
  },
});

/** Ends the user's browser sessions, revokes every grant they gave (and the tokens under them), and sends back-channel logout tokens. */
async function signOutEverywhere(deps: AdminDeps, sub: string, via: string, by: string): Promise<void> {
  await endSessionsAndNotify(deps, sub, undefined, { via, revoke: 'all', audit: { by } });
}

async function anotherWriter(deps: Pick<AdminDeps, 'store'>, sub: string): Promise<boolean> {
  return (await deps.store.users.list()).some((u) => u.sub !== sub && (u.roles ?? []).includes('admin:write'));
}

export const deleteUser = defineOperation({
  name: 'users.delete',
  area: 'users',
  access: 'write',
  summary: 'Delete a user of the store; their grants (and the tokens issued under them) are revoked first.',
  input: z.strictObject({ username }),
  output: z.strictObject({ deleted: z.literal(true) }),
  current: async (deps, input) => toUserView(await findUser(deps, input.username)),
  target: (input) => ({ data: { username: input.username } }),
  async run(deps, input, caller) {
    const user = await findUser(deps, input.username);
    if (user.source !== 'admin') throw fromConfig('user', 'remove it there');
    assertCovers(caller, user.roles ?? [], 'deleting this user');
    if (user.sub === caller.sub) throw new AdminError('conflict', 'an admin cannot delete their own account');
    await signOutEverywhere(deps, user.sub, 'user_deleted', caller.username);
    await deps.store.users.delete(user.sub);
    return { deleted: true as const };
  },
});

export const resetUserTotp = defineOperation({
  name: 'users.reset_totp',
  area: 'users',
  access: 'write',
  summary:
    "Remove a user's authenticator app (TOTP), confirmed or pending: the recovery when the phone is lost. Until they set up a new one, the approval page asks for their password.",
  input: z.strictObject({ username }),
  output: z.strictObject({ removed: z.boolean().describe('False when the user had none.') }),
  current: async (deps, input) => readUserView(deps, await findUser(deps, input.username)),
  target: (input) => ({ data: { username: input.username } }),
  async run(deps, input, caller) {
    const user = await findUserWithin(deps, caller, input.username, "resetting this user's second factor");
    const removed = await deps.store.totp.delete(user.sub);
    if (removed) deps.audit.record({ at: deps.now(), type: 'totp.removed', outcome: 'success', sub: user.sub, data: { how: 'admin', by: caller.username } });
    return { removed };
  },
});

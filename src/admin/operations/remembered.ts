import { z } from 'zod';
import { forgetRemembered } from '../../auth-server/remember/index.ts';
import { notFound } from '../errors.ts';
import { defineOperation } from '../operation.ts';
import { findUser, findUserWithin, username } from './users.ts';

/** A remembered browser ("Keep me signed in", docs/browser-sessions.md), never its hashes. */
export const rememberedDeviceView = z.strictObject({
  id: z.string().describe('The remembered sign-in: revoke it by this id.'),
  user_agent: z.string().nullable().describe('Browser family and operating system at its last use, e.g. "Chrome on Linux".'),
  address_prefix: z.string().nullable().describe('The client address (IPv4 /24, IPv6 /48) at its last use.'),
  country: z.string().nullable().describe('The country a trusted proxy reported at its last use, if configured.'),
  created_at: z.number().int(),
  last_used_at: z.number().int(),
  expires_at: z.number().int().describe('Absolute end (remember_me.lifetime_days after the password sign-in); rotation never extends it.'),
});

export const listRemembered = defineOperation({
  name: 'remembered.list',
  area: 'sessions',
  access: 'read',
  summary: "A user's remembered browsers: those that sign in without the password while the risk is low.",
  input: z.strictObject({ username }),
  output: z.strictObject({ items: z.array(rememberedDeviceView) }),
  async run(deps, input) {
    const user = await findUser(deps, input.username);
    const records = await deps.store.remembered.listBySub(user.sub, deps.now());
    return {
      items: records.map((r) => ({
        id: r.id,
        user_agent: r.userAgent ?? null,
        address_prefix: r.addressPrefix ?? null,
        country: r.country ?? null,
        created_at: r.createdAt,
        last_used_at: r.lastUsedAt,
        expires_at: r.expiresAt,
      })),
    };
  },
});

export const revokeRemembered = defineOperation({
  name: 'remembered.revoke',
  area: 'sessions',
  access: 'write',
  summary: 'Forget one remembered browser of a user (id), or all of them: they ask for the password next time. Open sessions are not ended (sessions.revoke does that).',
  input: z.strictObject({ username, id: z.string().min(1).max(100).optional().describe('One remembered browser; all when omitted.') }),
  output: z.strictObject({ revoked: z.number().int() }),
  target: (input) => ({ data: { username: input.username, ...(input.id ? { id: input.id } : {}) } }),
  async run(deps, input, caller) {
    const user = await findUserWithin(deps, caller, input.username, "forgetting this user's browsers");
    const revoked = await forgetRemembered(deps, user.sub, 'admin', input.id, { actor: caller.username });
    if (input.id !== undefined && revoked === 0) throw notFound('remembered browser');
    return { revoked };
  },
});

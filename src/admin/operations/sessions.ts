import { z } from 'zod';
import { userSessions } from '../../auth-server/session-index.ts';
import { endSessionsAndNotify } from '../../auth-server/sign-out.ts';
import { notFound } from '../errors.ts';
import { defineOperation } from '../operation.ts';
import { findUser, findUserWithin, username } from './users.ts';

export const sessionView = z.strictObject({
  sid: z.string().describe('The public session id, carried by tokens and grants as sid.'),
  auth_time: z.number().int(),
  expires_at: z.number().int(),
});

export const listSessions = defineOperation({
  name: 'sessions.list',
  area: 'sessions',
  access: 'read',
  summary: "A user's browser sign-in sessions that are still open.",
  input: z.strictObject({ username }),
  output: z.strictObject({ items: z.array(sessionView) }),
  async run(deps, input) {
    const user = await findUser(deps, input.username);
    const ttl = deps.config.tokens.session_ttl;
    return { items: (await userSessions(deps.cache, user.sub)).map((s) => ({ sid: s.sid, auth_time: s.authTime, expires_at: (s.startedAt ?? s.authTime) + ttl })) };
  },
});

export const signOut = defineOperation({
  name: 'sessions.revoke',
  area: 'sessions',
  access: 'write',
  summary:
    'Sign a user out: end one session (sid) or all of them, revoke the grants made in them (their tokens stop working), and send back-channel logout tokens to the clients that got them.',
  input: z.strictObject({ username, sid: z.string().min(1).optional().describe('One session; all when omitted.') }),
  output: z.strictObject({ signed_out: z.number().int(), revoked_grants: z.number().int() }),
  target: (input) => ({ data: { username: input.username, ...(input.sid ? { sid: input.sid } : {}) } }),
  async run(deps, input, caller) {
    const user = await findUserWithin(deps, caller, input.username, 'signing this user out');
    const result = await endSessionsAndNotify(deps, user.sub, input.sid, { via: 'admin', revoke: 'session', audit: { by: caller.username } });
    if (input.sid !== undefined && result.ended.length === 0) throw notFound('session');
    return { signed_out: result.ended.length, revoked_grants: result.revokedGrants };
  },
});

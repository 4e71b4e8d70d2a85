import type { Caller } from '../caller.ts';
import { AdminError } from '../errors.ts';
import { defineOperation, invoke, type AdminDeps } from '../operation.ts';
import { createUser, createUserInput, userView } from './users.ts';

/**
 * Creates the first admin: the one thing the static admin token still does (docs/admin.md).
 * Refused once any user holds an admin role, from the configuration file or the store.
 */
export const bootstrapOperation = defineOperation({
  name: 'bootstrap',
  area: 'users',
  access: 'write',
  summary: 'Create the first admin (static admin token only; refused once an admin exists).',
  input: createUserInput.extend({
    password: createUserInput.shape.password.unwrap(),
    roles: createUserInput.shape.roles.unwrap().min(1).default(['admin:write']),
  }),
  output: userView,
  target: (input) => ({ data: { username: input.username, roles: input.roles } }),
  async run(deps, input) {
    // Two bootstraps at once (on any instance, with Redis) must not both see "no admin yet".
    if (!(await deps.cache.add('admin-bootstrap', true, 10))) throw new AdminError('conflict', 'another bootstrap is in progress; retry in a few seconds');
    try {
      const admins = (await deps.store.users.list()).filter((u) => (u.roles ?? []).length > 0);
      if (admins.length > 0) throw new AdminError('conflict', 'an admin exists already; sign in as an admin to add others', { reason: `admins exist: ${admins.map((u) => u.username).join(', ')}` });
      return await createUser(deps, input);
    } finally {
      await deps.cache.delete('admin-bootstrap');
    }
  },
});

/** Runs the bootstrap as the static token's holder, audited as front end `bootstrap`. */
export function runBootstrap(deps: AdminDeps, input: unknown, correlation: { requestId?: string } = {}) {
  const caller: Caller = { sub: 'bootstrap-token', username: 'bootstrap-token', scopes: ['admin:users:write'], frontEnd: 'bootstrap', ...correlation };
  return invoke(deps, caller, bootstrapOperation, input);
}

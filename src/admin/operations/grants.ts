import { z } from 'zod';
import type { GrantRecord } from '../../store/types.ts';
import { notFound } from '../errors.ts';
import { defineOperation } from '../operation.ts';
import { page, pageInput, paginate } from '../pagination.ts';
import { findUser, findUserWithin, username } from './users.ts';

export const grantView = z.strictObject({
  id: z.string(),
  client_id: z.string(),
  resource: z.string(),
  scope: z.string(),
  created_at: z.number().int(),
  expires_at: z.number().int(),
  revoked_at: z.number().int().nullable(),
  active: z.boolean(),
  acr: z.string().nullable(),
});

const toGrantView = (g: GrantRecord, now: number) => ({
  id: g.id,
  client_id: g.clientId,
  resource: g.resource,
  scope: g.scope,
  created_at: g.createdAt,
  expires_at: g.expiresAt,
  revoked_at: g.revokedAt ?? null,
  active: g.revokedAt === undefined && g.expiresAt > now,
  acr: g.acr ?? null,
});

export const consentView = z.strictObject({ client_id: z.string(), resource: z.string(), scope: z.string(), created_at: z.number().int() });

export const listGrants = defineOperation({
  name: 'grants.list',
  area: 'grants',
  access: 'read',
  summary: "A user's grants (what a sign-in gave a client for a resource), newest first; `active=true` hides revoked and expired ones.",
  input: z.strictObject({ username, ...pageInput, active: z.enum(['true', 'false']).optional() }),
  output: page(grantView),
  async run(deps, input) {
    const user = await findUser(deps, input.username);
    const now = deps.now();
    const grants = (await deps.store.grants.listGrantsBySub(user.sub)).map((g) => toGrantView(g, now)).filter((g) => input.active === undefined || g.active === (input.active === 'true'));
    // Newest first: the key sorts by descending creation time, then id.
    return paginate(grants, (g) => `${String(Number.MAX_SAFE_INTEGER - g.created_at).padStart(16, '0')}:${g.id}`, input);
  },
});

export const revokeGrant = defineOperation({
  name: 'grants.revoke',
  area: 'grants',
  access: 'write',
  summary: 'Revoke one grant of a user: its refresh tokens and every access token issued under it (exchanged ones included) stop working.',
  input: z.strictObject({ username, grant_id: z.string().min(1) }),
  output: grantView,
  target: (input) => ({ data: { username: input.username, grant_id: input.grant_id } }),
  async run(deps, input, caller) {
    const user = await findUserWithin(deps, caller, input.username, "revoking this user's grants");
    const grant = await deps.store.grants.findGrant(input.grant_id);
    if (!grant || grant.sub !== user.sub) throw notFound('grant');
    if (!grant.revokedAt) await deps.store.grants.revokeGrant(grant.id, deps.now());
    return toGrantView((await deps.store.grants.findGrant(grant.id))!, deps.now());
  },
});

export const listConsents = defineOperation({
  name: 'consents.list',
  area: 'grants',
  access: 'read',
  summary: "A user's remembered consents (client and resource pairs the consent page is not shown again for).",
  input: z.strictObject({ username, ...pageInput }),
  output: page(consentView),
  async run(deps, input) {
    const user = await findUser(deps, input.username);
    const consents = (await deps.store.consents.listBySub(user.sub)).map((c) => ({ client_id: c.clientId, resource: c.resource, scope: c.scope, created_at: c.createdAt }));
    return paginate(consents, (c) => `${c.client_id}\u0000${c.resource}`, input);
  },
});

export const revokeConsent = defineOperation({
  name: 'consents.revoke',
  area: 'grants',
  access: 'write',
  summary: 'Forget a consent, and revoke the grants the user gave that client for that resource: the next sign-in asks again.',
  input: z.strictObject({ username, client_id: z.string().min(1), resource: z.string().min(1) }),
  output: z.strictObject({ revoked_grants: z.number().int() }),
  target: (input) => ({ clientId: input.client_id, data: { username: input.username, resource: input.resource } }),
  async run(deps, input, caller) {
    const user = await findUserWithin(deps, caller, input.username, "revoking this user's consents");
    const existed = await deps.store.consents.delete(user.sub, input.client_id, input.resource);
    const now = deps.now();
    const grants = (await deps.store.grants.listGrantsBySub(user.sub)).filter((g) => g.clientId === input.client_id && g.resource === input.resource && !g.revokedAt);
    if (!existed && grants.length === 0) throw notFound('consent');
    for (const grant of grants) await deps.store.grants.revokeGrant(grant.id, now);
    return { revoked_grants: grants.length };
  },
});

import { z } from 'zod';
import { defineOperation } from '../operation.ts';

export const keyView = z.strictObject({
  kid: z.string(),
  created_at: z.number().int(),
  use_from: z.number().int().describe('When it starts (or started) signing, epoch seconds.'),
  state: z.enum(['next', 'active', 'retired']).describe('next: published, not signing yet; active: signs; retired: verifies tokens it signed.'),
});

export const listKeys = defineOperation({
  name: 'keys.list',
  area: 'keys',
  access: 'read',
  summary: 'The signing keys, in rotation order (public facts only: never key material).',
  input: z.strictObject({}),
  output: z.strictObject({ items: z.array(keyView) }),
  async run(deps) {
    const now = deps.now();
    const keys = deps.keys.list();
    const active = keys.findLast((k) => k.useFrom <= now) ?? keys[0];
    return {
      items: keys.map((k) => ({ kid: k.kid, created_at: k.createdAt, use_from: k.useFrom, state: k === active ? ('active' as const) : k.useFrom > now ? ('next' as const) : ('retired' as const) })),
    };
  },
});

export const rotateKeys = defineOperation({
  name: 'keys.rotate',
  area: 'keys',
  access: 'write',
  summary: 'Add a signing key, published at once and signing after keys.publish_before_use seconds (so verifiers fetch it first); keys nothing can need any more are dropped.',
  input: z.strictObject({}),
  output: z.strictObject({ kid: z.string(), use_from: z.number().int() }),
  async run(deps) {
    const { kid, useFrom } = await deps.keys.rotate(deps.config.keys.publish_before_use);
    deps.audit.record({ at: deps.now(), type: 'keys.rotated', outcome: 'success', data: { kid, use_from: useFrom } });
    return { kid, use_from: useFrom };
  },
});

import { z } from 'zod';
import { agreementSchema, authenticationPolicySchema, authServerConfigSchema } from '../../config/schema.ts';
import { notFound } from '../errors.ts';
import { defineOperation } from '../operation.ts';

/**
 * Agreements, authentication policies and the registration policy live in the configuration file
 * only (the store has no table for them yet): the admin plane reads them. Changing them is a change
 * to the file and a restart (docs/admin.md).
 */
const agreementView = agreementSchema.extend({ source: z.literal('config') });
const policyView = authenticationPolicySchema.extend({ source: z.literal('config') });

export const listAgreements = defineOperation({
  name: 'agreements.list',
  area: 'agreements',
  access: 'read',
  summary: 'The agreements users accept (terms of use), from the configuration file.',
  input: z.strictObject({}),
  output: z.strictObject({ items: z.array(agreementView) }),
  run: async (deps) => ({ items: deps.config.agreements.map((a) => ({ ...a, source: 'config' as const })) }),
});

export const readAgreement = defineOperation({
  name: 'agreements.read',
  area: 'agreements',
  access: 'read',
  summary: 'One agreement.',
  input: z.strictObject({ id: z.string().min(1) }),
  output: agreementView,
  async run(deps, input) {
    const found = deps.agreement(input.id);
    if (!found) throw notFound('agreement');
    return { ...found, source: 'config' as const };
  },
});

export const listPolicies = defineOperation({
  name: 'policies.list',
  area: 'policies',
  access: 'read',
  summary: 'The authentication policies (ordered sign-in steps; the name becomes acr), from the configuration file.',
  input: z.strictObject({}),
  output: z.strictObject({ items: z.array(policyView) }),
  run: async (deps) => ({ items: deps.config.authentication_policies.map((p) => ({ ...p, source: 'config' as const })) }),
});

export const readPolicy = defineOperation({
  name: 'policies.read',
  area: 'policies',
  access: 'read',
  summary: 'One authentication policy.',
  input: z.strictObject({ name: z.string().min(1) }),
  output: policyView,
  async run(deps, input) {
    const found = deps.authenticationPolicy(input.name);
    if (!found) throw notFound('authentication policy');
    return { ...found, source: 'config' as const };
  },
});

export const readRegistration = defineOperation({
  name: 'registration.read',
  area: 'registration',
  access: 'read',
  summary: 'The registration policy: who may register, which scopes self-registered clients may hold, limits.',
  input: z.strictObject({}),
  output: authServerConfigSchema.shape.registration.unwrap(),
  run: async (deps) => deps.config.registration,
});

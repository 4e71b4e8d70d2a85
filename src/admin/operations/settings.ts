import { z } from 'zod';
import { agreementSchema, authenticationPolicySchema, authServerConfigSchema } from '../../config/schema.ts';
import type { SettingRecord } from '../../store/types.ts';
import { AdminError, fromConfig, notFound } from '../errors.ts';
import { defineOperation, type AdminDeps } from '../operation.ts';

/**
 * Agreements and authentication policies: those of the configuration file (read-only here) and
 * those added through the admin API (kept in the store, editable). The registration policy is the
 * file's only.
 */
const source = z.enum(['config', 'admin']);
const agreementView = agreementSchema.extend({ source });
const policyView = authenticationPolicySchema.extend({ source });

async function save(deps: AdminDeps, kind: SettingRecord['kind'], id: string, definition: object) {
  await deps.store.settings.upsert({ kind, id, definition: definition as Record<string, unknown>, updatedAt: deps.now() });
  await deps.reloadSettings();
}

const findAgreement = (deps: AdminDeps, id: string) => {
  const found = deps.agreement(id);
  if (!found) throw notFound('agreement');
  return found;
};

const findPolicy = (deps: AdminDeps, name: string) => {
  const found = deps.authenticationPolicy(name);
  if (!found) throw notFound('authentication policy');
  return found;
};

function checkSteps(deps: AdminDeps, policy: z.output<typeof authenticationPolicySchema>) {
  for (const step of policy.steps) {
    if (typeof step === 'object' && !deps.agreement(step.agreement)) throw new AdminError('invalid_request', `invalid input: steps: unknown agreement ${step.agreement}`);
  }
}

export const listAgreements = defineOperation({
  name: 'agreements.list',
  area: 'agreements',
  access: 'read',
  summary: 'The agreements users accept (terms of use).',
  input: z.strictObject({}),
  output: z.strictObject({ items: z.array(agreementView) }),
  run: async (deps) => ({ items: deps.listAgreements() }),
});

export const readAgreement = defineOperation({
  name: 'agreements.read',
  area: 'agreements',
  access: 'read',
  summary: 'One agreement.',
  input: z.strictObject({ id: z.string().min(1) }),
  output: agreementView,
  run: async (deps, input) => findAgreement(deps, input.id),
});

export const createAgreement = defineOperation({
  name: 'agreements.create',
  area: 'agreements',
  access: 'write',
  summary: 'Add an agreement; an authentication policy step `{agreement: <id>}` then asks users to accept it.',
  input: agreementSchema,
  output: agreementView,
  target: (input) => ({ data: { agreement: input.id, version: input.version } }),
  async run(deps, input) {
    if (deps.agreement(input.id)) throw new AdminError('conflict', 'an agreement with this id exists');
    await save(deps, 'agreement', input.id, input);
    return findAgreement(deps, input.id);
  },
});

export const updateAgreement = defineOperation({
  name: 'agreements.update',
  area: 'agreements',
  access: 'write',
  summary: 'Replace an agreement added through the API. Raise its version when the text changes: every user is asked again.',
  input: agreementSchema.omit({ id: true }).extend({ id: z.string().min(1) }),
  output: agreementView,
  current: async (deps, input) => findAgreement(deps, input.id),
  target: (input) => ({ data: { agreement: input.id, version: input.version } }),
  async run(deps, input) {
    const existing = findAgreement(deps, input.id);
    if (existing.source === 'config') throw fromConfig('agreement');
    if (input.version < existing.version) throw new AdminError('invalid_request', `invalid input: version: must not go below ${existing.version}`);
    await save(deps, 'agreement', input.id, input);
    return findAgreement(deps, input.id);
  },
});

export const deleteAgreement = defineOperation({
  name: 'agreements.delete',
  area: 'agreements',
  access: 'write',
  summary: 'Remove an agreement added through the API, unless a policy still asks for it.',
  input: z.strictObject({ id: z.string().min(1) }),
  output: z.strictObject({ deleted: z.literal(true) }),
  current: async (deps, input) => findAgreement(deps, input.id),
  target: (input) => ({ data: { agreement: input.id } }),
  async run(deps, input) {
    if (findAgreement(deps, input.id).source === 'config') throw fromConfig('agreement', 'remove it there');
    const users = deps.listAuthenticationPolicies().filter((p) => p.steps.some((s) => typeof s === 'object' && s.agreement === input.id));
    if (users.length > 0) throw new AdminError('conflict', `authentication policies ask for this agreement: ${users.map((p) => p.name).join(', ')}`);
    await deps.store.settings.delete('agreement', input.id);
    await deps.reloadSettings();
    return { deleted: true as const };
  },
});

export const listPolicies = defineOperation({
  name: 'policies.list',
  area: 'policies',
  access: 'read',
  summary: 'The authentication policies (ordered sign-in steps; the name becomes acr).',
  input: z.strictObject({}),
  output: z.strictObject({ items: z.array(policyView) }),
  run: async (deps) => ({ items: deps.listAuthenticationPolicies() }),
});

export const readPolicy = defineOperation({
  name: 'policies.read',
  area: 'policies',
  access: 'read',
  summary: 'One authentication policy.',
  input: z.strictObject({ name: z.string().min(1) }),
  output: policyView,
  run: async (deps, input) => findPolicy(deps, input.name),
});

export const createPolicy = defineOperation({
  name: 'policies.create',
  area: 'policies',
  access: 'write',
  summary: 'Add an authentication policy; clients name it in authentication_policy.',
  input: authenticationPolicySchema,
  output: policyView,
  target: (input) => ({ data: { policy: input.name } }),
  async run(deps, input) {
    if (deps.authenticationPolicy(input.name)) throw new AdminError('conflict', 'an authentication policy with this name exists');
    checkSteps(deps, input);
    await save(deps, 'authentication_policy', input.name, input);
    return findPolicy(deps, input.name);
  },
});

export const updatePolicy = defineOperation({
  name: 'policies.update',
  area: 'policies',
  access: 'write',
  summary: 'Replace the steps of an authentication policy added through the API.',
  input: authenticationPolicySchema,
  output: policyView,
  current: async (deps, input) => findPolicy(deps, input.name),
  target: (input) => ({ data: { policy: input.name } }),
  async run(deps, input) {
    if (findPolicy(deps, input.name).source === 'config') throw fromConfig('authentication policy');
    checkSteps(deps, input);
    await save(deps, 'authentication_policy', input.name, input);
    return findPolicy(deps, input.name);
  },
});

export const deletePolicy = defineOperation({
  name: 'policies.delete',
  area: 'policies',
  access: 'write',
  summary: 'Remove an authentication policy added through the API, unless a client still names it (its sign-ins would silently lose their steps).',
  input: z.strictObject({ name: z.string().min(1) }),
  output: z.strictObject({ deleted: z.literal(true) }),
  current: async (deps, input) => findPolicy(deps, input.name),
  target: (input) => ({ data: { policy: input.name } }),
  async run(deps, input) {
    if (findPolicy(deps, input.name).source === 'config') throw fromConfig('authentication policy', 'remove it there');
    const users = (await deps.store.clients.list()).filter((c) => c.metadata.authentication_policy === input.name);
    if (users.length > 0) throw new AdminError('conflict', `clients name this policy: ${users.map((c) => c.clientId).join(', ')}`);
    await deps.store.settings.delete('authentication_policy', input.name);
    await deps.reloadSettings();
    return { deleted: true as const };
  },
});

export const readRegistration = defineOperation({
  name: 'registration.read',
  area: 'registration',
  access: 'read',
  summary: 'The registration policy (from the configuration file): who may register, which scopes self-registered clients may hold, limits.',
  input: z.strictObject({}),
  output: authServerConfigSchema.shape.registration.unwrap(),
  run: async (deps) => deps.config.registration,
});

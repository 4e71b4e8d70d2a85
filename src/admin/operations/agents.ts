import { z } from 'zod';
import { fromConfig } from '../errors.ts';
import { defineOperation } from '../operation.ts';
import { page, pageInput, paginate } from '../pagination.ts';
import { agentView, toAgentView } from './client-views.ts';
import { clientCreated, clientFields, createClient, deleteClient, findClient, workloadIdentityInput } from './clients.ts';
import { applyLifecycle } from './lifecycle.ts';

const id = z.string().min(1).max(500).describe('The agent\'s client_id.');
const expiresAt = z.iso.datetime({ offset: true }).describe('ISO 8601; after it the agent is refused.');

export const listAgents = defineOperation({
  name: 'agents.list',
  area: 'agents',
  access: 'read',
  summary: 'List agents, ordered by client_id; filter by owner or state.',
  input: z.strictObject({ ...pageInput, owner: z.string().optional(), enabled: z.enum(['true', 'false']).optional() }),
  output: page(agentView),
  async run(deps, input) {
    const agents = (await deps.store.clients.list())
      .filter((r) => r.agent)
      .filter((r) => input.owner === undefined || r.agent!.owner === input.owner)
      .filter((r) => input.enabled === undefined || (r.disabledAt === undefined) === (input.enabled === 'true'));
    const result = paginate(agents, (r) => r.clientId, input);
    return { items: result.items.map(toAgentView), next_cursor: result.next_cursor };
  },
});

export const readAgent = defineOperation({
  name: 'agents.read',
  area: 'agents',
  access: 'read',
  summary: 'Read one agent.',
  input: z.strictObject({ id }),
  output: agentView,
  run: async (deps, input) => toAgentView(await findClient(deps, input.id, 'agent')),
});

export const createAgent = defineOperation({
  name: 'agents.create',
  area: 'agents',
  access: 'write',
  summary: 'Create an agent (a confidential client with an agent identity); its secret is returned once.',
  input: z.strictObject({
    client_id: z.string().regex(/^[A-Za-z0-9._:-]{1,100}$/).optional(),
    agent_type: z.string().min(1).max(100).default('assistant'),
    owner: z.string().min(1).optional(),
    expires_at: expiresAt.optional(),
    token_endpoint_auth_method: z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
    workload_identity: workloadIdentityInput.optional().describe('The agent authenticates with a platform JWT instead of a secret (docs/workload-identity.md).'),
    ...clientFields,
  }),
  output: clientCreated,
  target: (input) => ({ clientId: input.client_id }),
  run: (deps, { agent_type, owner, expires_at, ...client }) => createClient(deps, { ...client, agent: { agent_type, owner, expires_at } }),
});

export const updateAgent = defineOperation({
  name: 'agents.update',
  area: 'agents',
  access: 'write',
  summary:
    'Enable, disable, set expiry or owner. Disabling revokes its grants and tokens and cuts off every token whose delegation chain names it; enabling again does not revive them.',
  input: z.strictObject({ id, enabled: z.boolean().optional(), expires_at: expiresAt.nullable().optional(), owner: z.string().min(1).nullable().optional() }),
  output: agentView,
  current: async (deps, input) => toAgentView(await findClient(deps, input.id, 'agent')),
  target: (input) => ({ clientId: input.id, data: { change: Object.fromEntries(Object.entries(input).filter(([k]) => k !== 'id')) } }),
  async run(deps, input) {
    const record = await findClient(deps, input.id, 'agent');
    // The file's values win at every start: changing them here would silently come undone.
    const configured = record.source === 'config' ? deps.config.agents.find((a) => a.client_id === record.clientId) : undefined;
    if (configured?.owner !== undefined && input.owner !== undefined) throw fromConfig('agent\'s owner');
    if (configured?.expires_at !== undefined && input.expires_at !== undefined) throw fromConfig('agent\'s expiry');
    return toAgentView(await applyLifecycle(deps, record, input));
  },
});

export const deleteAgent = defineOperation({
  name: 'agents.delete',
  area: 'agents',
  access: 'write',
  summary: 'Delete an agent (not one of the configuration file): its grants and tokens are revoked first.',
  input: z.strictObject({ id }),
  output: z.strictObject({ deleted: z.literal(true) }),
  current: async (deps, input) => toAgentView(await findClient(deps, input.id, 'agent')),
  target: (input) => ({ clientId: input.id }),
  run: async (deps, input) => deleteClient(deps, await findClient(deps, input.id, 'agent')),
});

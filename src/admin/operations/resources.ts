import { z } from 'zod';
import { resourceSchema, type ResourceConfig } from '../../config/schema.ts';
import type { ResourceRecord } from '../../store/types.ts';
import { AdminError, fromConfig, notFound } from '../errors.ts';
import { defineOperation, type AdminDeps } from '../operation.ts';
import { page, pageInput, paginate } from '../pagination.ts';

/** A resource as the configuration file defines it, with where it came from. */
export const resourceView = z.strictObject({
  definition: z.record(z.string(), z.unknown()).describe('The resource as in the configuration file (docs/configuration.md, resources[]).'),
  source: z.enum(['config', 'admin']),
  updated_at: z.number().int(),
});

const toView = (r: ResourceRecord) => ({ definition: r.definition, source: r.source, updated_at: r.updatedAt });

async function findResource(deps: Pick<AdminDeps, 'store'>, id: string) {
  const found = (await deps.store.resources.list()).find((r) => r.id === id);
  if (!found) throw notFound('resource');
  return found;
}

async function save(deps: AdminDeps, definition: ResourceConfig) {
  try {
    deps.checkResource(definition);
  } catch (error) {
    throw new AdminError('invalid_request', (error as Error).message);
  }
  const record: ResourceRecord = { id: definition.id, definition: definition as unknown as Record<string, unknown>, source: 'admin', updatedAt: deps.now() };
  await deps.store.resources.upsert(record);
  await deps.reloadResources();
  return toView(record);
}

const id = z.string().min(1).max(2000).describe('The resource identifier (a URL).');

export const listResources = defineOperation({
  name: 'resources.list',
  area: 'resources',
  access: 'read',
  summary: 'List resources, ordered by identifier (the built-in admin resource is not among them).',
  input: z.strictObject({ ...pageInput, source: z.enum(['config', 'admin']).optional() }),
  output: page(resourceView),
  async run(deps, input) {
    const all = (await deps.store.resources.list()).filter((r) => !input.source || r.source === input.source);
    const result = paginate(all, (r) => r.id, input);
    return { items: result.items.map(toView), next_cursor: result.next_cursor };
  },
});

export const readResource = defineOperation({
  name: 'resources.read',
  area: 'resources',
  access: 'read',
  summary: 'Read one resource.',
  input: z.strictObject({ id }),
  output: resourceView,
  run: async (deps, input) => toView(await findResource(deps, input.id)),
});

export const createResource = defineOperation({
  name: 'resources.create',
  area: 'resources',
  access: 'write',
  summary: 'Add a resource at runtime (other instances pick it up within a minute).',
  input: z.strictObject({ definition: resourceSchema }),
  output: resourceView,
  target: (input) => ({ data: { resource: input.definition.id } }),
  async run(deps, input) {
    if ((await deps.store.resources.list()).some((r) => r.id === input.definition.id)) throw new AdminError('conflict', 'a resource with this identifier exists');
    return save(deps, input.definition);
  },
});

export const updateResource = defineOperation({
  name: 'resources.update',
  area: 'resources',
  access: 'write',
  summary: 'Replace the definition of a resource added through the API.',
  input: z.strictObject({ id, definition: resourceSchema }),
  output: resourceView,
  current: async (deps, input) => toView(await findResource(deps, input.id)),
  target: (input) => ({ data: { resource: input.id } }),
  async run(deps, input) {
    const existing = await findResource(deps, input.id);
    if (existing.source === 'config') throw fromConfig('resource');
    if (input.definition.id !== input.id) throw new AdminError('invalid_request', 'definition.id must be the resource being replaced');
    return save(deps, input.definition);
  },
});

export const deleteResource = defineOperation({
  name: 'resources.delete',
  area: 'resources',
  access: 'write',
  summary: 'Remove a resource added through the API.',
  input: z.strictObject({ id }),
  output: z.strictObject({ deleted: z.literal(true) }),
  current: async (deps, input) => toView(await findResource(deps, input.id)),
  target: (input) => ({ data: { resource: input.id } }),
  async run(deps, input) {
    const existing = await findResource(deps, input.id);
    if (existing.source === 'config') throw fromConfig('resource', 'remove it there');
    await deps.store.resources.delete(input.id);
    await deps.reloadResources();
    return { deleted: true as const };
  },
});

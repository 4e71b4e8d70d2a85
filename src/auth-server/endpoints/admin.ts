import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { OAuthError } from '../../core/errors.ts';
import { resourceSchema } from '../../config/schema.ts';
import { constantTimeEqual } from '../../core/encoding.ts';
import type { ClientRecord } from '../../store/types.ts';
import type { AppEnv, ServerContext } from '../context.ts';
import { applyLifecycle } from '../../admin/operations/lifecycle.ts';
import { bearerToken } from '../bearer.ts';
import { hashSecret } from '../hash.ts';
import { readJsonObject } from '../json-body.ts';

const agentPatch = z.strictObject({
  enabled: z.boolean().optional(),
  expires_at: z.iso.datetime({ offset: true }).nullable().optional(),
  owner: z.string().min(1).nullable().optional(),
});

function agentView(record: ClientRecord) {
  return {
    client_id: record.clientId,
    client_name: record.metadata.client_name,
    agent_type: record.agent!.agentType,
    owner: record.agent!.owner ?? null,
    enabled: record.disabledAt === undefined,
    disabled_at: record.disabledAt ?? null,
    tokens_valid_after: record.tokensValidAfter ?? null,
    expires_at: record.agent!.expiresAt ? new Date(record.agent!.expiresAt * 1000).toISOString() : null,
    created_at: record.createdAt,
    first_used_at: record.lastUsedAt ?? null,
    source: record.source,
  };
}

/**
 * Deprecated (docs/admin.md): the legacy admin API (`/admin/api/…`), for the static admin token
 * from the environment (or generated on first start under the data dir). It stays until the README
 * moves to `/admin/api/v1`, where admins are identities (src/admin/). Agents' lifecycle: list, read, enable, disable, set expiry and
 * owner. Disabling an agent revokes its grants and tokens, refuses its exchanges, and cuts off
 * every token whose delegation chain contains it.
 */
export function adminEndpoints(app: Hono<AppEnv>, ctx: ServerContext, adminToken: string) {
  const expected = hashSecret(adminToken);
  app.use('/admin/api/*', async (c, next) => {
    // /admin/api/v1 checks its own tokens (admin identities).
    if (c.req.path === '/admin/api/v1' || c.req.path.startsWith('/admin/api/v1/')) return next();
    const token = bearerToken(c);
    if (!token || !constantTimeEqual(hashSecret(token), expected)) {
      throw new OAuthError('invalid_token', 'an admin token is required', {
        reason: token ? 'wrong admin token' : 'no bearer token',
        headers: { 'WWW-Authenticate': 'Bearer realm="mandate-admin"' },
      });
    }
    await next();
  });

  const findAgent = async (c: Context) => {
    const record = await ctx.store.clients.find(c.req.param('id') ?? '');
    if (!record?.agent) throw new OAuthError('invalid_request', 'no such agent', { status: 404 });
    return record;
  };

  app.get('/admin/api/agents', async (c) => {
    const agents = (await ctx.store.clients.list()).filter((r) => r.agent);
    return c.json({ agents: agents.map(agentView) });
  });

  app.get('/admin/api/agents/:id', async (c) => c.json(agentView(await findAgent(c))));

  app.patch('/admin/api/agents/:id', async (c) => {
    const record = await findAgent(c);
    const parsed = agentPatch.safeParse(await readJsonObject(ctx, c, 'invalid_request'));
    if (!parsed.success) throw new OAuthError('invalid_request', `invalid change: ${parsed.error.issues[0]?.message}`);
    return c.json(agentView(await applyLifecycle(ctx, record, parsed.data)));
  });

  app.get('/admin/api/resources', async (c) =>
    c.json({ resources: (await ctx.store.resources.list()).map((r) => ({ ...r.definition, source: r.source, updated_at: r.updatedAt })) }),
  );

  /** Adds or replaces a resource at runtime; other instances pick it up within a minute. */
  app.put('/admin/api/resources', async (c) => {
    const body = await readJsonObject(ctx, c, 'invalid_request');
    const parsed = resourceSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new OAuthError('invalid_request', `invalid resource: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
    }
    const existing = (await ctx.store.resources.list()).find((r) => r.id === parsed.data.id);
    if (existing?.source === 'config') throw new OAuthError('invalid_request', 'this resource comes from the configuration file; change it there', { status: 409 });
    try {
      ctx.checkResource(parsed.data);
    } catch (error) {
      throw new OAuthError('invalid_request', (error as Error).message);
    }
    await ctx.store.resources.upsert({ id: parsed.data.id, definition: parsed.data as unknown as Record<string, unknown>, source: 'admin', updatedAt: ctx.now() });
    await ctx.reloadResources();
    ctx.audit.record({ at: ctx.now(), type: 'resource.saved', outcome: 'success', data: { resource: parsed.data.id } });
    return c.json(parsed.data, existing ? 200 : 201);
  });

  app.delete('/admin/api/resources', async (c) => {
    const id = c.req.query('id') ?? '';
    const existing = (await ctx.store.resources.list()).find((r) => r.id === id);
    if (!existing) throw new OAuthError('invalid_request', 'no such resource', { status: 404 });
    if (existing.source === 'config') throw new OAuthError('invalid_request', 'this resource comes from the configuration file; remove it there', { status: 409 });
    await ctx.store.resources.delete(id);
    await ctx.reloadResources();
    ctx.audit.record({ at: ctx.now(), type: 'resource.deleted', outcome: 'success', data: { resource: id } });
    return c.body(null, 204);
  });

  app.get('/admin/api/audit', async (c) => {
    const limit = Math.min(Number(c.req.query('limit') ?? 100) || 100, 1000);
    const events = await ctx.store.audit.list({ type: c.req.query('type'), clientId: c.req.query('client_id'), limit });
    return c.json({
      events: events.map((e) => ({ id: e.id, at: e.at, type: e.type, outcome: e.outcome, client_id: e.clientId, sub: e.sub, error: e.error, reason: e.reason, data: e.data })),
    });
  });
}

import { z } from 'zod';
import { AdminError } from '../errors.ts';
import { defineOperation } from '../operation.ts';
import { decodeCursor, encodeCursor } from '../pagination.ts';

/** How far back a search inside events (agent, actor, tool) looks when no `since` is given. */
export const DEFAULT_SEARCH_DAYS = 30;

const time = z.iso.datetime({ offset: true }).describe('ISO 8601.');

export const auditEventView = z.strictObject({
  id: z.number().int(),
  at: z.number().int().describe('Epoch seconds.'),
  time: z.string().describe('ISO 8601.'),
  type: z.string(),
  outcome: z.enum(['success', 'failure']),
  client_id: z.string().nullable(),
  sub: z.string().nullable(),
  error: z.string().nullable(),
  reason: z.string().nullable(),
  data: z.record(z.string(), z.unknown()).nullable(),
});

export const queryAudit = defineOperation({
  name: 'audit.query',
  area: 'audit',
  access: 'read',
  summary: 'Query the audit log, newest first. Every filter narrows it.',
  input: z.strictObject({
    since: time.optional().describe(`From this time (inclusive). With agent, actor or tool and no since: the last ${DEFAULT_SEARCH_DAYS} days.`),
    until: time.optional().describe('Before this time.'),
    type: z.string().max(200).optional().describe('An event type (token.issued), or a prefix ending in * (admin.*).'),
    decision: z.enum(['success', 'failure']).optional().describe('The outcome.'),
    subject: z.string().max(500).optional().describe('The sub of the events (a user, or a client acting for itself).'),
    client_id: z.string().max(500).optional(),
    agent: z.string().max(500).optional().describe('Events of this agent, or naming it anywhere (in a delegation chain).'),
    actor: z.string().max(200).optional().describe('The admin (username) who made an admin call.'),
    tool: z.string().max(200).optional().describe('Events naming this MCP tool.'),
    limit: z.coerce.number().int().min(1).max(500).default(100),
    cursor: z.string().max(100).optional(),
  }),
  output: z.strictObject({ items: z.array(auditEventView), next_cursor: z.string().nullable() }),
  async run(deps, input) {
    // What this instance recorded a moment ago is part of the answer (events are written in batches).
    await deps.audit.flush();
    const seconds = (iso: string | undefined) => (iso === undefined ? undefined : Math.floor(Date.parse(iso) / 1000));
    const beforeId = input.cursor === undefined ? undefined : Number(decodeCursor(input.cursor));
    if (beforeId !== undefined && !Number.isSafeInteger(beforeId)) throw new AdminError('invalid_request', 'the cursor is not one this server gave');
    // Filters that search inside events (agent, actor, tool) read every event in range: without a
    // `since` they look back DEFAULT_SEARCH_DAYS, not through the whole log.
    const searches = input.agent !== undefined || input.actor !== undefined || input.tool !== undefined;
    const since = seconds(input.since) ?? (searches ? deps.now() - DEFAULT_SEARCH_DAYS * 86_400 : undefined);
    const events = await deps.store.audit.query({
      since,
      until: seconds(input.until),
      type: input.type,
      outcome: input.decision,
      sub: input.subject,
      clientId: input.client_id,
      involves: input.agent,
      dataContains: [...(input.actor ? [`"admin":${JSON.stringify(input.actor)}`] : []), ...(input.tool ? [`"tool":${JSON.stringify(input.tool)}`] : [])],
      beforeId,
      // One more than asked tells whether there is a next page.
      limit: input.limit + 1,
    });
    const items = events.slice(0, input.limit).map((e) => ({
      id: e.id,
      at: e.at,
      time: new Date(e.at * 1000).toISOString(),
      type: e.type,
      outcome: e.outcome,
      client_id: e.clientId ?? null,
      sub: e.sub ?? null,
      error: e.error ?? null,
      reason: e.reason ?? null,
      data: e.data ?? null,
    }));
    return { items, next_cursor: events.length > input.limit ? encodeCursor(String(items[items.length - 1]!.id)) : null };
  },
});
